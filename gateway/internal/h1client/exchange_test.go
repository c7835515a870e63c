package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// recordingRequest writes a POST /echo with its body, and records the host of every attempt so
// that tests can tell which instances the balancer chose and how often it wrote the call.
type recordingRequest struct {
	body string

	mu    sync.Mutex
	hosts []string
}

func (r *recordingRequest) WriteRequest(w *bufio.Writer, host string) error {
	r.mu.Lock()
	r.hosts = append(r.hosts, host)
	r.mu.Unlock()
	_, err := fmt.Fprintf(w, "POST /echo HTTP/1.1\r\nHost: %s\r\nX-Test: value-%s\r\nContent-Length: %d\r\n\r\n%s",
		host, r.body, len(r.body), r.body)
	return err
}

func (r *recordingRequest) attempts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hosts)
}

// exchangeOpen makes one exchange and returns the answer, its body unread and its headers
// still readable.
func exchangeOpen(c *client, x *Exchange) (*Answer, error) {
	a := new(Answer)
	return a, c.Exchange(context.Background(), "echo", x, a)
}

// exchangeAll makes one exchange, reads its body to the end and closes the answer, returning
// the answer (closed), the body and the first error.
func exchangeAll(c *client, x *Exchange) (*Answer, string, error) {
	a := new(Answer)
	if err := c.Exchange(context.Background(), "echo", x, a); err != nil {
		return a, "", err
	}
	defer a.Close()
	b, err := io.ReadAll(a)
	return a, string(b), err
}

// idleConns counts the pooled connections to host, so a test can tell a connection that went
// back to the pool from one that was closed.
func idleConns(c *client, host string) int {
	c.h1.mu.Lock()
	defer c.h1.mu.Unlock()
	if l := c.h1.idle[host]; l != nil {
		return len(l.conns)
	}
	return 0
}

func hostOf(url string) string { return strings.TrimPrefix(url, "http://") }

func TestExchangeRoundTripsAndReusesTheConnection(t *testing.T) {
	t.Parallel()
	var hosts sync.Map
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, true)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Test", r.Header.Get("X-Test"))
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(b)
	})
	c := staticClient(t, []string{srv.URL})
	for i, body := range []string{"first call", "second, longer call"} {
		x := &Exchange{Request: &recordingRequest{body: body}}
		a, err := exchangeOpen(c, x)
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		// A status other than 200 shows the status line is parsed, not assumed.
		if a.Status != http.StatusAccepted {
			t.Errorf("exchange %d: status %d, want 202", i, a.Status)
		}
		b, err := io.ReadAll(a)
		if got := string(b); err != nil || got != body {
			t.Errorf("exchange %d: body %q, %v; want %q", i, got, err, body)
		}
		if a.ContentLength != int64(len(body)) {
			t.Errorf("exchange %d: ContentLength %d, want %d", i, a.ContentLength, len(body))
		}
		// The headers are the answer's until Close gives its connection back.
		var test string
		var multi []string
		a.EndToEnd(func(k, v string) bool {
			switch k {
			case "X-Test":
				test = v
			case "X-Multi":
				multi = append(multi, v)
			}
			return true
		})
		if test != "value-"+body || !slices.Equal(multi, []string{"one", "two"}) {
			t.Errorf("exchange %d: EndToEnd walked X-Test=%q X-Multi=%q", i, test, multi)
		}
		// Returning false must stop the walk, or a caller looking for one header pays for
		// all of them and sees values it asked not to.
		calls := 0
		a.EndToEnd(func(string, string) bool { calls++; return false })
		if calls != 1 {
			t.Errorf("exchange %d: EndToEnd called fn %d times after it returned false, want 1", i, calls)
		}
		a.Close()
		calls = 0
		a.EndToEnd(func(string, string) bool { calls++; return true })
		if calls != 0 {
			t.Errorf("exchange %d: EndToEnd walked %d fields after Close, want none", i, calls)
		}
		if n, err := a.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("exchange %d: Read after Close = %d, %v; want an error", i, n, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("two sequential exchanges opened %d connections, want 1", n)
	}
	if _, ok := hosts.Load(hostOf(srv.URL)); !ok {
		t.Errorf("the server never saw the instance's host:port %q as Host", hostOf(srv.URL))
	}
}

func TestExchangeFramesAnswers(t *testing.T) {
	t.Parallel()
	fromHandler := func(h http.HandlerFunc) func(t *testing.T) (string, func() int64) {
		return func(t *testing.T) (string, func() int64) {
			srv, conns := h1Server(t, h)
			return srv.URL, conns.Load
		}
	}
	raw := func(r testkit.RawReply) func(t *testing.T) (string, func() int64) {
		return func(t *testing.T) (string, func() int64) {
			s := testkit.StartRawServer(t, testkit.AlwaysReply(r))
			return s.URL, s.Conns.Load
		}
	}
	tests := []struct {
		name       string
		start      func(t *testing.T) (url string, conns func() int64)
		wantStatus int
		wantBody   string
		wantLength int64
		// wantConns is how many connections three sequential exchanges open: 1 when the
		// connection goes back to the pool, 3 when the answer says it must not.
		wantConns int64
	}{
		{
			name: "a flushed answer arrives in chunks",
			start: fromHandler(func(w http.ResponseWriter, r *http.Request) {
				for _, part := range []string{"ab", "cd", "ef"} {
					_, _ = w.Write([]byte(part))
					w.(http.Flusher).Flush()
				}
			}),
			wantStatus: 200, wantBody: "abcdef", wantLength: -1, wantConns: 1,
		},
		{
			name: "no content",
			start: fromHandler(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}),
			wantStatus: 204, wantLength: 0, wantConns: 1,
		},
		{
			name:       "not modified carries no body even with a length",
			start:      raw(testkit.RawReply{Data: "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"}),
			wantStatus: 304, wantLength: 0, wantConns: 1,
		},
		{
			name: "an empty body of length zero",
			start: fromHandler(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "0")
				w.WriteHeader(http.StatusOK)
			}),
			wantStatus: 200, wantLength: 0, wantConns: 1,
		},
		{
			name: "informational answers are skipped",
			start: raw(testkit.RawReply{Data: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}),
			wantStatus: 200, wantBody: "ok", wantLength: 2, wantConns: 1,
		},
		{
			name: "chunks with a trailer",
			start: raw(testkit.RawReply{Data: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"3\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n"}),
			wantStatus: 200, wantBody: "abc", wantLength: -1, wantConns: 1,
		},
		{
			name:       "Connection: close is honoured",
			start:      raw(testkit.RawReply{Data: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye", Close: true}),
			wantStatus: 200, wantBody: "bye", wantLength: 3, wantConns: 3,
		},
		{
			name:       "an HTTP/1.0 answer closes its connection",
			start:      raw(testkit.RawReply{Data: "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold", Close: true}),
			wantStatus: 200, wantBody: "old", wantLength: 3, wantConns: 3,
		},
		{
			name:       "a body without framing runs until the connection closes",
			start:      raw(testkit.RawReply{Data: "HTTP/1.1 200 OK\r\n\r\nuntil the end", Close: true}),
			wantStatus: 200, wantBody: "until the end", wantLength: -1, wantConns: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, conns := tt.start(t)
			c := staticClient(t, []string{url})
			for i := range 3 {
				// The deadline turns a misframed answer, whose body would never end, into a
				// failure rather than a hung test.
				a, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "x"}, Deadline: time.Now().Add(10 * time.Second)})
				if err != nil {
					t.Fatalf("exchange %d: %v", i, err)
				}
				if a.Status != tt.wantStatus || body != tt.wantBody || a.ContentLength != tt.wantLength {
					t.Fatalf("exchange %d: status %d, body %q, length %d; want %d, %q, %d",
						i, a.Status, body, a.ContentLength, tt.wantStatus, tt.wantBody, tt.wantLength)
				}
			}
			if n := conns(); n != tt.wantConns {
				t.Errorf("three exchanges opened %d connections, want %d", n, tt.wantConns)
			}
		})
	}
}

func TestExchangeRefusesAmbiguousFraming(t *testing.T) {
	t.Parallel()
	const good = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	tests := []struct {
		name    string
		first   string
		wantErr bool
	}{
		// Each refused answer carries bytes after its head that a connection put back in the
		// pool would read as the next call's answer: the smuggling the check prevents.
		{"both a length and chunks", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true},
		{"chunks before a length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", true},
		{"two different lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\nokHTTP/1.1 2", true},
		{"a length repeated three times", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", true},
		{"a signed length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", true},
		{"an encoding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", true},
		{"a garbled status line", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", true},
		{"a carriage return in a value", "HTTP/1.1 200 OK\nX-A: 1\rContent-Length: 12\nContent-Length: 2\n\nok", true},
		// The control: the same length twice is allowed, and that connection is reused.
		{"the same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testkit.StartRawServer(t, func(request int) testkit.RawReply {
				if request == 0 {
					return testkit.RawReply{Data: tt.first}
				}
				return testkit.RawReply{Data: good}
			})
			c := staticClient(t, []string{s.URL})
			// The deadline turns an answer read with the wrong framing, whose body would never
			// end, into a failure rather than a hung test.
			_, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "x"}, Deadline: time.Now().Add(10 * time.Second)})
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("the answer was taken (body %q, error %v); want it refused as malformed", body, err)
				}
			} else if err != nil || body != "ok" {
				t.Fatalf("= %q, %v; want ok", body, err)
			}
			if n := idleConns(c, hostOf(s.URL)); tt.wantErr && n != 0 {
				t.Errorf("%d connections pooled after a refused answer, want 0", n)
			}
			// The next exchange must get the server's next, well-formed answer on a new
			// connection: on the old one it would read the refused answer's leftovers.
			if _, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "y"}}); err != nil || body != "ok" {
				t.Fatalf("the exchange after = %q, %v; want ok", body, err)
			}
			want := int64(1)
			if tt.wantErr {
				want = 2
			}
			if n := s.Conns.Load(); n != want {
				t.Errorf("two exchanges opened %d connections, want %d", n, want)
			}
		})
	}
}

func TestExchangeAnswerCutShort(t *testing.T) {
	t.Parallel()
	const good = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	s := testkit.StartRawServer(t, func(request int) testkit.RawReply {
		if request == 0 {
			return testkit.RawReply{Data: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", Close: true}
		}
		return testkit.RawReply{Data: good}
	})
	c := staticClient(t, []string{s.URL})
	a := new(Answer)
	if err := c.Exchange(context.Background(), "echo", &Exchange{Request: &recordingRequest{body: "x"}}, a); err != nil {
		t.Fatalf("the head arrived whole, yet Exchange failed: %v", err)
	}
	if a.ContentLength != 100 {
		t.Errorf("ContentLength %d, want 100", a.ContentLength)
	}
	b, err := io.ReadAll(a)
	// A body that ends early must not look like a complete one: io.ReadAll would report nil
	// for a plain io.EOF.
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "0123456789" {
		t.Errorf("reading the cut body = %q, %v; want its 10 bytes and io.ErrUnexpectedEOF", b, err)
	}
	_ = a.Close()
	if n := idleConns(c, hostOf(s.URL)); n != 0 {
		t.Errorf("%d connections pooled after a cut answer, want 0", n)
	}
	// A pooled dead connection would make this non-idempotent exchange fail.
	if _, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "y"}}); err != nil || body != "ok" {
		t.Fatalf("the exchange after = %q, %v; want ok", body, err)
	}
	if n := s.Conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestExchangeDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply testkit.RawReply
		// inBody says the deadline passes while the body is read, after Exchange returned.
		inBody bool
	}{
		{"the upstream never answers", testkit.RawReply{Hang: true}, false},
		{"the upstream stops in the middle of the body", testkit.RawReply{Data: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", Hang: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testkit.StartRawServer(t, testkit.AlwaysReply(tt.reply))
			c := staticClient(t, []string{s.URL})
			start := time.Now()
			x := &Exchange{Request: &recordingRequest{body: "x"}, Deadline: start.Add(300 * time.Millisecond)}
			a := new(Answer)
			err := c.Exchange(context.Background(), "echo", x, a)
			if tt.inBody {
				if err != nil {
					t.Fatalf("the head arrived, yet Exchange failed: %v", err)
				}
				_, err = io.ReadAll(a)
				_ = a.Close()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("= %v, want an error that is context.DeadlineExceeded", err)
			}
			// Generous: the point is that the call does not wait for the upstream forever.
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the call returned after %s with a 300ms deadline", d)
			}
			if n := idleConns(c, hostOf(s.URL)); n != 0 {
				t.Errorf("%d connections pooled after a timed-out call, want 0", n)
			}
		})
	}
}

// TestExchangeDeadlineOfEachCallOnAReusedConnection checks that a pooled connection's deadline,
// which a call leaves in place when it is close enough, bounds the next call by that call's own
// deadline: a short one after a long one still fails in time, and a long one (or none) after a
// short one does not inherit it.
func TestExchangeDeadlineOfEachCallOnAReusedConnection(t *testing.T) {
	t.Parallel()
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	tests := []struct {
		name string
		// first and second are the calls' deadlines from their start; zero is none.
		first, second time.Duration
		// reply is the upstream's answer to the second call.
		reply   testkit.RawReply
		timeout bool
	}{
		{"a short deadline after a long one", 10 * time.Second, 300 * time.Millisecond, testkit.RawReply{Hang: true}, true},
		{"no deadline after a short one", 300 * time.Millisecond, 0, testkit.RawReply{Data: ok, Delay: 600 * time.Millisecond}, false},
		{"a long deadline after a short one", 300 * time.Millisecond, 10 * time.Second, testkit.RawReply{Data: ok, Delay: 600 * time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testkit.StartRawServer(t, func(request int) testkit.RawReply {
				if request == 0 {
					return testkit.RawReply{Data: ok}
				}
				return tt.reply
			})
			c := staticClient(t, []string{s.URL})
			deadline := func(d time.Duration) time.Time {
				if d == 0 {
					return time.Time{}
				}
				return time.Now().Add(d)
			}
			if _, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "1"}, Deadline: deadline(tt.first)}); err != nil || body != "ok" {
				t.Fatalf("first call = %q, %v; want ok", body, err)
			}
			start := time.Now()
			_, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "2"}, Deadline: deadline(tt.second)})
			switch {
			case tt.timeout && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("second call = %q, %v; want an error that is context.DeadlineExceeded", body, err)
			case tt.timeout && time.Since(start) > 5*time.Second:
				t.Errorf("the second call failed after %s with a %s deadline", time.Since(start), tt.second)
			case !tt.timeout && (err != nil || body != "ok"):
				t.Fatalf("second call = %q, %v; want ok after the upstream's delay", body, err)
			}
			if n := s.Conns.Load(); n != 1 {
				t.Errorf("%d connections, want the first one reused", n)
			}
		})
	}
}

// TestExchangeTakesStartAsNow gives a call a start past its deadline, which is in the future
// by the clock: the first attempt must measure the deadline from the start it was given, as a
// caller that read the clock for the call already relies on, and not write the request.
func TestExchangeTakesStartAsNow(t *testing.T) {
	t.Parallel()
	srv, _ := h1Server(t, nil)
	c := staticClient(t, []string{srv.URL})
	deadline := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		name    string
		start   time.Time
		wantErr bool
	}{
		{"start past the deadline", deadline.Add(time.Millisecond), true},
		{"start before it", deadline.Add(-time.Minute), false},
		{"no start", time.Time{}, false},
	} {
		req := &recordingRequest{body: "x"}
		_, body, err := exchangeAll(c, &Exchange{Request: req, Deadline: deadline, Start: tt.start})
		if tt.wantErr {
			if !errors.Is(err, ErrDeadline) || len(req.attempts()) != 0 {
				t.Errorf("%s: = %q, %v after writing for %v; want ErrDeadline and nothing written", tt.name, body, err, req.attempts())
			}
		} else if err != nil || body != "x" {
			t.Errorf("%s: = %q, %v; want x", tt.name, body, err)
		}
	}
}

func TestExchangePastDeadlineDoesNotDial(t *testing.T) {
	t.Parallel()
	srv, conns := h1Server(t, nil)
	other, otherConns := h1Server(t, nil)
	c := staticClient(t, []string{srv.URL, other.URL}, ejectAtOnce)
	req := &recordingRequest{body: "x"}
	a := new(Answer)
	err := c.Exchange(context.Background(), "echo", &Exchange{Request: req, Deadline: time.Now().Add(-time.Second)}, a)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("= %v, want an error that is context.DeadlineExceeded", err)
	}
	if hosts := req.attempts(); len(hosts) != 0 {
		t.Errorf("the request was written for %v after its deadline", hosts)
	}
	// Calls that were never sent say nothing of the instance: many of them must not eject it.
	for range 10 {
		_ = c.Exchange(context.Background(), "echo", &Exchange{Request: req, Deadline: time.Now().Add(-time.Second)}, a)
	}
	checkNoneEjected(t, c, hostOf(srv.URL), hostOf(other.URL))
	// The servers accept connections in the order they were made, so once later exchanges
	// have been answered a connection dialled by a failed one would have been counted.
	if n, m := conns.Load(), otherConns.Load(); n != 1 || m != 1 {
		t.Errorf("%d and %d connections, want 1 each: a call past its deadline dialled", n, m)
	}
}

func TestExchangeRetries(t *testing.T) {
	t.Parallel()
	const calls = 6
	tests := []struct {
		name       string
		refused    bool // the other instance refuses connections, rather than dropping calls
		idempotent bool
		// wantFailures says whether some calls fail: only a call that reached an instance and
		// is not idempotent may.
		wantFailures bool
	}{
		{"a refused connection is tried elsewhere", true, false, false},
		{"a call an instance took and dropped is not sent again", false, false, true},
		{"an idempotent call an instance dropped goes to the other", false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var goodRequests atomic.Int64
			good, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
				goodRequests.Add(1)
				_, _ = io.Copy(w, r.Body)
			})
			var badURL string
			var badRequests func() int64
			if tt.refused {
				badURL = "http://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
				badRequests = func() int64 { return 0 }
			} else {
				s := testkit.StartRawServer(t, testkit.AlwaysReply(testkit.RawReply{Close: true}))
				badURL, badRequests = s.URL, s.Requests.Load
			}
			goodHost, badHost := hostOf(good.URL), hostOf(badURL)
			c := staticClient(t, []string{badURL, good.URL})
			failures, retried, writes := 0, 0, 0
			for i := range calls {
				req := &recordingRequest{body: "call-" + strconv.Itoa(i)}
				_, body, err := exchangeAll(c, &Exchange{Request: req, Idempotent: tt.idempotent})
				hosts := req.attempts()
				writes += len(hosts)
				switch {
				case err != nil:
					failures++
					// A call that fails was written once, to the instance that dropped it.
					if !slices.Equal(hosts, []string{badHost}) {
						t.Errorf("call %d failed (%v) after writing to %v, want only %s", i, err, hosts, badHost)
					}
				case body != req.body:
					t.Errorf("call %d = %q, want %q", i, body, req.body)
				case slices.Equal(hosts, []string{goodHost}):
				case slices.Equal(hosts, []string{badHost, goodHost}):
					retried++
				default:
					// A refused connection is never written to, and no call is written to
					// an instance twice.
					t.Errorf("call %d was written for %v", i, hosts)
				}
			}
			if tt.wantFailures && failures == 0 {
				t.Error("no call failed, so a call the dropping instance took was sent again")
			}
			if !tt.wantFailures && failures > 0 {
				t.Errorf("%d of %d calls failed", failures, calls)
			}
			// Round-robin over two instances sends the first or second call to the bad one
			// before it can be ejected.
			if !tt.refused && !tt.wantFailures && retried == 0 {
				t.Error("no call reached the dropping instance, so the retry was not exercised")
			}
			if got := goodRequests.Load(); got != int64(calls-failures) {
				t.Errorf("the healthy instance served %d calls, want %d", got, calls-failures)
			}
			// Every write reached a server: the RequestWriter runs once per attempt that got a
			// connection, never for one that could not connect.
			if got := goodRequests.Load() + badRequests(); got != int64(writes) {
				t.Errorf("servers got %d requests, the writer wrote %d", got, writes)
			}
		})
	}
}

func TestExchangeUnreadBodyClosesTheConnection(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789", 10_000)
	tests := []struct {
		name string
		h    http.HandlerFunc
		// read is how many bytes are read before Close.
		read      int
		wantReuse bool
	}{
		{"a length body read in part", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, big) }, 10, false},
		{"a length body not read at all", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") }, 0, false},
		{"a chunked body read in part", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "second")
		}, 3, false},
		// The control: the last byte of a body of known length reports io.EOF at once, so
		// reading exactly the length without a further Read frees the connection.
		{"a length body read exactly", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") }, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, conns := h1Server(t, tt.h)
			c := staticClient(t, []string{srv.URL})
			a := new(Answer)
			if err := c.Exchange(context.Background(), "echo", &Exchange{Request: &recordingRequest{body: "x"}}, a); err != nil {
				t.Fatal(err)
			}
			if tt.read > 0 {
				if _, err := io.ReadFull(a, make([]byte, tt.read)); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("a second Close = %v, want nil", err)
			}
			wantIdle, wantConns := 0, int64(2)
			if tt.wantReuse {
				wantIdle, wantConns = 1, 1
			}
			if n := idleConns(c, hostOf(srv.URL)); n != wantIdle {
				t.Errorf("%d connections pooled, want %d", n, wantIdle)
			}
			if _, body, err := exchangeAll(c, &Exchange{Request: &recordingRequest{body: "y"}}); err != nil || body == "" {
				t.Fatalf("the exchange after = %q, %v", body, err)
			}
			if n := conns.Load(); n != wantConns {
				t.Errorf("two exchanges opened %d connections, want %d", n, wantConns)
			}
		})
	}
}

// TestExchangeHeadersInOrder checks that EndToEnd yields every end-to-end header line in order,
// and not the length, both for answers whose lines readHead keeps and for answers with more
// lines than it keeps.
func TestExchangeHeadersInOrder(t *testing.T) {
	t.Parallel()
	answer := func(n, from int) (string, []string) {
		var head strings.Builder
		head.WriteString("HTTP/1.1 200 OK\r\n")
		var want []string
		for i := range n {
			fmt.Fprintf(&head, "X-Line-%d: value %d\r\n", i, from+i)
			want = append(want, fmt.Sprintf("X-Line-%d=value %d", i, from+i))
		}
		head.WriteString("Content-Length: 2\r\n\r\nok")
		return head.String(), want
	}
	walk := func(a *Answer) []string {
		var got []string
		a.EndToEnd(func(k, v string) bool {
			got = append(got, k+"="+v)
			return true
		})
		return got
	}
	for _, n := range []int{1, 16, 17, 40} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			head, want := answer(n, 0)
			s := testkit.StartRawServer(t, testkit.AlwaysReply(testkit.RawReply{Data: head}))
			c := staticClient(t, []string{s.URL})
			a, err := exchangeOpen(c, &Exchange{Request: &recordingRequest{body: "x"}})
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			defer a.Close()
			if got := walk(a); !slices.Equal(got, want) {
				t.Errorf("EndToEnd yielded %q, want %q", got, want)
			}
			if body, err := io.ReadAll(a); err != nil || string(body) != "ok" {
				t.Fatalf("body = %q, %v", body, err)
			}
		})
	}
	// Answers on one connection share lines the next may repeat, or not: each answer's
	// headers must be its own, whether it has more lines than the one before, fewer, the
	// same, or some of them changed.
	t.Run("one connection", func(t *testing.T) {
		t.Parallel()
		shapes := [][2]int{{3, 0}, {3, 0}, {40, 0}, {1, 0}, {17, 0}, {17, 5}, {0, 0}, {17, 5}}
		s := testkit.StartRawServer(t, func(i int) testkit.RawReply {
			head, _ := answer(shapes[i%len(shapes)][0], shapes[i%len(shapes)][1])
			return testkit.RawReply{Data: head}
		})
		c := staticClient(t, []string{s.URL})
		a := new(Answer)
		for i, shape := range shapes {
			_, want := answer(shape[0], shape[1])
			if err := c.Exchange(context.Background(), "echo", &Exchange{Request: &recordingRequest{body: "x"}}, a); err != nil {
				t.Fatalf("exchange %d: %v", i, err)
			}
			if got := walk(a); !slices.Equal(got, want) {
				t.Errorf("exchange %d: EndToEnd yielded %q, want %q", i, got, want)
			}
			if _, err := io.Copy(io.Discard, a); err != nil {
				t.Fatalf("exchange %d: body: %v", i, err)
			}
			a.Close()
		}
		if n := s.Conns.Load(); n != 1 {
			t.Errorf("the answers came over %d connections, want 1", n)
		}
	})
}

// FuzzAnswerHead reads an answer's head after another one on the same connection's lines, and
// alone: what the lines kept of the answer before must not change how this one reads, and no
// field may hold a line break.
func FuzzAnswerHead(f *testing.F) {
	seeds := []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 12\r\nX-Request-Id: a\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nrest",
		"HTTP/1.1 200 OK\r\n X-Folded: a\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		// These two share lines with the first seed, so one read after another takes those
		// lines from the memo.
		"HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nBad Line\r\n\r\n",
		"",
	}
	for _, before := range seeds {
		for _, s := range seeds {
			f.Add([]byte(before), []byte(s))
		}
	}
	read := func(a *Answer, c *h1Conn, in []byte) error {
		c.br = bufio.NewReader(bytes.NewReader(in))
		return a.readHead(c)
	}
	f.Fuzz(func(t *testing.T, before, in []byte) {
		var c h1Conn
		var a Answer
		_ = read(&a, &c, before)
		err := read(&a, &c, in)
		var alone Answer
		errAlone := read(&alone, new(h1Conn), in)
		if (err == nil) != (errAlone == nil) {
			t.Fatalf("after %q: %v; alone: %v", before, err, errAlone)
		}
		if err != nil {
			return
		}
		if a.Status != alone.Status || a.ContentLength != alone.ContentLength || a.keep != alone.keep || !slices.Equal(a.fields, alone.fields) {
			t.Fatalf("after %q: %d %d %t %v; alone: %d %d %t %v", before,
				a.Status, a.ContentLength, a.keep, a.fields, alone.Status, alone.ContentLength, alone.keep, alone.fields)
		}
		for _, f := range a.fields {
			if strings.ContainsAny(f.name, "\r\n:") || strings.ContainsAny(f.value, "\r\n") {
				t.Fatalf("field %q: %q holds a line break", f.name, f.value)
			}
			if (f.kind == endToEndField) != (!httpwire.HopByHop(f.name) && !strings.EqualFold(f.name, "Content-Length")) {
				t.Fatalf("field %q is of kind %d", f.name, f.kind)
			}
		}
	})
}
