package ratelimit_test

import (
	"context"
	"crypto/rand"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	kconfig "github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/ratelimit"
)

func TestMain(m *testing.M) {
	// go-redis logs failed dials to stderr; the fail-open test makes them on purpose, and every
	// other Redis error fails the test that met it.
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// redisURL is the Redis the tests use: BASALT_TEST_REDIS_URL, by default the local one.
func redisURL(t testing.TB) string {
	t.Helper()
	var u string
	l := kconfig.NewLoader("ratelimit-test", nil, os.LookupEnv)
	l.String(&u, "", "BASALT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for the rate limit tests")
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	return u
}

// newRedisClient connects to the test Redis: a missing Redis skips the test, or fails it under
// CI=true.
func newRedisClient(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatalf("BASALT_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	testkit.Require(t, "Redis at "+opts.Addr, c.Ping(ctx).Err())
	return c
}

// keyPrefix returns a prefix no other test (or earlier run) uses, and removes its keys after
// the test.
func keyPrefix(t testing.TB, c *redis.Client) string {
	t.Helper()
	prefix := "basalt-test:ratelimit:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
	})
	return prefix
}

func TestRedisBurstThenRefusal(t *testing.T) {
	t.Parallel()
	c := newRedisClient(t)
	tests := []struct {
		name     string
		rate     ratelimit.Rate
		interval time.Duration
		wait     bool // wait RetryAfter and expect a token
	}{
		{"1/s burst 5", ratelimit.Rate{PerSecond: 1, Burst: 5}, time.Second, true},
		{"0.1/s burst 3 (register)", ratelimit.Rate{PerSecond: 0.1, Burst: 3}, 10 * time.Second, false},
		{"0.5/s burst 5 (login)", ratelimit.Rate{PerSecond: 0.5, Burst: 5}, 2 * time.Second, false},
		{"20/s burst 1", ratelimit.Rate{PerSecond: 20, Burst: 1}, 50 * time.Millisecond, true},
		{"3/s burst 2", ratelimit.Rate{PerSecond: 3, Burst: 2}, 333334 * time.Microsecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := keyPrefix(t, c)
			l := ratelimit.NewRedis(c, prefix)
			start := time.Now()
			for i := range tt.rate.Burst {
				if d := take(t, l, "k", tt.rate); !d.Allowed {
					t.Fatalf("request %d of the burst: %+v, want allowed", i+1, d)
				}
			}
			d := take(t, l, "k", tt.rate)
			elapsed := time.Since(start)
			// The burst began at most elapsed ago, so the next token is due within one interval
			// and at least interval - elapsed from now.
			if d.Allowed || d.RetryAfter > tt.interval || d.RetryAfter < tt.interval-elapsed {
				t.Fatalf("after the burst (%v): %+v, want refused with RetryAfter in [%v, %v]", elapsed, d, tt.interval-elapsed, tt.interval)
			}
			// The bucket's key expires a second after the bucket would be full again, so idle
			// clients cost Redis nothing, and not before, which would hand out a fresh burst.
			ttl, err := c.PTTL(context.Background(), prefix+"k").Result()
			if err != nil {
				t.Fatal(err)
			}
			full := time.Duration(tt.rate.Burst)*tt.interval + time.Second
			if ttl > full+time.Millisecond || ttl < full-time.Since(start)-10*time.Millisecond {
				t.Fatalf("the key's TTL is %v, want about %v", ttl, full)
			}
			// Another key is a bucket of its own.
			if d := take(t, l, "other", tt.rate); !d.Allowed {
				t.Fatalf("another key was refused: %+v", d)
			}
			if !tt.wait {
				return
			}
			time.Sleep(d.RetryAfter)
			if d := take(t, l, "k", tt.rate); !d.Allowed {
				t.Fatalf("refused after waiting RetryAfter: %+v", d)
			}
			if d := take(t, l, "k", tt.rate); d.Allowed {
				t.Fatal("the refilled token was handed out twice")
			}
		})
	}
}

// TestRedisExactAcrossReplicas hammers one bucket from several goroutines of two limiters with
// separate clients, as two gateway replicas would: together they get the bucket's rate, not
// twice it, and not much less.
func TestRedisExactAcrossReplicas(t *testing.T) {
	t.Parallel()
	c1, c2 := newRedisClient(t), newRedisClient(t)
	prefix := keyPrefix(t, c1)
	replicas := []*ratelimit.Redis{ratelimit.NewRedis(c1, prefix), ratelimit.NewRedis(c2, prefix)}
	rate := ratelimit.Rate{PerSecond: 100, Burst: 10}
	run := 1500 * time.Millisecond
	if testing.Short() {
		run = 500 * time.Millisecond
	}

	var allowed [2]atomic.Int64
	var requests, failures atomic.Int64
	var wg sync.WaitGroup
	begin := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replica := g % 2
			<-begin
			for ctx.Err() == nil {
				d, err := replicas[replica].Take(ctx, "shared", rate)
				if ctx.Err() != nil {
					return
				}
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				if d.Allowed {
					allowed[replica].Add(1)
				}
			}
		}()
	}
	start := time.Now()
	close(begin)
	time.Sleep(run)
	cancel()
	wg.Wait()
	elapsed := time.Since(start)

	total := allowed[0].Load() + allowed[1].Load()
	t.Logf("%d requests in %v, %d allowed (%d and %d per replica)", requests.Load(), elapsed, total, allowed[0].Load(), allowed[1].Load())
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d Redis errors", n)
	}
	if n := float64(requests.Load()); n < 5*rate.PerSecond*elapsed.Seconds() {
		t.Fatalf("only %v requests: the bucket was not under pressure, so the test proves nothing", n)
	}
	upper := float64(rate.Burst) + rate.PerSecond*elapsed.Seconds() + 1
	lower := float64(rate.Burst) + 0.8*rate.PerSecond*elapsed.Seconds() - 1
	if got := float64(total); got > upper || got < lower {
		t.Fatalf("%v allowed in %v, want within [%.0f, %.0f]", got, elapsed, lower, upper)
	}
	if allowed[0].Load() == 0 || allowed[1].Load() == 0 {
		t.Fatal("one replica got nothing: the replicas do not share the bucket fairly")
	}
}

// TestRedisFailsOpen checks that an unreachable Redis lets requests through with an error, so
// a Redis outage degrades rate limiting instead of the whole gateway.
func TestRedisFailsOpen(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		addr string
	}{
		{"closed port", context.Background(), addr},
		{"canceled context", canceled, addr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := redis.NewClient(&redis.Options{Addr: tt.addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 500 * time.Millisecond})
			t.Cleanup(func() { _ = c.Close() })
			l := ratelimit.NewRedis(c, "basalt-test:")
			for range 3 {
				d, err := l.Take(tt.ctx, "k", ratelimit.Rate{PerSecond: 1, Burst: 1})
				if err == nil {
					t.Fatal("no error from an unreachable Redis")
				}
				if !d.Allowed || d.RetryAfter != 0 {
					t.Fatalf("decision %+v, want allowed (fail open)", d)
				}
				if !strings.HasPrefix(err.Error(), "ratelimit: redis: ") {
					t.Fatalf("error %q does not say it came from the rate limiter's Redis", err)
				}
			}
		})
	}
}
