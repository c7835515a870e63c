package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		perSecond float64
		want      time.Duration
		wantMicro int64
	}{
		{1, time.Second, 1_000_000},
		{0.1, 10 * time.Second, 10_000_000},
		{0.5, 2 * time.Second, 2_000_000},
		{3, 333_333_334 * time.Nanosecond, 333_334},
		{1500, 666_667 * time.Nanosecond, 667},
		{300_000, 3_334 * time.Nanosecond, 4},
		{1e6, time.Microsecond, 1},
		{1e7, 100 * time.Nanosecond, 1},
		{3e9, time.Nanosecond, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.perSecond), func(t *testing.T) {
			t.Parallel()
			r := Rate{PerSecond: tt.perSecond, Burst: 1}
			if got := r.interval(); got != tt.want {
				t.Fatalf("interval() = %v, want %v", got, tt.want)
			}
			got := intervalMicros(r)
			if got != tt.wantMicro {
				t.Fatalf("intervalMicros() = %d, want %d", got, tt.wantMicro)
			}
			// Rounded up, never down: Redis must not refill faster than the rate.
			if float64(got)*tt.perSecond < 1e6 {
				t.Fatalf("%dµs a token is faster than %g/s", got, tt.perSecond)
			}
		})
	}
}
