package main

import (
	"strings"
	"testing"
)

// TestMedianIntervalTakesTheBinomialOrderStatistics checks the interval against order
// statistics worked out by hand from the binomial tail (for 32 draws, P(X <= 9) = 0.010 and
// P(X <= 10) = 0.02505 exceeds the 0.025 allowed, so the 10th from each end), and that a sample
// too small for the confidence yields none (five draws: P(X = 0) = 1/32 > 0.025).
func TestMedianIntervalTakesTheBinomialOrderStatistics(t *testing.T) {
	t.Parallel()
	seq := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(i + 1)
		}
		return s
	}
	for _, tt := range []struct {
		n          int
		confidence float64
		lo, hi     float64
		ok         bool
	}{
		{5, 0.95, 0, 0, false},
		{6, 0.95, 1, 6, true},
		{10, 0.95, 2, 9, true},
		{32, 0.95, 10, 23, true},
		{64, 0.95, 24, 41, true},
		{10, 0.5, 4, 7, true},
	} {
		lo, hi, ok := medianInterval(seq(tt.n), tt.confidence)
		if lo != tt.lo || hi != tt.hi || ok != tt.ok {
			t.Errorf("n=%d at %.2f: %v to %v, %t; want %v to %v, %t", tt.n, tt.confidence, lo, hi, ok, tt.lo, tt.hi, tt.ok)
		}
	}
}

func TestVerdictNamesWhoIsAhead(t *testing.T) {
	t.Parallel()
	many := func(lo, step float64) []float64 {
		s := make([]float64, 32)
		for i := range s {
			s[i] = lo + float64(i)*step
		}
		return s
	}
	for _, tt := range []struct {
		name   string
		ratios []float64
		want   string
	}{
		{"all above one", many(1.01, 0.01), "gateway is ahead"},
		{"all below one", many(0.6, 0.01), "nginx is ahead"},
		{"straddling one", many(0.85, 0.01), "no difference shown"},
		{"too few", []float64{2, 3}, "too few pairs"},
	} {
		if got := verdict("throughput", tt.ratios, 0.95, "the gateway", "nginx"); !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q, want it to say %q", tt.name, got, tt.want)
		}
	}
}
