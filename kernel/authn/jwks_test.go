package authn_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/basaltplatform/basalt/kernel/authn"
)

// jwksServer serves whatever set it holds and counts requests.
type jwksServer struct {
	mu       sync.Mutex
	set      jwk.Set
	fail     bool
	requests atomic.Int64
	srv      *httptest.Server
}

func newJWKSServer(t *testing.T, set jwk.Set) *jwksServer {
	s := &jwksServer{set: set}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(s.set)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) publish(set jwk.Set) {
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
}

func (s *jwksServer) setFail(v bool) {
	s.mu.Lock()
	s.fail = v
	s.mu.Unlock()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func union(sets ...jwk.Set) jwk.Set {
	out := jwk.NewSet()
	for _, s := range sets {
		for i := range s.Len() {
			k, _ := s.Key(i)
			_ = out.AddKey(k)
		}
	}
	return out
}

func TestJWKSFetchesANewKeyOnceAndRateLimitsUnknownKids(t *testing.T) {
	t.Parallel()
	_, set1 := signingKey(t, "k1")
	_, set2 := signingKey(t, "k2")
	srv := newJWKSServer(t, set1)
	clk := &fakeClock{t: now}
	keys := authn.NewJWKS(authn.HTTPFetcher(srv.srv.Client(), srv.srv.URL), authn.WithJWKSClock(clk.now), authn.WithMinInterval(10*time.Second))
	ctx := context.Background()
	if _, err := keys.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	// The auth service starts publishing k2; the first token signed with it makes the cache
	// fetch again, past the minimum interval.
	srv.publish(union(set1, set2))
	clk.add(11 * time.Second)
	if _, err := keys.Key(ctx, "k2"); err != nil {
		t.Fatalf("a newly published key was not fetched: %v", err)
	}
	fetched := srv.requests.Load()
	// A flood of forged kids within the interval causes no fetch at all.
	for range 100 {
		if _, err := keys.Key(ctx, "forged"); err == nil {
			t.Fatal("a forged kid resolved")
		}
	}
	if srv.requests.Load() != fetched {
		t.Fatalf("%d fetches for unknown kids within the minimum interval, want none", srv.requests.Load()-fetched)
	}
	clk.add(11 * time.Second)
	_, _ = keys.Key(ctx, "forged")
	if srv.requests.Load() != fetched+1 {
		t.Fatalf("after the interval one fetch is allowed; got %d", srv.requests.Load()-fetched)
	}
}

func TestJWKSKeepsTheLastSetWhenFetchingFails(t *testing.T) {
	t.Parallel()
	_, set := signingKey(t, "k1")
	srv := newJWKSServer(t, set)
	clk := &fakeClock{t: now}
	keys := authn.NewJWKS(authn.HTTPFetcher(srv.srv.Client(), srv.srv.URL), authn.WithJWKSClock(clk.now), authn.WithMaxAge(time.Minute))
	ctx := context.Background()
	if err := keys.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	srv.setFail(true)
	clk.add(time.Hour) // stale: a refresh is attempted in the background and fails
	for range 3 {
		if _, err := keys.Key(ctx, "k1"); err != nil {
			t.Fatalf("a known key must keep working while the auth service is down: %v", err)
		}
	}
}

func TestJWKSRefreshesStaleSetsInTheBackground(t *testing.T) {
	t.Parallel()
	_, set := signingKey(t, "k1")
	srv := newJWKSServer(t, set)
	clk := &fakeClock{t: now}
	keys := authn.NewJWKS(authn.HTTPFetcher(srv.srv.Client(), srv.srv.URL), authn.WithJWKSClock(clk.now), authn.WithMaxAge(time.Minute))
	ctx := context.Background()
	if _, err := keys.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if _, err := keys.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.requests.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if srv.requests.Load() != 2 {
		t.Fatalf("%d fetches, want a background refresh of the stale set", srv.requests.Load())
	}
}

// TestJWKSSetIsFetchedAgainPastTheAgeAsked wants Set to hand out the set held while it is
// younger than asked, fetch it again once it is older, and, when that fetch fails, keep the
// old set with its age and the error, so that the caller can refuse it.
func TestJWKSSetIsFetchedAgainPastTheAgeAsked(t *testing.T) {
	t.Parallel()
	_, set1 := signingKey(t, "k1")
	_, set2 := signingKey(t, "k2")
	srv := newJWKSServer(t, set1)
	clk := &fakeClock{t: now}
	keys := authn.NewJWKS(authn.HTTPFetcher(srv.srv.Client(), srv.srv.URL), authn.WithJWKSClock(clk.now), authn.WithMinInterval(time.Second))
	ctx := context.Background()
	check := func(wantKid string, wantAge time.Duration, wantErr bool, wantFetches int64) {
		t.Helper()
		set, age, err := keys.Set(ctx, 5*time.Minute)
		if (err != nil) != wantErr || set == nil || age != wantAge || srv.requests.Load() != wantFetches {
			t.Fatalf("Set = %v, age %v, error %v after %d fetches; want age %v, error %v, %d fetches", set, age, err, srv.requests.Load(), wantAge, wantErr, wantFetches)
		}
		if _, ok := set.LookupKeyID(wantKid); !ok || set.Len() != 1 {
			t.Fatalf("the set holds %d keys, not %q alone", set.Len(), wantKid)
		}
	}
	check("k1", 0, false, 1)
	clk.add(2 * time.Minute)
	check("k1", 2*time.Minute, false, 1)
	srv.publish(set2)
	clk.add(4 * time.Minute)
	check("k2", 0, false, 2)
	srv.setFail(true)
	clk.add(6 * time.Minute)
	check("k2", 6*time.Minute, true, 3)

	never := authn.NewJWKS(authn.HTTPFetcher(srv.srv.Client(), srv.srv.URL))
	if set, _, err := never.Set(ctx, time.Minute); set != nil || err == nil {
		t.Fatalf("a cache that never fetched = %v, %v; want no set and the error", set, err)
	}
}

func TestParseJWKSKeepsOnlyPublicSigningKeys(t *testing.T) {
	t.Parallel()
	priv, pubSet := signingKey(t, "pub")
	privSet := jwk.NewSet()
	_ = privSet.AddKey(priv) // a private key must never be trusted from a document
	sym, _ := jwk.FromRaw([]byte("0123456789abcdef0123456789abcdef"))
	_ = sym.Set(jwk.KeyIDKey, "sym")
	_ = sym.Set(jwk.AlgorithmKey, "HS256")
	symSet := jwk.NewSet()
	_ = symSet.AddKey(sym)
	b, _ := json.Marshal(union(pubSet, privSet, symSet))
	set, err := authn.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 {
		t.Fatalf("kept %d keys, want only the public signing key", set.Len())
	}
	if k, _ := set.Key(0); k.KeyID() != "pub" {
		t.Fatalf("kept %q", k.KeyID())
	}
}
