package cache_test

import (
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/cache"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBoundedBySizeLeastRecentlyUsedFirst(t *testing.T) {
	t.Parallel()
	c := cache.New[string, int](2, time.Minute)
	c.Set("a", 1)
	c.Set("b", 2)
	if _, ok := c.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.Set("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Fatal("b should have been evicted as least recently used")
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatal("a should have stayed")
	}
	if c.Len() != 2 {
		t.Fatalf("len = %d", c.Len())
	}
}

func TestEntriesExpire(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Unix(0, 0)}
	c := cache.New[string, int](10, 5*time.Second, cache.WithClock(clk.now))
	c.Set("a", 1)
	c.SetTTL("short", 2, time.Second)
	c.SetTTL("capped", 3, time.Hour) // never longer than the cache's ttl
	clk.add(2 * time.Second)
	if _, ok := c.Get("short"); ok {
		t.Fatal("short outlived its ttl")
	}
	if _, ok := c.Get("a"); !ok {
		t.Fatal("a expired early")
	}
	clk.add(3 * time.Second)
	if _, ok := c.Get("a"); ok {
		t.Fatal("a outlived the ttl")
	}
	if _, ok := c.Get("capped"); ok {
		t.Fatal("an entry outlived the cache's ttl")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	c := cache.New[int, int](64, time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c.Set(i%100+g, i)
				c.Get(i % 100)
			}
		})
	}
	wg.Wait()
	if c.Len() > 64 {
		t.Fatalf("len %d exceeds the bound", c.Len())
	}
}
