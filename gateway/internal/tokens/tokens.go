// Package tokens verifies access tokens at the gateway and remembers the ones it verified.
//
// A signature check costs tens of microseconds, more than everything else the gateway does for
// a request, while a client sends the same token with every call for its whole lifetime. So a
// verified token is kept, keyed by its exact text, until it expires; a token that fails is not
// kept, so no answer about a bad token outlives a key rotation.
package tokens

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/basaltplatform/basalt/kernel/authn"
)

// Verifier checks one token; *authn.Verifier is the implementation.
type Verifier interface {
	Verify(ctx context.Context, token string) (authn.Principal, error)
}

var _ Verifier = (*authn.Verifier)(nil)

const shards = 32

// Cache verifies tokens through a Verifier and keeps the principals of valid ones.
type Cache struct {
	verifier Verifier
	seed     maphash.Seed
	now      func() time.Time
	maxPerSh int
	mask     uint64 // a cache smaller than shards uses only the first mask+1 shards
	shards   [shards]shard
}

type shard struct {
	mu      sync.RWMutex
	entries map[string]authn.Principal
}

// Option configures New.
type Option func(*Cache)

// WithClock replaces the clock, for tests.
func WithClock(now func() time.Time) Option { return func(c *Cache) { c.now = now } }

// New returns a cache of at most size verified tokens over v; size 0 (or less) disables caching.
func New(v Verifier, size int, opts ...Option) *Cache {
	c := &Cache{verifier: v, seed: maphash.MakeSeed(), now: time.Now}
	if size > 0 {
		// The bound is per shard, so a cache smaller than shards uses fewer of them (a power of
		// two, to keep the index a mask): at most size tokens in all.
		n := shards
		for n > size {
			n /= 2
		}
		c.mask, c.maxPerSh = uint64(n-1), size/n
	}
	for _, opt := range opts {
		opt(c)
	}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]authn.Principal)
	}
	return c
}

// Verify returns the principal of token, from the cache while the token is unexpired.
func (c *Cache) Verify(ctx context.Context, token string) (authn.Principal, error) {
	if c.maxPerSh == 0 {
		return c.verifier.Verify(ctx, token)
	}
	sh := &c.shards[maphash.String(c.seed, token)&c.mask]
	now := c.now()
	sh.mu.RLock()
	p, ok := sh.entries[token]
	sh.mu.RUnlock()
	if ok {
		// The verifier accepted the token within the clock skew of its expiry; the cache does
		// not: a cached token is used only strictly before it expires.
		if now.Before(p.ExpiresAt) {
			return p, nil
		}
		sh.mu.Lock()
		delete(sh.entries, token)
		sh.mu.Unlock()
	}
	p, err := c.verifier.Verify(ctx, token)
	if err != nil {
		return p, err
	}
	if now.Before(p.ExpiresAt) {
		sh.mu.Lock()
		if len(sh.entries) >= c.maxPerSh {
			sh.evict(now, c.maxPerSh)
		}
		sh.entries[token] = p
		sh.mu.Unlock()
	}
	return p, nil
}

// Last is the token one connection verified last, which the connection keeps in front of the
// cache: its calls mostly send the same token, which then costs neither a hash nor a lock. The
// zero Last keeps nothing yet.
type Last struct {
	token     string
	principal authn.Principal
}

// VerifyFor is Verify for a call of a connection that keeps last, made at at. The connection's
// last token is its principal while at is strictly before it expires, the cache's own rule, and
// a token verified here becomes the last. A cache that keeps nothing (size 0) keeps nothing in
// last either. A nil last is Verify.
func (c *Cache) VerifyFor(ctx context.Context, token string, at time.Time, last *Last) (authn.Principal, error) {
	keep := last != nil && c.maxPerSh > 0
	if keep && last.token != "" && last.token == token && at.Before(last.principal.ExpiresAt) {
		return last.principal, nil
	}
	p, err := c.Verify(ctx, token)
	if err == nil && keep {
		last.token, last.principal = token, p
	}
	return p, err
}

// evict drops expired entries, then arbitrary ones until a quarter of the shard is free.
func (s *shard) evict(now time.Time, limit int) {
	for k, p := range s.entries {
		if !now.Before(p.ExpiresAt) {
			delete(s.entries, k)
		}
	}
	for k := range s.entries {
		if len(s.entries) < limit*3/4 {
			break
		}
		delete(s.entries, k)
	}
}

// Len returns how many tokens are cached, for tests.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.RUnlock()
	}
	return n
}
