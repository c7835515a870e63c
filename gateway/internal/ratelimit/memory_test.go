package ratelimit_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/ratelimit"
)

// clock is a fake clock the test moves by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func take(t *testing.T, l ratelimit.Limiter, key string, r ratelimit.Rate) ratelimit.Decision {
	t.Helper()
	d, err := l.Take(context.Background(), key, r)
	if err != nil {
		t.Fatalf("Take(%q): %v", key, err)
	}
	return d
}

func TestMemoryBurstThenRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rate     ratelimit.Rate
		interval time.Duration // the time one token takes to refill
	}{
		{"10/s burst 20", ratelimit.Rate{PerSecond: 10, Burst: 20}, 100 * time.Millisecond},
		{"0.5/s burst 5 (login)", ratelimit.Rate{PerSecond: 0.5, Burst: 5}, 2 * time.Second},
		{"0.1/s burst 3 (register)", ratelimit.Rate{PerSecond: 0.1, Burst: 3}, 10 * time.Second},
		{"1000/s burst 1", ratelimit.Rate{PerSecond: 1000, Burst: 1}, time.Millisecond},
		{"3/s burst 7 (interval rounded up)", ratelimit.Rate{PerSecond: 3, Burst: 7}, 333333334 * time.Nanosecond},
		{"1/s burst 1", ratelimit.Rate{PerSecond: 1, Burst: 1}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			m := ratelimit.NewMemory(ratelimit.WithClock(clk.now))
			for i := range tt.rate.Burst {
				if d := take(t, m, "k", tt.rate); !d.Allowed || d.RetryAfter != 0 {
					t.Fatalf("request %d of the burst: %+v, want allowed", i+1, d)
				}
			}
			// The bucket is empty: the next token comes one interval from now.
			for range 3 { // a refused request takes nothing, so asking again changes nothing
				if d := take(t, m, "k", tt.rate); d.Allowed || d.RetryAfter != tt.interval {
					t.Fatalf("after the burst: %+v, want refused with RetryAfter %v", d, tt.interval)
				}
			}
			clk.advance(tt.interval - time.Nanosecond)
			if d := take(t, m, "k", tt.rate); d.Allowed || d.RetryAfter != time.Nanosecond {
				t.Fatalf("1ns before the token: %+v, want refused with RetryAfter 1ns", d)
			}
			clk.advance(time.Nanosecond)
			if d := take(t, m, "k", tt.rate); !d.Allowed {
				t.Fatalf("at RetryAfter: %+v, want allowed", d)
			}
			if d := take(t, m, "k", tt.rate); d.Allowed || d.RetryAfter != tt.interval {
				t.Fatalf("after the refilled token: %+v, want refused with RetryAfter %v", d, tt.interval)
			}
		})
	}
}

func TestMemoryRefill(t *testing.T) {
	t.Parallel()
	rate := ratelimit.Rate{PerSecond: 10, Burst: 5} // a token every 100ms
	// Each step advances the clock, then takes until refused.
	steps := []struct {
		advance     time.Duration
		wantAllowed int
		wantRetry   time.Duration
	}{
		{0, 5, 100 * time.Millisecond},                       // the full burst
		{350 * time.Millisecond, 3, 50 * time.Millisecond},   // 3.5 tokens refilled
		{50 * time.Millisecond, 1, 100 * time.Millisecond},   // the half token completes
		{99 * time.Millisecond, 0, time.Millisecond},         // not quite a token
		{time.Millisecond, 1, 100 * time.Millisecond},        // now it is
		{time.Hour, 5, 100 * time.Millisecond},               // a full bucket holds only burst
		{10 * time.Second, 5, 100 * time.Millisecond},        // again
		{499 * time.Millisecond, 4, time.Millisecond},        // 4.99 tokens: the fifth is 1ms away
		{time.Millisecond, 1, 100 * time.Millisecond},        // and here it is
		{1000 * time.Millisecond, 5, 100 * time.Millisecond}, // 9.9 tokens, capped at 5
	}
	clk := newClock()
	m := ratelimit.NewMemory(ratelimit.WithClock(clk.now))
	for i, s := range steps {
		clk.advance(s.advance)
		allowed := 0
		var d ratelimit.Decision
		for d = take(t, m, "k", rate); d.Allowed; d = take(t, m, "k", rate) {
			allowed++
			if allowed > 100 {
				t.Fatalf("step %d: the bucket never empties", i)
			}
		}
		if allowed != s.wantAllowed || d.RetryAfter != s.wantRetry {
			t.Fatalf("step %d (+%v): %d allowed then RetryAfter %v, want %d then %v", i, s.advance, allowed, d.RetryAfter, s.wantAllowed, s.wantRetry)
		}
	}
}

// TestMemoryAccuracy checks the limiter against random arrival sequences: never more than
// burst + rate×t in any window of length t, never a refusal that waiting RetryAfter does not
// cure, and every decision the same as a token bucket counted the plain way would make.
func TestMemoryAccuracy(t *testing.T) {
	t.Parallel()
	rates := []float64{0.1, 0.5, 1, 3, 7, 50, 1000, 25_000}
	bursts := []int{1, 3, 20}
	for _, perSecond := range rates {
		for _, burst := range bursts {
			for seed := uint64(1); seed <= 3; seed++ {
				rate := ratelimit.Rate{PerSecond: perSecond, Burst: burst}
				t.Run(fmt.Sprintf("%g/s burst %d seed %d", perSecond, burst, seed), func(t *testing.T) {
					t.Parallel()
					checkAccuracy(t, rate, seed)
				})
			}
		}
	}
}

func checkAccuracy(t *testing.T, rate ratelimit.Rate, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	clk := newClock()
	start := clk.ns.Load()
	m := ratelimit.NewMemory(ratelimit.WithClock(clk.now))
	ideal := float64(time.Second) / rate.PerSecond // ns per token at exactly the rate

	// The reference: a token bucket kept as credit in nanoseconds, capped at burst tokens'
	// worth; a request costs one token's worth. With the limiter's interval (the rate's,
	// rounded up to whole nanoseconds) it must decide exactly as GCRA does.
	interval := int64(math.Ceil(ideal))
	credit, last := interval*int64(rate.Burst), start

	var allowedAt []int64 // times of allowed requests, relative to start
	retries, refusals := 0, 0
	const requests = 3000
	// The client switches between phases: a flood (four times the rate), about the rate,
	// simultaneous bursts, and long pauses that let the bucket fill up.
	phase := 0
	for i := 0; i < requests; i++ {
		if rng.Float64() < 0.02 {
			phase = rng.IntN(4)
		}
		switch phase {
		case 0:
			clk.advance(time.Duration(rng.Float64() * 0.5 * ideal))
		case 1:
			clk.advance(time.Duration(rng.Float64() * 2 * ideal))
		case 2:
			if rng.Float64() < 0.1 {
				clk.advance(time.Duration(rng.Float64() * 5 * ideal))
			}
		default:
			clk.advance(time.Duration(rng.Float64() * float64(rate.Burst+2) * 2 * ideal))
		}
		now := clk.ns.Load()
		credit = min(credit+(now-last), interval*int64(rate.Burst))
		last = now
		refAllowed := credit >= interval
		if refAllowed {
			credit -= interval
		}

		d := take(t, m, "k", rate)
		if d.Allowed != refAllowed {
			t.Fatalf("request %d at +%v: allowed=%v, a token bucket says %v", i, time.Duration(now-start), d.Allowed, refAllowed)
		}
		if d.Allowed {
			allowedAt = append(allowedAt, now-start)
			continue
		}
		refusals++
		if want := time.Duration(interval - credit); d.RetryAfter != want {
			t.Fatalf("request %d: RetryAfter %v, a token bucket says %v", i, d.RetryAfter, want)
		}
		if d.RetryAfter <= 0 || d.RetryAfter > time.Duration(interval) {
			t.Fatalf("request %d: RetryAfter %v, want within (0, %v]", i, d.RetryAfter, time.Duration(interval))
		}
		// Not too strict: a client that waits as long as it was told gets through.
		if rng.Float64() < 0.3 {
			clk.advance(d.RetryAfter)
			if d := take(t, m, "k", rate); !d.Allowed {
				t.Fatalf("request %d: refused again after waiting RetryAfter: %+v", i, d)
			}
			now := clk.ns.Load()
			credit = min(credit+(now-last), interval*int64(rate.Burst)) - interval
			last = now
			allowedAt = append(allowedAt, now-start)
			retries++
		}
	}
	if retries < 10 || refusals < requests/10 || len(allowedAt) < requests/10 {
		t.Fatalf("the sequence did not exercise the limiter: %d allowed, %d refused, %d retries", len(allowedAt), refusals, retries)
	}
	// Never too lenient: in every window [a_i, a_j] of allowed requests,
	// j-i+1 ≤ burst + rate×(a_j-a_i). With g(i) = rate×a_i - i the left side minus the rate term
	// is (j+1 - rate×a_j) + g(i), so a running maximum of g checks every window in one pass.
	perNs := rate.PerSecond / float64(time.Second)
	maxG := math.Inf(-1)
	for j, aj := range allowedAt {
		maxG = max(maxG, perNs*float64(aj)-float64(j))
		if excess := float64(j+1) - perNs*float64(aj) + maxG; excess > float64(rate.Burst)+1e-6 {
			t.Fatalf("a window ending at request %d allowed %.3f more than burst + rate×t", j, excess-float64(rate.Burst))
		}
	}
	// And over the whole run, allowed ≤ burst + rate×elapsed + 1 (the bound stated in the
	// package documentation, with one request's slack).
	elapsed := float64(clk.ns.Load() - start)
	if limit := float64(rate.Burst) + perNs*elapsed + 1; float64(len(allowedAt)) > limit {
		t.Fatalf("%d allowed over %v, more than %.1f", len(allowedAt), time.Duration(elapsed), limit)
	}
}

// TestMemoryGreedyClient checks the lower bound: a client that always comes back exactly when
// told gets the burst and then one request per interval, for as long as it keeps asking.
func TestMemoryGreedyClient(t *testing.T) {
	t.Parallel()
	tests := []ratelimit.Rate{
		{PerSecond: 0.1, Burst: 3},
		{PerSecond: 0.5, Burst: 5},
		{PerSecond: 10, Burst: 20},
		{PerSecond: 3, Burst: 1},
		{PerSecond: 5000, Burst: 50},
	}
	for _, rate := range tests {
		t.Run(fmt.Sprintf("%g/s burst %d", rate.PerSecond, rate.Burst), func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			start := clk.now()
			m := ratelimit.NewMemory(ratelimit.WithClock(clk.now))
			allowed, refused := 0, 0
			for allowed < 1000 {
				d := take(t, m, "greedy", rate)
				if d.Allowed {
					allowed++
					continue
				}
				refused++
				if refused > allowed+rate.Burst {
					t.Fatalf("refused %d times for %d allowed: waiting RetryAfter does not help", refused, allowed)
				}
				clk.advance(d.RetryAfter)
			}
			elapsed := clk.now().Sub(start)
			// Every refusal was followed by a success, and the rate was honoured to within the
			// interval's rounding to whole nanoseconds.
			if refused != allowed-rate.Burst {
				t.Fatalf("%d refusals for %d allowed, want %d", refused, allowed, allowed-rate.Burst)
			}
			if got := float64(allowed-rate.Burst) / elapsed.Seconds(); math.Abs(got-rate.PerSecond)/rate.PerSecond > 1e-6 {
				t.Fatalf("a greedy client got %g/s after its burst, want %g/s", got, rate.PerSecond)
			}
		})
	}
}

func TestMemoryKeysAreIndependent(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := ratelimit.NewMemory(ratelimit.WithClock(clk.now))
	rate := ratelimit.Rate{PerSecond: 1, Burst: 2}
	for range rate.Burst {
		take(t, m, "203.0.113.7", rate)
	}
	if d := take(t, m, "203.0.113.7", rate); d.Allowed {
		t.Fatal("the drained key is still allowed")
	}
	for _, other := range []string{"203.0.113.8", "203.0.113.70", "", "user:203.0.113.7"} {
		for i := range rate.Burst {
			if d := take(t, m, other, rate); !d.Allowed {
				t.Fatalf("key %q, request %d: refused because another key was drained", other, i+1)
			}
		}
		if d := take(t, m, other, rate); d.Allowed {
			t.Fatalf("key %q: allowed past its burst", other)
		}
	}
	if d := take(t, m, "203.0.113.7", rate); d.Allowed {
		t.Fatal("the drained key was refilled by other keys' requests")
	}
	if got := m.Len(); got != 5 {
		t.Fatalf("Len() = %d, want 5 buckets", got)
	}
}

func TestMemoryMaxKeysBoundsBuckets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		maxKeys int
		bound   int
	}{
		{0, 1}, // at least one
		{1, 1},
		{10, 10},
		{63, 63},
		{64, 64},
		{100, 100},
		{1000, 1000},
		{5000, 5000},
	}
	for _, tt := range tests {
		for _, advancing := range []bool{false, true} {
			t.Run(fmt.Sprintf("max %d advancing %v", tt.maxKeys, advancing), func(t *testing.T) {
				t.Parallel()
				clk := newClock()
				m := ratelimit.NewMemory(ratelimit.WithClock(clk.now), ratelimit.WithMaxKeys(tt.maxKeys))
				rate := ratelimit.Rate{PerSecond: 100, Burst: 2}
				keys := 20*tt.bound + 500
				for i := range keys {
					if advancing {
						// Earlier buckets are full again by now, so they go first.
						clk.advance(7 * time.Millisecond)
					}
					if d := take(t, m, fmt.Sprintf("client-%d", i), rate); !d.Allowed {
						t.Fatalf("a new key was refused: %+v", d)
					}
					if i%97 == 0 || i == keys-1 {
						if n := m.Len(); n > tt.bound || n < 1 {
							t.Fatalf("after %d keys Len() = %d, want within [1, %d]", i+1, n, tt.bound)
						}
					}
				}
				// Without full buckets to drop, eviction keeps three quarters of each shard.
				if n := m.Len(); !advancing && n < tt.bound/2 {
					t.Fatalf("Len() = %d after the flood, want at least half the bound %d kept", n, tt.bound)
				}
			})
		}
	}
}

// TestMemoryMaxKeysKeepsBucketsInUse checks that the bound drops full buckets before one that
// still throttles a client: a flood of distinct keys must not let the throttled client in.
func TestMemoryMaxKeysKeepsBucketsInUse(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := ratelimit.NewMemory(ratelimit.WithClock(clk.now), ratelimit.WithMaxKeys(512))
	slow := ratelimit.Rate{PerSecond: 0.001, Burst: 1} // a token every 1000s
	fast := ratelimit.Rate{PerSecond: 1000, Burst: 1}  // full again after 1ms
	take(t, m, "throttled", slow)
	for i := range 20_000 {
		clk.advance(2 * time.Millisecond)
		take(t, m, fmt.Sprintf("flood-%d", i), fast)
	}
	if n := m.Len(); n > 512 {
		t.Fatalf("Len() = %d, want at most 512", n)
	}
	if d := take(t, m, "throttled", slow); d.Allowed {
		t.Fatal("the throttled client's bucket was dropped for full ones: it got a fresh burst")
	}
}

func TestMemoryConcurrent(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := ratelimit.NewMemory(ratelimit.WithClock(clk.now))
	rate := ratelimit.Rate{PerSecond: 1, Burst: 100}
	var allowed atomic.Int64
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				d, _ := m.Take(context.Background(), "shared", rate)
				if d.Allowed {
					allowed.Add(1)
				}
				_, _ = m.Take(context.Background(), fmt.Sprintf("own-%d-%d", g, i%10), rate)
			}
		}()
	}
	for range 8 {
		<-done
	}
	// The clock stood still: exactly the burst got through, however the goroutines interleaved.
	if got := allowed.Load(); got != int64(rate.Burst) {
		t.Fatalf("%d allowed from one bucket by 8 goroutines, want exactly %d", got, rate.Burst)
	}
	if got := m.Len(); got != 81 {
		t.Fatalf("Len() = %d, want 81", got)
	}
}

func BenchmarkMemoryTake(b *testing.B) {
	m := ratelimit.NewMemory()
	rate := ratelimit.Rate{PerSecond: 1e6, Burst: 1000}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("203.0.%d.%d", i/256, i%256)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) * 7919
		ctx := context.Background()
		for pb.Next() {
			i++
			if _, err := m.Take(ctx, keys[i%uint64(len(keys))], rate); err != nil {
				b.Fatal(err)
			}
		}
	})
}
