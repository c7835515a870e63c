package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsWhatTheServerSaw(t *testing.T) {
	t.Parallel()
	var served, failed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" || r.Method != http.MethodPost {
			failed.Add(1)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		served.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Request{Method: "POST", URL: srv.URL, Body: []byte("x")}, 4, 50*time.Millisecond, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up requests reach the server but are not counted, so the run counts at most what
	// the server served, and every counted request has a latency.
	if res.Requests == 0 || int64(res.Requests) > served.Load() || res.Errors != 0 || len(res.Latencies) != res.Requests {
		t.Errorf("counted %d requests and %d errors; the server served %d", res.Requests, res.Errors, served.Load())
	}
	if res.Percentile(0.5) > res.Percentile(0.99) || res.Percentile(0.99) <= 0 {
		t.Errorf("p50 %s, p99 %s", res.Percentile(0.5), res.Percentile(0.99))
	}

	bad, err := Run(context.Background(), Request{Method: "POST", URL: srv.URL, Header: http.Header{"X-Fail": {"1"}}}, 2, 0, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if bad.Requests != 0 || bad.Errors == 0 || bad.FirstError == nil {
		t.Errorf("non-200 answers: %d requests, %d errors, first %v", bad.Requests, bad.Errors, bad.FirstError)
	}
}
