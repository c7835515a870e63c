package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// h2cServer answers a POST over HTTP/2 with 200 when it is a gRPC call of an empty message or
// a Connect call with an empty body, and anything else (a request over HTTP/1.1 included) with
// 418, counting each kind.
func h2cServer(t *testing.T) (srv *httptest.Server, served, failed *atomic.Int64) {
	t.Helper()
	served, failed = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 16)
		n, _ := r.Body.Read(body)
		grpc := r.Header.Get("Content-Type") == "application/grpc" && string(body[:n]) == "\x00\x00\x00\x00\x00"
		empty := r.Header.Get("Content-Type") == "application/proto" && n == 0
		if r.ProtoMajor != 2 || r.Method != http.MethodPost || !(grpc || empty) || r.Header.Get("X-Fail") != "" {
			failed.Add(1)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		served.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, served, failed
}

func h2load(t *testing.T) H2Load {
	t.Helper()
	bin, err := exec.LookPath("h2load")
	if err != nil {
		t.Skip("h2load is not installed (Debian: apt-get install nghttp2-client)")
	}
	return H2Load{Bin: bin, Dir: t.TempDir()}
}

var grpcCall = Request{Method: http.MethodPost, Header: http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}, Body: []byte{0, 0, 0, 0, 0}}

func TestH2LoadRunCountsWhatTheServerSaw(t *testing.T) {
	t.Parallel()
	h := h2load(t)
	srv, served, _ := h2cServer(t)
	req := grpcCall
	req.URL = srv.URL + "/x"
	res, cpu, err := h.Run(context.Background(), req, 2, 100*time.Millisecond, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up requests reach the server but are not counted; each counted one has a latency.
	if res.Requests == 0 || int64(res.Requests) > served.Load() || res.Errors != 0 || len(res.Latencies) != res.Requests || cpu <= 0 {
		t.Errorf("counted %d requests, %d errors (%v), %d latencies, %s of CPU; the server served %d",
			res.Requests, res.Errors, res.FirstError, len(res.Latencies), cpu, served.Load())
	}
	if res.Percentile(0.5) > res.Percentile(0.99) || res.Percentile(0.99) <= 0 {
		t.Errorf("p50 %s, p99 %s", res.Percentile(0.5), res.Percentile(0.99))
	}
	req.Header = http.Header{"Content-Type": {"application/grpc"}, "X-Fail": {"1"}}
	bad, _, err := h.Run(context.Background(), req, 1, 0, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The latencies are this run's alone, though h2load appends to its log.
	if bad.Requests != 0 || bad.Errors == 0 || bad.FirstError == nil || len(bad.Latencies) != 0 {
		t.Errorf("non-2xx answers: %d requests, %d errors, first %v, %d latencies", bad.Requests, bad.Errors, bad.FirstError, len(bad.Latencies))
	}
}

func TestH2LoadSendSendsExactlyN(t *testing.T) {
	t.Parallel()
	h := h2load(t)
	srv, served, failed := h2cServer(t)
	req := grpcCall
	req.URL = srv.URL + "/x"
	// A POST without a body is one h2load cannot send as a file.
	empty := Request{Method: http.MethodPost, URL: req.URL, Header: http.Header{"Content-Type": {"application/proto"}}}
	for _, tt := range []struct {
		req        Request
		workers, n int
	}{{req, 1, 1}, {req, 3, 10}, {req, 8, 13}, {empty, 2, 4}} {
		before := served.Load()
		bad, first, err := h.Send(context.Background(), tt.req, tt.workers, tt.n)
		if err != nil || bad != 0 || first != nil {
			t.Fatalf("%d over %d: %d failed (%v), %v", tt.n, tt.workers, bad, first, err)
		}
		if got := served.Load() - before; got != int64(tt.n) {
			t.Errorf("%d over %d connections: the server served %d", tt.n, tt.workers, got)
		}
	}
	req.Header = http.Header{"Content-Type": {"application/grpc"}, "X-Fail": {"1"}}
	bad, first, err := h.Send(context.Background(), req, 2, 5)
	if err != nil || bad != 5 || first == nil || failed.Load() != 5 {
		t.Errorf("non-2xx answers: %d failed, first %v, %v; the server refused %d", bad, first, err, failed.Load())
	}
}
