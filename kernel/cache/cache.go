// Package cache is a small, bounded, expiring cache: at most a fixed number of entries, each
// for at most a fixed time, the least recently used evicted first. The kernel uses it where a
// remote answer may be reused briefly (permission checks, session checks, verified tokens) and
// memory must stay bounded whatever the traffic.
package cache

import (
	"container/list"
	"sync"
	"time"
)

// Cache maps keys to values for a bounded time and size. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	now   func() time.Time
	order *list.List // front: most recently used
	items map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key     K
	value   V
	expires time.Time
}

// Option configures New.
type Option func(*options)

type options struct{ now func() time.Time }

// WithClock replaces the clock, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New returns a cache of at most size entries, each kept at most ttl.
func New[K comparable, V any](size int, ttl time.Duration, opts ...Option) *Cache[K, V] {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return &Cache[K, V]{size: max(size, 1), ttl: ttl, now: o.now, order: list.New(), items: make(map[K]*list.Element)}
}

// Get returns the value for key if it is present and fresh.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*entry[K, V])
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return e.value, true
}

// Set stores value for key for the cache's ttl.
func (c *Cache[K, V]) Set(key K, value V) { c.SetTTL(key, value, c.ttl) }

// SetTTL stores value for key for at most ttl (and never longer than the cache's ttl).
func (c *Cache[K, V]) SetTTL(key K, value V, ttl time.Duration) {
	ttl = min(ttl, c.ttl)
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	expires := c.now().Add(ttl)
	if el, ok := c.items[key]; ok {
		e := el.Value.(*entry[K, V])
		e.value, e.expires = value, expires
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&entry[K, V]{key: key, value: value, expires: expires})
	for c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry[K, V]).key)
	}
}

// Delete removes key.
func (c *Cache[K, V]) Delete(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
	}
}

// Clear removes every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	clear(c.items)
}

// Len returns the number of entries, fresh or not yet evicted.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
