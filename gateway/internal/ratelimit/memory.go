package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// shards spreads buckets over independently locked maps so that concurrent requests of
// different clients rarely wait on each other.
const shards = 64

// Memory keeps buckets in this process.
type Memory struct {
	seed     maphash.Seed
	now      func() time.Time
	maxKeys  int
	maxPerSh int
	mask     uint64 // a limiter of fewer than shards keys uses only the first mask+1 shards
	shards   [shards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	buckets map[string]int64
	_       [40]byte // keeps neighbouring shards' locks off one cache line
}

var _ Limiter = (*Memory)(nil)

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithClock replaces the clock, for tests.
func WithClock(now func() time.Time) MemoryOption { return func(m *Memory) { m.now = now } }

// WithMaxKeys bounds how many buckets are kept (default 1,000,000; at least 1). Full buckets
// are dropped first; a client whose bucket is dropped while not full gets a fresh one, so the
// bound trades a little precision for memory only under a flood of distinct keys.
func WithMaxKeys(n int) MemoryOption {
	return func(m *Memory) { m.maxKeys = max(n, 1) }
}

// NewMemory returns an in-process limiter.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{seed: maphash.MakeSeed(), now: time.Now, maxKeys: 1_000_000}
	for _, opt := range opts {
		opt(m)
	}
	// The bound is per shard, so a limiter of fewer keys than shards uses fewer of them (a
	// power of two, to keep the index a mask): at most maxKeys buckets in all.
	n := shards
	for n > m.maxKeys {
		n /= 2
	}
	m.mask, m.maxPerSh = uint64(n-1), m.maxKeys/n
	for i := range m.shards {
		m.shards[i].buckets = make(map[string]int64)
	}
	return m
}

// Take takes a token from key's bucket.
func (m *Memory) Take(_ context.Context, key string, rate Rate) (Decision, error) {
	sh := &m.shards[maphash.String(m.seed, key)&m.mask]
	now := m.now().UnixNano()
	sh.mu.Lock()
	tat, ok := sh.buckets[key]
	next, d := gcra(tat, now, rate)
	if d.Allowed {
		if !ok && len(sh.buckets) >= m.maxPerSh {
			sh.sweep(now, m.maxPerSh)
		}
		sh.buckets[key] = next
	}
	sh.mu.Unlock()
	return d, nil
}

// sweep drops buckets that are full again (their tat has passed, so they hold as many tokens
// as a new bucket would); if that frees too little it drops arbitrary ones.
func (s *memoryShard) sweep(now int64, limit int) {
	for k, tat := range s.buckets {
		if tat <= now {
			delete(s.buckets, k)
		}
	}
	for k := range s.buckets {
		if len(s.buckets) < limit*3/4 {
			break
		}
		delete(s.buckets, k)
	}
}

// Len returns how many buckets are kept, for tests.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		m.shards[i].mu.Lock()
		n += len(m.shards[i].buckets)
		m.shards[i].mu.Unlock()
	}
	return n
}
