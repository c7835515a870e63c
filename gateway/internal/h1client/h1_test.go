package h1client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/rpcclient"
)

// h1Server answers POST /echo with the body and the X-Test header it received, counting the
// connections it accepted.
func h1Server(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Test", r.Header.Get("X-Test"))
			_, _ = w.Write(b)
		}
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// h1Call posts body through the client's balancer on the lean HTTP/1.1 path.
func h1Call(ctx context.Context, c *client, body string) (string, http.Header, error) {
	req, err := http.NewRequestWithContext(rpcclient.WithCallOptions(ctx, rpcclient.CallOptions{HTTP1: true}), http.MethodPost, rpcclient.BaseURL("echo")+"/echo?x=1", strings.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("X-Test", "value-"+body)
	resp, err := c.HTTPClient("echo").Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.Header, err
}

func TestLeanHTTP1ReusesConnections(t *testing.T) {
	t.Parallel()
	srv, conns := h1Server(t, nil)
	c := staticClient(t, []string{srv.URL})
	for i := range 50 {
		body := strings.Repeat("x", i)
		got, h, err := h1Call(context.Background(), c, body)
		if err != nil || got != body || h.Get("X-Test") != "value-"+body {
			t.Fatalf("call %d = %q, %v, %v", i, got, h, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("50 sequential calls opened %d connections, want 1", n)
	}
}

func TestLeanHTTP1DropsConnectionsTheServerClosed(t *testing.T) {
	t.Parallel()
	srv, conns := h1Server(t, nil)
	c := staticClient(t, []string{srv.URL})
	if _, _, err := h1Call(context.Background(), c, "a"); err != nil {
		t.Fatal(err)
	}
	// The server drops its idle connections, as it does at its idle timeout or a restart.
	srv.CloseClientConnections()
	time.Sleep(1100 * time.Millisecond) // past the age at which idle connections are checked
	if got, _, err := h1Call(context.Background(), c, "b"); err != nil || got != "b" {
		t.Fatalf("the call after the server closed the idle connection = %q, %v", got, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the closed one was not reused)", n)
	}
}

func TestLeanHTTP1HonoursConnectionClose(t *testing.T) {
	t.Parallel()
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("bye"))
	})
	c := staticClient(t, []string{srv.URL})
	for range 3 {
		if got, _, err := h1Call(context.Background(), c, "a"); err != nil || got != "bye" {
			t.Fatalf("= %q, %v", got, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 calls answered with Connection: close, want 3", n)
	}
}

func TestLeanHTTP1StreamsChunkedAnswers(t *testing.T) {
	t.Parallel()
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			_, _ = w.Write([]byte{'0' + byte(i)})
			w.(http.Flusher).Flush()
		}
	})
	c := staticClient(t, []string{srv.URL})
	for range 2 {
		if got, _, err := h1Call(context.Background(), c, "a"); err != nil || got != "012" {
			t.Fatalf("= %q, %v", got, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1: a chunked answer read to its end frees its connection", n)
	}
}

func TestLeanHTTP1Cancellation(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := staticClient(t, []string{srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := h1Call(ctx, c, "a")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call past its deadline = %v, want the deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the cancelled call returned after %s", d)
	}
}

func TestLeanHTTP1RetriesOnlyWhatIsSafe(t *testing.T) {
	t.Parallel()
	// The first instance takes the call and dies before answering; the second answers.
	var first atomic.Int64
	dying, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		first.Add(1)
		panic(http.ErrAbortHandler)
	})
	healthy, _ := h1Server(t, nil)
	for _, tt := range []struct {
		name       string
		idempotent bool
		wantErr    bool
	}{
		{"a call without side effects goes to the next instance", true, false},
		{"any other call is not sent twice", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := staticClient(t, []string{dying.URL, healthy.URL})
			failures := 0
			for range 4 {
				req, _ := http.NewRequestWithContext(rpcclient.WithCallOptions(context.Background(), rpcclient.CallOptions{HTTP1: true, Idempotent: tt.idempotent}),
					http.MethodPost, rpcclient.BaseURL("echo")+"/echo", bytes.NewReader([]byte("body")))
				resp, err := c.HTTPClient("echo").Do(req)
				if err != nil {
					failures++
					continue
				}
				resp.Body.Close()
			}
			if tt.wantErr && failures == 0 {
				t.Error("no call failed, so a call that reached the dying instance was sent again")
			}
			if !tt.wantErr && failures > 0 {
				t.Errorf("%d calls failed", failures)
			}
		})
	}
}

func TestLeanHTTP1RefusesHeaderInjection(t *testing.T) {
	t.Parallel()
	srv, _ := h1Server(t, nil)
	c := staticClient(t, []string{srv.URL})
	req, _ := http.NewRequestWithContext(rpcclient.WithCallOptions(context.Background(), rpcclient.CallOptions{HTTP1: true}), http.MethodPost, rpcclient.BaseURL("echo")+"/echo", strings.NewReader("a"))
	req.Header["X-Test"] = []string{"a\r\nX-Injected: yes"}
	if resp, err := c.HTTPClient("echo").Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a header value with CRLF was sent")
	}
}

// TestHostIsTheInstancesUnlessTheCallerSetsOne sends calls through the balancer on both
// HTTP/1.1 transports (the lean one for a body it can replay, net/http's for one it cannot):
// a call whose Host is its URL's placeholder reaches the instance with the instance's address
// as its Host, and a call with a Host of its own, as a proxy forwards its client's, keeps it.
func TestHostIsTheInstancesUnlessTheCallerSetsOne(t *testing.T) {
	t.Parallel()
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Injected", r.Header.Get("X-Injected"))
	})
	c := staticClient(t, []string{srv.URL})
	instance := hostOf(srv.URL)
	for _, tt := range []struct {
		name, host, want string
		replayable       bool
	}{
		{"placeholder, lean", "", instance, true},
		{"placeholder, net/http", "", instance, false},
		{"the caller's, lean", "api.example:8443", "api.example:8443", true},
		{"the caller's, net/http", "api.example:8443", "api.example:8443", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader("a")
			if !tt.replayable {
				body = io.NopCloser(body)
			}
			req, err := http.NewRequestWithContext(rpcclient.WithCallOptions(context.Background(), rpcclient.CallOptions{HTTP1: true}), http.MethodPost, rpcclient.BaseURL("echo")+"/echo", body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := c.HTTPClient("echo").Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Host"); got != tt.want {
				t.Errorf("the instance saw Host %q, want %q", got, tt.want)
			}
		})
	}
	// A Host that would end its line never adds a header: the lean transport refuses the call,
	// without holding it against the instance, and net/http's sends no Host instead.
	other, _ := h1Server(t, nil)
	accountable := staticClient(t, []string{srv.URL, other.URL}, ejectAtOnce)
	for _, replayable := range []bool{true, false} {
		var body io.Reader = strings.NewReader("a")
		if !replayable {
			body = io.NopCloser(body)
		}
		req, _ := http.NewRequestWithContext(rpcclient.WithCallOptions(context.Background(), rpcclient.CallOptions{HTTP1: true}), http.MethodPost, rpcclient.BaseURL("echo")+"/echo", body)
		req.Host = "a\r\nX-Injected: yes"
		if replayable {
			// A query with a space would split the request line; the lean transport refuses it
			// too.
			spaced, _ := http.NewRequestWithContext(rpcclient.WithCallOptions(context.Background(), rpcclient.CallOptions{HTTP1: true}), http.MethodPost, rpcclient.BaseURL("echo")+"/echo", strings.NewReader("a"))
			spaced.URL.RawQuery = "a=1 HTTP/1.1\r\nX-Injected: yes"
			if resp, err := accountable.HTTPClient("echo").Do(spaced); err == nil {
				resp.Body.Close()
				t.Errorf("the lean transport sent a query with a space and CRLF")
			}
		}
		resp, err := accountable.HTTPClient("echo").Do(req)
		if replayable && err == nil {
			resp.Body.Close()
			t.Errorf("the lean transport sent a Host with CRLF")
		}
		if err == nil {
			if resp.Header.Get("X-Injected") != "" {
				t.Errorf("replayable %t: the instance saw an injected header", replayable)
			}
			resp.Body.Close()
		}
	}
	checkNoneEjected(t, accountable, instance, hostOf(other.URL))
}
