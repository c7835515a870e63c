package loadgen

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer answers a POST with 200 and anything else, or a request carrying X-Fail, with
// 418, counting each kind, so a test can compare what the generator reported with what arrived.
func countingServer(t *testing.T) (srv *httptest.Server, served, failed *atomic.Int64) {
	t.Helper()
	served, failed = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" || r.Method != http.MethodPost {
			failed.Add(1)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		served.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, served, failed
}

func TestRunCountsWhatTheServerSaw(t *testing.T) {
	t.Parallel()
	srv, served, _ := countingServer(t)

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

// TestSendSendsExactlyN sends counts of requests that do and do not divide among the workers:
// the server must see each count exactly, and non-200 answers must be counted as failures.
func TestSendSendsExactlyN(t *testing.T) {
	t.Parallel()
	srv, served, failed := countingServer(t)
	for _, tt := range []struct{ workers, n int }{{1, 1}, {4, 100}, {3, 10}, {8, 13}} {
		before := served.Load()
		bad, first, err := Send(context.Background(), Request{Method: "POST", URL: srv.URL}, tt.workers, tt.n)
		if err != nil || bad != 0 || first != nil {
			t.Fatalf("%d over %d: %d failed (%v), %v", tt.n, tt.workers, bad, first, err)
		}
		if got := served.Load() - before; got != int64(tt.n) {
			t.Errorf("%d over %d workers: the server served %d", tt.n, tt.workers, got)
		}
	}
	bad, first, err := Send(context.Background(), Request{Method: "POST", URL: srv.URL, Header: http.Header{"X-Fail": {"1"}}}, 2, 5)
	if err != nil || bad != 5 || first == nil || failed.Load() != 5 {
		t.Errorf("non-200 answers: %d failed, first %v, %v; the server refused %d", bad, first, err, failed.Load())
	}
	if _, _, err := Send(context.Background(), Request{Method: "POST", URL: srv.URL}, 4, 3); err == nil {
		t.Error("fewer requests than workers were accepted")
	}
}

func TestRunRedialsWhenTheServerClosesAndReadsChunkedAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"the server closes after each answer", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			_, _ = w.Write([]byte("ok"))
		}},
		{"the answer is chunked", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("one"))
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("two"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var served atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				tt.handler(w, r)
			}))
			defer srv.Close()
			res, err := Run(context.Background(), Request{Method: "GET", URL: srv.URL + "/x?y=1"}, 2, 0, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Requests < 2 || int64(res.Requests) > served.Load() {
				t.Errorf("%d requests, %d errors (first %v); the server served %d", res.Requests, res.Errors, res.FirstError, served.Load())
			}
		})
	}
}

func TestReadAnswerFramesEachAnswer(t *testing.T) {
	t.Parallel()
	// Each stream holds one answer followed by "HTTP/1.1 299 Next": an answer read past its
	// end or short of it leaves something other than the next status line.
	const next = "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
	tests := []struct {
		name   string
		answer string
		status int
		keep   bool
		err    bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true, false},
		{"chunks with an extension and a trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\none\r\nA\r\n0123456789\r\n0\r\nGrpc-Status: 0\r\n\r\n", 200, true, false},
		{"an interim answer first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", 404, true, false},
		{"no content", "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", 204, true, false},
		{"the server closes", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 200, false, false},
		{"HTTP/1.0 closes unless kept alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, false, false},
		{"HTTP/1.0 kept alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", 200, true, false},
		{"a bad status line", "HTTP/2 200\r\n\r\n", 0, false, true},
		{"a bad status", "HTTP/1.1 2x0 OK\r\n\r\n", 0, false, true},
		{"a bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, true},
		{"a header line without a colon", "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", 0, false, true},
		{"a bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false, true},
		{"a chunk longer than it says", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", 0, false, true},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReader(strings.NewReader(tt.answer + next))
			status, keep, err := readAnswer(br)
			if tt.err {
				if err == nil {
					t.Fatalf("readAnswer = %d, %t, nil; want an error", status, keep)
				}
				return
			}
			if err != nil || status != tt.status || keep != tt.keep {
				t.Fatalf("readAnswer = %d, %t, %v; want %d, %t", status, keep, err, tt.status, tt.keep)
			}
			if status, _, err := readAnswer(br); err != nil || status != 299 {
				t.Fatalf("the next answer read as %d, %v", status, err)
			}
		})
	}
}

func TestReadAnswerFailsOnATruncatedAnswer(t *testing.T) {
	t.Parallel()
	for _, answer := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"HTTP/1.1 200 OK\r\nContent-Le",
	} {
		if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(answer))); err == nil {
			t.Errorf("readAnswer(%q) = nil error", answer)
		}
	}
	// An answer without framing ends with the connection, which then closes.
	status, keep, err := readAnswer(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n\r\nall of it")))
	if err != nil || status != 200 || keep {
		t.Errorf("unframed answer: %d, %t, %v; want 200, false, nil", status, keep, err)
	}
}

func TestRunRefusesRequestsItCannotSend(t *testing.T) {
	t.Parallel()
	for _, req := range []Request{
		{Method: "POST", URL: "https://127.0.0.1:1/"},
		{Method: "POST", URL: "127.0.0.1:1/"},
		{Method: "HEAD", URL: "http://127.0.0.1:1/"},
		{Method: "POST", URL: "http://%zz"},
	} {
		if _, err := Run(context.Background(), req, 1, 0, time.Millisecond); err == nil {
			t.Errorf("Run(%s %s) = nil error", req.Method, req.URL)
		}
	}
}
