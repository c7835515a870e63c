package metrics

import (
	"sync/atomic"
	"testing"
)

// TestInFlightIsReadWhenScraped checks that the in-flight gauge reports what the caller's
// counter holds at the time of each scrape.
func TestInFlightIsReadWhenScraped(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	m := New([]string{"/basalt.test.v1.TestService/Call"}, n.Load, n.Load)
	for _, want := range []int64{0, 3, 1} {
		n.Store(want)
		if got := inFlightOf(t, m); got != float64(want) {
			t.Fatalf("basalt_gateway_in_flight_requests = %v; want %d", got, want)
		}
	}
}

func inFlightOf(t *testing.T, m *Metrics) float64 {
	t.Helper()
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "basalt_gateway_in_flight_requests" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no basalt_gateway_in_flight_requests series")
	return 0
}
