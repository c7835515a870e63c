package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// JWKSPath is where the auth service publishes its public keys.
const JWKSPath = "/.well-known/jwks.json"

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 256 << 10

// Fetcher returns a JWK set document.
type Fetcher func(ctx context.Context) ([]byte, error)

// HTTPFetcher fetches the document at url with client (for example the rpcclient's balancing
// client for the auth service).
func HTTPFetcher(client interface {
	Do(*http.Request) (*http.Response, error)
}, url string) Fetcher {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("authn: GET %s: %s", url, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	}
}

// JWKS is a cached JWK set. It refreshes in the background when older than its maximum age,
// fetches at once when a token names a key it does not know (a key the auth service has just
// started publishing), but at most once per minimum interval however many unknown kids arrive,
// so forged kids cannot turn into a flood of fetches. When a fetch fails it keeps the last set.
type JWKS struct {
	fetch       Fetcher
	maxAge      time.Duration
	minInterval time.Duration
	now         func() time.Time

	mu          sync.Mutex
	set         jwk.Set
	fetchedAt   time.Time
	attemptedAt time.Time
	inflight    chan struct{}
	lastErr     error
}

var _ Keys = (*JWKS)(nil)

// JWKSOption configures NewJWKS.
type JWKSOption func(*JWKS)

// WithMaxAge sets how long a fetched set is used before a background refresh (default 5m).
func WithMaxAge(d time.Duration) JWKSOption { return func(k *JWKS) { k.maxAge = d } }

// WithMinInterval sets the least time between two fetches (default 10s).
func WithMinInterval(d time.Duration) JWKSOption { return func(k *JWKS) { k.minInterval = d } }

// WithJWKSClock replaces the clock, for tests.
func WithJWKSClock(now func() time.Time) JWKSOption { return func(k *JWKS) { k.now = now } }

// NewJWKS returns a key set cache over fetch.
func NewJWKS(fetch Fetcher, opts ...JWKSOption) *JWKS {
	k := &JWKS{fetch: fetch, maxAge: 5 * time.Minute, minInterval: 10 * time.Second, now: time.Now}
	for _, opt := range opts {
		opt(k)
	}
	return k
}

// ErrUnknownKey is returned for a kid the key set does not hold even after a refresh.
var ErrUnknownKey = errors.New("authn: unknown signing key")

// Key returns the public signing key with the given id.
func (k *JWKS) Key(ctx context.Context, kid string) (jwk.Key, error) {
	k.mu.Lock()
	set, age := k.set, k.now().Sub(k.fetchedAt)
	k.mu.Unlock()
	if set != nil {
		if key, ok := lookup(set, kid); ok {
			if age > k.maxAge {
				go func() { _ = k.refresh(context.WithoutCancel(ctx)) }()
			}
			return key, nil
		}
	}
	if err := k.refresh(ctx); err != nil && set == nil {
		return nil, err
	}
	k.mu.Lock()
	set = k.set
	k.mu.Unlock()
	if set != nil {
		if key, ok := lookup(set, kid); ok {
			return key, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
}

// Set returns the key set held and its age, fetching it first when none is held or the one
// held is older than maxAge (at most once per minimum interval, as every fetch). A fetch that
// fails keeps the set held, which is returned, with its age, beside the error; so a caller
// that must not hand on a set past some age, as the gateway publishing it, can tell.
func (k *JWKS) Set(ctx context.Context, maxAge time.Duration) (jwk.Set, time.Duration, error) {
	k.mu.Lock()
	set, age := k.set, k.now().Sub(k.fetchedAt)
	k.mu.Unlock()
	if set != nil && age <= maxAge {
		return set, age, nil
	}
	err := k.refresh(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set == nil {
		if err == nil {
			err = errors.New("authn: no key set fetched yet")
		}
		return nil, 0, err
	}
	return k.set, k.now().Sub(k.fetchedAt), err
}

// Ready reports whether a key set has been loaded, and the last fetch error if not.
func (k *JWKS) Ready(ctx context.Context) error {
	k.mu.Lock()
	loaded := k.set != nil
	k.mu.Unlock()
	if loaded {
		return nil
	}
	return k.refresh(ctx)
}

// refresh fetches the set unless a fetch happened within the minimum interval; concurrent
// callers share one fetch.
func (k *JWKS) refresh(ctx context.Context) error {
	k.mu.Lock()
	if wait := k.inflight; wait != nil {
		k.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.lastErr
	}
	if !k.attemptedAt.IsZero() && k.now().Sub(k.attemptedAt) < k.minInterval {
		err := k.lastErr
		k.mu.Unlock()
		return err
	}
	k.attemptedAt = k.now()
	done := make(chan struct{})
	k.inflight = done
	k.mu.Unlock()

	set, err := k.load(ctx)

	k.mu.Lock()
	defer k.mu.Unlock()
	k.inflight = nil
	close(done)
	k.lastErr = err
	if err == nil {
		k.set, k.fetchedAt = set, k.now()
	}
	return err
}

func (k *JWKS) load(ctx context.Context) (jwk.Set, error) {
	b, err := k.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("authn: fetch JWKS: %w", err)
	}
	set, err := ParseJWKS(b)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// ParseJWKS parses a JWK set and keeps only public signature keys that name an algorithm the
// platform signs with (EdDSA or ES256) and a key id.
func ParseJWKS(b []byte) (jwk.Set, error) {
	parsed, err := jwk.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("authn: parse JWKS: %w", err)
	}
	out := jwk.NewSet()
	for i := range parsed.Len() {
		key, _ := parsed.Key(i)
		alg, _ := key.Algorithm().(jwa.SignatureAlgorithm)
		if key.KeyID() == "" || (alg != jwa.EdDSA && alg != jwa.ES256) {
			continue
		}
		if use := key.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
			continue
		}
		if _, private := key.(interface{ D() []byte }); private {
			continue
		}
		if key.KeyType() == "oct" {
			continue
		}
		_ = out.AddKey(key)
	}
	return out, nil
}

func lookup(set jwk.Set, kid string) (jwk.Key, bool) {
	return set.LookupKeyID(kid)
}

// StaticKeys serves a fixed set, for the auth service itself and for tests.
type StaticKeys struct {
	mu  sync.RWMutex
	set jwk.Set
}

var _ Keys = (*StaticKeys)(nil)

// NewStaticKeys returns keys over set.
func NewStaticKeys(set jwk.Set) *StaticKeys { return &StaticKeys{set: set} }

// Replace swaps the set.
func (s *StaticKeys) Replace(set jwk.Set) {
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
}

// Key returns the key with the given id.
func (s *StaticKeys) Key(_ context.Context, kid string) (jwk.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if key, ok := s.set.LookupKeyID(kid); ok {
		return key, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
}
