package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a connection, handler or fallback goroutine behind: the
// server hands connections between goroutines and two servers, which is where leaks hide.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bigBody is larger than streamAbove, so that an answer made of it goes out chunked; its bytes
// vary so that a chunk lost, repeated or reordered shows.
var bigBody = func() []byte {
	b := make([]byte, streamAbove+100<<10+123)
	for i := range b {
		b[i] = byte('a' + (i/7+i/1000)%26)
	}
	return b
}()

// testHandler serves the paths under /fast/; the default answer echoes the body, and a few
// paths exercise streaming, discarding, aborting, blocking and panicking.
type testHandler struct {
	// entered receives the path of a /fast/block request once its handler runs.
	entered chan string
	// release lets /fast/block requests finish.
	release chan struct{}
	// discardedStreaming records whether Discard claimed success on a streaming answer.
	discardedStreaming atomic.Bool
	// writeErr receives the error that ended a /fast/huge answer.
	writeErr chan error
}

func newTestHandler() *testHandler {
	return &testHandler{entered: make(chan string, 8), release: make(chan struct{}), writeErr: make(chan error, 1)}
}

func (h *testHandler) Accepts(r *Request) bool { return strings.HasPrefix(r.Path, "/fast/") }

func (h *testHandler) Serve(w *Response, r *Request) {
	w.Header().Set("X-Fast", "yes")
	if r.BodyErr != nil {
		var ne net.Error
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "body error: timeout %t, cut short %t",
			errors.As(r.BodyErr, &ne) && ne.Timeout(), errors.Is(r.BodyErr, io.ErrUnexpectedEOF))
		return
	}
	switch r.Path {
	case "/fast/big":
		// Uneven pieces, so that the switch to chunks happens inside a write.
		for i := 0; i < len(bigBody); i += 10007 {
			if _, err := w.Write(bigBody[i:min(i+10007, len(bigBody))]); err != nil {
				panic(err)
			}
		}
	case "/fast/bigreader":
		if _, err := w.ReadFrom(bytes.NewReader(bigBody)); err != nil {
			panic(err)
		}
	case "/fast/discard":
		w.AddLine("X-Partial", "1")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("partial answer"))
		if !w.Discard() {
			panic("Discard refused an answer that was not streaming")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("replaced"))
	case "/fast/abort":
		_, _ = w.Write(bigBody)
		h.discardedStreaming.Store(w.Discard())
		w.Abort()
	case "/fast/abort-early":
		_, _ = w.Write([]byte("short"))
		w.Abort()
	case "/fast/panic":
		panic("test handler panic")
	case "/fast/huge":
		// Far more than the socket buffers hold; the error of the write that fails is reported.
		for {
			if _, err := w.Write(bigBody); err != nil {
				h.writeErr <- err
				return
			}
		}
	case "/fast/block":
		h.entered <- r.Path
		<-h.release
		fallthrough
	default:
		w.Header().Set("X-Fast-Path", r.Path)
		_, _ = w.Write([]byte("echo:"))
		_, _ = w.Write(r.Body)
	}
}

// fallbackHandler answers "fallback " + path, and reports the body and protocol it saw in
// headers, so that a test can tell which server answered and what bytes reached it.
func fallbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Fallback-Body", string(body))
		w.Header().Set("X-Fallback-Proto", r.Proto)
		_, _ = io.WriteString(w, "fallback "+r.URL.Path)
	})
}

// testServer is a Server on a loopback listener with a net/http fallback that also speaks h2c.
type testServer struct {
	addr   string
	s      *Server
	h      *testHandler
	served chan error

	once     sync.Once
	serveErr error
}

func startServer(t *testing.T, opts ...Option) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &http.Server{
		Handler:           fallbackHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		Protocols:         new(http.Protocols),
	}
	fb.Protocols.SetHTTP1(true)
	fb.Protocols.SetUnencryptedHTTP2(true)
	ts := &testServer{addr: ln.Addr().String(), h: newTestHandler(), served: make(chan error, 1)}
	ts.s = New(ts.h, fb, opts...)
	go func() { ts.served <- ts.s.Serve(ln) }()
	t.Cleanup(func() {
		// A handler still blocked would keep its goroutine; let it go before closing.
		select {
		case <-ts.h.release:
		default:
			close(ts.h.release)
		}
		_ = ts.s.Close()
		if err := ts.serveResult(t); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return ts
}

// serveResult waits for Serve to return and reports what it returned.
func (ts *testServer) serveResult(t *testing.T) error {
	t.Helper()
	ts.once.Do(func() {
		select {
		case ts.serveErr = <-ts.served:
		case <-time.After(20 * time.Second):
			ts.serveErr = errors.New("Serve did not return within 20s")
		}
	})
	return ts.serveErr
}

// dial opens a raw connection with a generous deadline, so that a server that never answers
// fails the test instead of hanging it.
func (ts *testServer) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// client returns an HTTP/1.1 client whose connections close with the test.
func (ts *testServer) client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// post is a POST request with a Content-Length, extra header lines included as given.
func post(path, body string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n", path, len(body))
	for _, l := range extra {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// readResponse reads one answer with net/http's own parser, which checks the framing.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return resp, string(body)
}

// wantFast checks an answer of the fast path's echo: the body, the handler's headers, a
// Content-Length framing and a Date.
func wantFast(t *testing.T, resp *http.Response, body, path, reqBody string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || body != "echo:"+reqBody {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, "echo:"+reqBody)
	}
	if resp.Header.Get("X-Fast") != "yes" || resp.Header.Get("X-Fast-Path") != path {
		t.Errorf("headers %v: want X-Fast: yes and X-Fast-Path: %s", resp.Header, path)
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("ContentLength %d, TransferEncoding %v; want %d and none", resp.ContentLength, resp.TransferEncoding, len(body))
	}
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
	}
}

// wantFallback checks an answer of the fallback server, and the body it read.
func wantFallback(t *testing.T, resp *http.Response, body, path, reqBody string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || body != "fallback "+path {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, "fallback "+path)
	}
	if resp.Header.Get("X-Fast") != "" {
		t.Errorf("the fast path answered a request for the fallback: %v", resp.Header)
	}
	if got := resp.Header.Get("X-Fallback-Body"); got != reqBody {
		t.Errorf("the fallback read the body %q, want %q", got, reqBody)
	}
}

// wantClosed checks that the server closes c without sending anything more.
func wantClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within 10s")
	}
	if len(rest) != 0 {
		t.Errorf("read %q before the connection closed, want nothing", rest)
	}
}

// TestKeepAliveRaw sends several requests one after another on one connection and checks each
// answer, so that a server that loses its place in the stream or closes early fails.
func TestKeepAliveRaw(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	c, br := ts.dial(t)
	tests := []struct {
		path, body string
	}{
		{"/fast/a", ""},
		{"/fast/b", "x"},
		{"/fast/c", "hello, world"},
		{"/fast/d", strings.Repeat("0123456789", 3000)},
		{"/fast/e", "after a large body"},
	}
	for _, tt := range tests {
		write(t, c, post(tt.path, tt.body))
		resp, body := readResponse(t, br)
		if resp.Close {
			t.Errorf("%s: the answer closes the connection", tt.path)
		}
		wantFast(t, resp, body, tt.path, tt.body)
	}
}

// TestHeadInPieces sends requests a few bytes at a time, so that the head and body arrive
// over many reads; a server that decides on a partial head would decline or cut them.
func TestHeadInPieces(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	c, br := ts.dial(t)
	for _, piece := range []int{1, 3, 17} {
		req := post("/fast/pieces", "some body bytes")
		for i := 0; i < len(req); i += piece {
			write(t, c, req[i:min(i+piece, len(req))])
			time.Sleep(time.Millisecond)
		}
		resp, body := readResponse(t, br)
		wantFast(t, resp, body, "/fast/pieces", "some body bytes")
	}
}

// TestKeepAliveHTTPClient checks that net/http's client reads the fast answers and keeps using
// one connection for them.
func TestKeepAliveHTTPClient(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	client := ts.client(t)
	for i := range 5 {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		body := "request " + strconv.Itoa(i)
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, "http://"+ts.addr+"/fast/client", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/proto")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		wantFast(t, resp, string(got), "/fast/client", body)
		if i > 0 && !reused {
			t.Errorf("request %d went on a new connection; the fast path should keep connections alive", i)
		}
	}
}

// TestDeclinedGoesToFallback checks that requests the fast path does not take are answered by
// the fallback with exactly their own bytes: after fast requests on the same connection, and
// pipelined behind one in the same write. A further request then checks that the fallback,
// which owns the connection from then on, found the end of the declined one.
func TestDeclinedGoesToFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// fast are fast requests sent before the declined one.
		fast []string
		// pipelined sends the fast requests and the declined one in one write.
		pipelined bool
		declined  string
		wantPath  string
		wantBody  string
	}{
		{name: "path the handler declines", declined: post("/slow/x", "abc"), wantPath: "/slow/x", wantBody: "abc"},
		{name: "GET", declined: "GET /fast/x HTTP/1.1\r\nHost: test.local\r\n\r\n", wantPath: "/fast/x"},
		{
			name:     "chunked POST",
			declined: "POST /fast/x HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
			wantPath: "/fast/x", wantBody: "abcdefg",
		},
		{name: "query string", declined: post("/fast/x?a=b", "q"), wantPath: "/fast/x", wantBody: "q"},
		{
			name:     "after fast requests",
			fast:     []string{"one", "two"},
			declined: post("/slow/y", "zz"), wantPath: "/slow/y", wantBody: "zz",
		},
		{
			name:      "pipelined behind a fast request",
			fast:      []string{"first"},
			pipelined: true,
			declined:  post("/slow/z", "second"), wantPath: "/slow/z", wantBody: "second",
		},
		{
			name:      "chunked pipelined behind fast requests",
			fast:      []string{"a", "b"},
			pipelined: true,
			declined:  "POST /fast/x HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
			wantPath:  "/fast/x", wantBody: "hi",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t)
			c, br := ts.dial(t)
			if tt.pipelined {
				var all strings.Builder
				for _, b := range tt.fast {
					all.WriteString(post("/fast/p", b))
				}
				all.WriteString(tt.declined)
				write(t, c, all.String())
				for _, b := range tt.fast {
					resp, body := readResponse(t, br)
					wantFast(t, resp, body, "/fast/p", b)
				}
			} else {
				for _, b := range tt.fast {
					roundTrip(t, c, br, "/fast/p", b)
				}
				write(t, c, tt.declined)
			}
			resp, body := readResponse(t, br)
			wantFallback(t, resp, body, tt.wantPath, tt.wantBody)
			if resp.Header.Get("X-Fallback-Proto") != "HTTP/1.1" {
				t.Errorf("the fallback saw %q, want HTTP/1.1", resp.Header.Get("X-Fallback-Proto"))
			}

			write(t, c, post("/fast/next", "more"))
			resp, body = readResponse(t, br)
			wantFallback(t, resp, body, "/fast/next", "more")
		})
	}
}

// TestBlankLinesAfterAPost sends CR and LF bytes after a POST's body, as old clients did, and
// then another request: net/http's server skips up to four of them after a POST, so the fast
// path must too, whether the next request is its own or the fallback's. Past four, net/http
// refuses the request, and so must the connection that started on the fast path.
func TestBlankLinesAfterAPost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		blank string
		// pieces sends the blank bytes and the next request in separate writes.
		pieces   bool
		next     string
		wantFast bool
		wantCode int
	}{
		{name: "CRLF, fast", blank: "\r\n", next: post("/fast/b", "2"), wantFast: true},
		{name: "LF, fast", blank: "\n", next: post("/fast/b", "2"), wantFast: true},
		{name: "two CRLF, fast", blank: "\r\n\r\n", next: post("/fast/b", "2"), wantFast: true},
		{name: "CR and LF in pieces, fast", blank: "\r\n", pieces: true, next: post("/fast/b", "2"), wantFast: true},
		{name: "CRLF, fallback", blank: "\r\n", next: post("/slow/b", "2"), wantCode: http.StatusOK},
		{name: "CRLF before a GET", blank: "\r\n", next: "GET /fast/b HTTP/1.1\r\nHost: test.local\r\n\r\n", wantCode: http.StatusOK},
		{name: "three CRLF", blank: "\r\n\r\n\r\n", next: post("/fast/b", "2"), wantCode: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t)
			c, br := ts.dial(t)
			if tt.pieces {
				write(t, c, post("/fast/a", "1"))
				for i := range len(tt.blank) {
					write(t, c, tt.blank[i:i+1])
					time.Sleep(time.Millisecond)
				}
				write(t, c, tt.next)
			} else {
				write(t, c, post("/fast/a", "1")+tt.blank+tt.next)
			}
			resp, body := readResponse(t, br)
			wantFast(t, resp, body, "/fast/a", "1")
			resp, body = readResponse(t, br)
			switch {
			case tt.wantFast:
				wantFast(t, resp, body, "/fast/b", "2")
			case resp.StatusCode != tt.wantCode || resp.Header.Get("X-Fast") != "":
				t.Errorf("the request after the blank lines: %d from the fast path %q, want %d from the fallback",
					resp.StatusCode, resp.Header.Get("X-Fast"), tt.wantCode)
			}
		})
	}
}

// TestH2CPriorKnowledge checks that an HTTP/2 connection without upgrade reaches the fallback,
// whose protocols include unencrypted HTTP/2, with the preface the fast path peeked at intact.
func TestH2CPriorKnowledge(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for i := range 3 {
		body := "h2c " + strconv.Itoa(i)
		resp, err := client.Post("http://"+ts.addr+"/fast/h2", "application/proto", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.Header.Get("X-Fallback-Proto") != "HTTP/2.0" {
			t.Errorf("client saw %s, fallback saw %q; want HTTP/2 on both ends", resp.Proto, resp.Header.Get("X-Fallback-Proto"))
		}
		wantFallback(t, resp, string(got), "/fast/h2", body)
	}
}

// TestConnectionClose checks that a request asking to close gets an answer saying so, and that
// the server then closes the connection.
func TestConnectionClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
	}{
		{"close", "Connection: close"},
		{"upper case", "connection: CLOSE"},
		{"keep-alive and close", "Connection: keep-alive, close"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t)
			c, br := ts.dial(t)
			write(t, c, post("/fast/bye", "last", tt.header))
			resp, body := readResponse(t, br)
			wantFast(t, resp, body, "/fast/bye", "last")
			// ReadResponse consumes the Connection header into Close.
			if !resp.Close {
				t.Errorf("the answer does not carry Connection: close")
			}
			wantClosed(t, c, br)
		})
	}
}

// TestLimitsGoToFallback checks that a body over WithMaxBody is left to the fallback rather
// than read by the fast path, and that a body of exactly the limit stays on the fast path.
func TestLimitsGoToFallback(t *testing.T) {
	t.Parallel()
	ts := startServer(t, WithMaxBody(16), WithMaxHeaderBytes(1024))
	tests := []struct {
		name     string
		req      string
		body     string
		wantFast bool
	}{
		// The head arrives in one write, so the limit must hold for a head already in the
		// buffer, not only for one still arriving.
		{"head over the limit", post("/fast/l", "b", "X-Pad: "+strings.Repeat("p", 2000)), "b", false},
		{"body at the limit", post("/fast/l", strings.Repeat("b", 16)), strings.Repeat("b", 16), true},
		{"body over the limit", post("/fast/l", strings.Repeat("b", 17)), strings.Repeat("b", 17), false},
		{"much larger body", post("/fast/l", strings.Repeat("c", 100<<10)), strings.Repeat("c", 100<<10), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, br := ts.dial(t)
			write(t, c, tt.req)
			resp, body := readResponse(t, br)
			if tt.wantFast {
				wantFast(t, resp, body, "/fast/l", tt.body)
			} else {
				wantFallback(t, resp, body, "/fast/l", tt.body)
			}
		})
	}
}

// TestLargeResponseChunked checks that an answer larger than streamAbove goes out in chunks
// that net/http's client reassembles exactly, and that the connection is usable afterwards,
// which it is not if the last chunk is missing or extra bytes follow it.
func TestLargeResponseChunked(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/fast/big", "/fast/bigreader"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t)
			client := ts.client(t)
			resp, err := client.Post("http://"+ts.addr+path, "application/proto", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
				t.Errorf("TransferEncoding %v, ContentLength %d; want chunked", resp.TransferEncoding, resp.ContentLength)
			}
			if resp.Header.Get("X-Fast") != "yes" {
				t.Errorf("headers %v: want the handler's X-Fast", resp.Header)
			}
			if !bytes.Equal(got, bigBody) {
				t.Errorf("body of %d bytes differs from the %d written", len(got), len(bigBody))
			}

			reused := false
			trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
				http.MethodPost, "http://"+ts.addr+"/fast/after", strings.NewReader("small"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			wantFast(t, resp, string(got), "/fast/after", "small")
			if !reused {
				t.Errorf("the request after a chunked answer went on a new connection")
			}
		})
	}
}

// TestDiscard checks that an answer discarded before it streams is replaced whole: status,
// raw header lines and body.
func TestDiscard(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	c, br := ts.dial(t)
	write(t, c, post("/fast/discard", ""))
	resp, body := readResponse(t, br)
	if resp.StatusCode != http.StatusServiceUnavailable || body != "replaced" {
		t.Errorf("got %d %q, want 503 %q", resp.StatusCode, body, "replaced")
	}
	if resp.Header.Get("X-Partial") != "" {
		t.Errorf("a discarded header line went out: %v", resp.Header)
	}
	if resp.ContentLength != int64(len("replaced")) {
		t.Errorf("ContentLength %d, want %d", resp.ContentLength, len("replaced"))
	}
	// The connection stays usable: the discarded bytes did not go out.
	roundTrip(t, c, br, "/fast/again", "ok")
}

// TestAbort checks that an aborted answer reaches the client as a failure, never as a shorter
// answer that looks complete.
func TestAbort(t *testing.T) {
	t.Parallel()
	t.Run("while streaming", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t)
		client := ts.client(t)
		resp, err := client.Post("http://"+ts.addr+"/fast/abort", "application/proto", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("reading the aborted body: %d bytes, error %v; want io.ErrUnexpectedEOF", len(got), err)
		}
		if ts.h.discardedStreaming.Load() {
			t.Errorf("Discard reported success on an answer already streaming")
		}
	})
	t.Run("before streaming", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t)
		c, br := ts.dial(t)
		write(t, c, post("/fast/abort-early", ""))
		// Nothing of the answer may go out: a complete-looking "short" would be a lie.
		wantClosed(t, c, br)
	})
}

// TestShutdown checks the graceful and forced ends of the server.
func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("idle connections close", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t)
		fast, fastBR := ts.dial(t)
		roundTrip(t, fast, fastBR, "/fast/idle", "a")
		// A connection handed to the fallback is the fallback's to close.
		slow, slowBR := ts.dial(t)
		write(t, slow, post("/slow/idle", "b"))
		resp, body := readResponse(t, slowBR)
		wantFallback(t, resp, body, "/slow/idle", "b")

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := ts.s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		wantClosed(t, fast, fastBR)
		wantClosed(t, slow, slowBR)
		if err := ts.serveResult(t); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	t.Run("request in progress completes", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t)
		c, br := ts.dial(t)
		write(t, c, post("/fast/block", "wait"))
		<-ts.h.entered
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done <- ts.s.Shutdown(ctx)
		}()
		// A correct Shutdown cannot return while the handler is blocked, however long we look.
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v while a request was in progress", err)
		case <-time.After(300 * time.Millisecond):
		}
		close(ts.h.release)
		resp, body := readResponse(t, br)
		wantFast(t, resp, body, "/fast/block", "wait")
		wantReturn(t, done, 20*time.Second, "Shutdown after the request finished")
		wantClosed(t, c, br)
		if err := ts.serveResult(t); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	t.Run("expired context closes busy connections", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t)
		c, br := ts.dial(t)
		write(t, c, post("/fast/block", "stuck"))
		<-ts.h.entered
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		if err := ts.s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown returned %v, want context.DeadlineExceeded", err)
		}
		wantClosed(t, c, br)
		if err := ts.serveResult(t); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
}

// TestReadHeaderTimeout checks that a client that sends part of a head and stalls is
// disconnected once the header timeout passes, and not before.
func TestReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	tests := []struct {
		name, partial string
	}{
		{"inside the request line", "POS"},
		{"after whole lines", "POST /fast/a HTTP/1.1\r\nHost: a\r\n"},
		{"inside a header line", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Len"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, WithReadHeaderTimeout(timeout))
			// The clock starts before the dial: the server's starts when it accepts, later.
			start := time.Now()
			c, br := ts.dial(t)
			write(t, c, tt.partial)
			wantClosed(t, c, br)
			if elapsed := time.Since(start); elapsed < timeout-10*time.Millisecond {
				t.Errorf("disconnected after %v, before the %v timeout", elapsed, timeout)
			}
		})
	}
}

// TestFirstRequestHeaderTimeout checks that a new connection that sends nothing is closed
// once the header timeout passes, as net/http's would be, not after the idle limit.
func TestFirstRequestHeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	ts := startServer(t, WithReadHeaderTimeout(timeout), WithIdleTimeout(time.Hour))
	start := time.Now()
	c, br := ts.dial(t)
	wantClosed(t, c, br)
	if elapsed := time.Since(start); elapsed < timeout-10*time.Millisecond {
		t.Errorf("disconnected after %v, before the %v timeout", elapsed, timeout)
	}
}

// TestWriteTimeout asks for an answer far larger than the socket buffers and reads none of
// it: the answer's write fails once the client has taken nothing for the write timeout.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, WithWriteTimeout(200*time.Millisecond))
	c, _ := ts.dial(t)
	if err := c.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	write(t, c, post("/fast/huge", ""))
	select {
	case err := <-ts.h.writeErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("the answer's write failed with %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the answer's write still waits for a client that reads nothing")
	}
}

// timedHead sends a request to path with its head in two writes, which arms the server's header
// deadline, and checks the fast answer.
func timedHead(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	req := post(path, "x")
	write(t, c, req[:10])
	time.Sleep(20 * time.Millisecond)
	write(t, c, req[10:])
	resp, body := readResponse(t, br)
	wantFast(t, resp, body, path, "x")
}

// TestNoIdleTimeout checks that without an idle limit a kept-alive connection waits for its
// next request however long it takes, even after a request whose head was timed.
func TestNoIdleTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, WithIdleTimeout(0), WithReadHeaderTimeout(300*time.Millisecond))
	c, br := ts.dial(t)
	timedHead(t, c, br, "/fast/i")
	time.Sleep(time.Second)
	roundTrip(t, c, br, "/fast/i", "y")
}

// TestBodies covers a body that is not there with its head: one arriving in pieces is read to
// its end, one that stops coming fails by the body timeout, one cut short by the client fails
// as cut short; the last two are answered, and the connection then closes.
func TestBodies(t *testing.T) {
	t.Parallel()
	const body = "0123456789"
	head := strings.TrimSuffix(post("/fast/body", body), body)
	// begin sends the head and the first bytes of the body to a new server.
	begin := func(t *testing.T, opts ...Option) (net.Conn, *bufio.Reader) {
		ts := startServer(t, opts...)
		c, br := ts.dial(t)
		write(t, c, head+body[:3])
		return c, br
	}
	// wantBodyError wants the test handler's answer to a body error, then the connection closed.
	wantBodyError := func(t *testing.T, c net.Conn, br *bufio.Reader, want string) {
		resp, got := readResponse(t, br)
		if resp.StatusCode != http.StatusBadRequest || got != want {
			t.Fatalf("got %d %q; want 400 %q", resp.StatusCode, got, want)
		}
		wantClosed(t, c, br)
	}
	t.Run("in pieces", func(t *testing.T) {
		t.Parallel()
		c, br := begin(t)
		time.Sleep(20 * time.Millisecond)
		write(t, c, body[3:7])
		time.Sleep(20 * time.Millisecond)
		write(t, c, body[7:])
		resp, got := readResponse(t, br)
		wantFast(t, resp, got, "/fast/body", body)
		// The connection stays open for the next request.
		roundTrip(t, c, br, "/fast/next", "x")
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		c, br := begin(t, WithBodyTimeout(100*time.Millisecond))
		wantBodyError(t, c, br, "body error: timeout true, cut short false")
	})
	t.Run("cut short", func(t *testing.T) {
		t.Parallel()
		c, br := begin(t)
		time.Sleep(20 * time.Millisecond)
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		wantBodyError(t, c, br, "body error: timeout false, cut short true")
	})
}

// TestCloseEndsConnectionsBetweenRequests closes the server while a kept-alive connection waits
// for its next request, inside sockio's Hold. (A connection whose request is being answered,
// which Close could not close without waiting, is TestShutdown's "expired context closes busy
// connections".)
func TestCloseEndsConnectionsBetweenRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	c, br := ts.dial(t)
	roundTrip(t, c, br, "/fast/one", "one")
	closed := make(chan error, 1)
	go func() { closed <- ts.s.Close() }()
	wantReturn(t, closed, 10*time.Second, "Close with a connection waiting for a request")
	wantClosed(t, c, br)
}

// roundTrip sends a fast-path request for path with body on c and wants its answer from br.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, path, body string) {
	t.Helper()
	write(t, c, post(path, body))
	resp, got := readResponse(t, br)
	wantFast(t, resp, got, path, body)
}

// wantReturn waits up to d for what to report its error on done, and fails on an error or none.
func wantReturn(t *testing.T, done <-chan error, d time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

// TestRequestsArrivingWhileAnAnswerIsMadeAreServed covers requests a client sends before it has
// its answers (pipelining, or a next request racing the answer): they arrive while the
// connection is busy with the handler, and must be served once it is done, not left waiting
// for more to arrive. The connection waits for the poller rather than read in vain (sockio's
// Hold), so this is the case that would hang if it lost what the poller saw meanwhile.
func TestRequestsArrivingWhileAnAnswerIsMadeAreServed(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	c, br := ts.dial(t)
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	write(t, c, post("/fast/block", "one"))
	<-ts.h.entered
	write(t, c, post("/fast/next", "two"))
	// The second request is in the server's socket before the first is answered.
	time.Sleep(20 * time.Millisecond)
	close(ts.h.release)
	resp, body := readResponse(t, br)
	wantFast(t, resp, body, "/fast/block", "one")
	resp, body = readResponse(t, br)
	wantFast(t, resp, body, "/fast/next", "two")
}

// TestIdleTimeout checks the idle limit, which the server re-arms only when the deadline in
// place has fallen short of it: a connection in use stays open however long it is used, a
// head's timeout does not linger into the next idle wait, and an idle connection closes once
// the limit passes, and not before.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	// The idle limit is ten times the pauses below, so that a loaded machine that stretches a
	// pause does not close the connection early.
	const idle = time.Second
	ts := startServer(t, WithIdleTimeout(idle), WithReadHeaderTimeout(100*time.Millisecond))
	c, br := ts.dial(t)
	// Requests every 100ms for three times the idle limit.
	for i := range 30 {
		roundTrip(t, c, br, "/fast/busy", strconv.Itoa(i))
		time.Sleep(100 * time.Millisecond)
	}
	// The wait after a timed head is longer than its deadline and shorter than the idle limit.
	timedHead(t, c, br, "/fast/timed")
	time.Sleep(250 * time.Millisecond)
	// The clock starts before the request: the server's idle wait starts after its answer.
	start := time.Now()
	write(t, c, post("/fast/after", "y"))
	resp, body := readResponse(t, br)
	wantFast(t, resp, body, "/fast/after", "y")
	wantClosed(t, c, br)
	if elapsed := time.Since(start); elapsed < idle-10*time.Millisecond {
		t.Errorf("an idle connection closed after %v, before the %v limit", elapsed, idle)
	}
}

// TestHandlerPanic checks that a panicking handler costs its own connection only.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	before, beforeBR := ts.dial(t)
	roundTrip(t, before, beforeBR, "/fast/one", "1")

	bad, badBR := ts.dial(t)
	write(t, bad, post("/fast/panic", "boom"))
	wantClosed(t, bad, badBR)

	roundTrip(t, before, beforeBR, "/fast/two", "2")

	after, afterBR := ts.dial(t)
	roundTrip(t, after, afterBR, "/fast/three", "3")
}

// TestAcceptErrorsThatPass checks which accept errors the server rides out rather than stopping:
// running out of file descriptors must not take the gateway down.
func TestAcceptErrorsThatPass(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		pass bool
	}{
		{&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{&net.OpError{Op: "accept", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{net.ErrClosed, false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := temporary(tt.err); got != tt.pass {
			t.Errorf("temporary(%v) = %v, want %v", tt.err, got, tt.pass)
		}
	}
}
