package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/basaltplatform/basalt/kernel/rpcclient"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
	"github.com/basaltplatform/basalt/gateway/internal/sockio"
)

// Transport is a lean HTTP/1.1 client for calls whose request body is fully known (unary
// calls): it writes the request and reads the answer on the calling goroutine, over pooled
// keep-alive connections. net/http's Transport hands every call to two goroutines per
// connection (a writer and a reader) and copies its header and URL; for a gateway forwarding
// small calls those hand-offs cost more than the call itself. Calls with streamed bodies, and
// https, go to net/http's Transport, which it holds too.
type Transport struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback    *http.Transport
	maxIdle     int
	idleTimeout time.Duration
	now         func() time.Time

	mu sync.Mutex
	// idle holds each host's pooled connections, the last one put first out. The lists are
	// pointers so that a call that takes or puts a connection looks its host up once.
	idle map[string]*hostIdle
}

// New returns a Transport that keeps up to 512 idle connections per instance, each for up to
// 30 seconds. It dials as the kernel's clients do: within 3 seconds, with TCP keep-alives every
// 30.
func New() *Transport {
	dial := (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &Transport{
		dial:        dial,
		maxIdle:     512,
		idleTimeout: 30 * time.Second,
		now:         time.Now,
		fallback: &http.Transport{
			DialContext:         dial,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			// Connect and gRPC negotiate compression themselves; the transport's own gzip would
			// rewrite bodies the gateway forwards as they are.
			DisableCompression: true,
		},
	}
}

// hostIdle is one host's pooled connections.
type hostIdle struct{ conns []*h1Conn }

type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	host      string
	idleSince time.Time
	// deadline is the connection's deadline as last set: an Exchange's, which stays while
	// the connection rests in the pool, since the next call sets its own anyway.
	deadline sockio.Deadline

	// in reads the socket directly (nil when nc has no socket); flush is the write send hands
	// it, made once per connection, and sent and sendErr are that write's outcome.
	in      *sockio.Reader
	flush   func() error
	sent    bool
	sendErr error

	// lines keeps the lines of the last answer's head, which the next answer mostly repeats,
	// and memo what was parsed from them.
	lines httpwire.Lines
	memo  headMemo
}

// head reads the next answer head and returns its lines, split by c.lines. A head that arrived
// whole is split where it lies in the buffer; one that did not is read line by line first.
func (c *h1Conn) head() ([]string, error) {
	if _, err := c.br.Peek(1); err != nil {
		return nil, err
	}
	if buf, _ := c.br.Peek(c.br.Buffered()); len(buf) > 0 {
		if lines, n, _ := c.lines.Head(buf); n > 0 {
			_, _ = c.br.Discard(n)
			return nonEmpty(lines)
		}
	}
	block, err := peekBlock(c.br)
	if err != nil {
		return nil, err
	}
	lines, _, _ := c.lines.Head(block)
	return nonEmpty(lines)
}

// nonEmpty refuses a head without a status line.
func nonEmpty(lines []string) ([]string, error) {
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: no status line", errMalformed)
	}
	return lines, nil
}

// setDeadline gives the connection deadline d (zero: none), or leaves one at most slack later
// in place.
func (c *h1Conn) setDeadline(d time.Time, slack time.Duration) {
	if at, ok := c.deadline.Need(d, slack); ok {
		_ = c.nc.SetDeadline(at)
	}
}

// supports reports whether req can take the lean path: plain http, and a body that is absent
// or can be produced again (so its length is known and a retry is possible).
func (t *Transport) supports(req *http.Request) bool {
	return req.URL.Scheme == "http" && (req.Body == nil || req.Body == http.NoBody || (req.GetBody != nil && req.ContentLength >= 0))
}

// RoundTrip sends req and returns the response, whose body returns the connection to the pool
// once read to the end and closed. A call the lean path does not support goes to net/http's
// Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.supports(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := checkHeader(req); err != nil {
		// The call is refused before it is sent; the instance is not to blame.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, rpcclient.Refused(err)
	}
	host := req.URL.Host
	c, reused, err := t.get(ctx, host, time.Time{}, t.now())
	if err != nil {
		return nil, err
	}
	c.setDeadline(time.Time{}, 0)
	// Cancelling the call interrupts a blocked read or write through the deadline; the
	// connection is then discarded.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	if err := c.writeRequest(req); err != nil {
		stop()
		c.nc.Close()
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, t.failure(ctx, "write", host, err, reused)
	}
	if req.Body != nil {
		req.Body.Close()
	}
	resp, err := readResponse(c.br, req)
	if err != nil {
		stop()
		c.nc.Close()
		return nil, t.failure(ctx, "read", host, err, reused)
	}
	resp.Body = &h1Body{rc: resp.Body, c: c, t: t, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

// failure returns the error a failed call reports: the context's error when it was cancelled,
// otherwise a net.OpError, so the balancer classifies it as a connection failure (and as a
// call never sent when writing to a connection the server had closed failed).
func (t *Transport) failure(ctx context.Context, op, host string, err error, reused bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("connection closed by the server (reused %t): %w", reused, err)
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: stringAddr(host), Err: err}
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// get returns an idle connection to host, or dials one by deadline (zero: none). An idle
// connection that has rested for a while (as of now) is first checked without blocking, so one
// the server closed meanwhile is not used for a call.
func (t *Transport) get(ctx context.Context, host string, deadline, now time.Time) (*h1Conn, bool, error) {
	for {
		t.mu.Lock()
		l := t.idle[host]
		if l == nil || len(l.conns) == 0 {
			t.mu.Unlock()
			break
		}
		c := l.conns[len(l.conns)-1]
		l.conns[len(l.conns)-1] = nil
		l.conns = l.conns[:len(l.conns)-1]
		t.mu.Unlock()
		age := now.Sub(c.idleSince)
		if age > time.Second {
			// The peek below fails on a deadline that has passed, so a stale one goes first.
			c.setDeadline(time.Time{}, 0)
		}
		if age > t.idleTimeout || (age > time.Second && !c.alive()) {
			c.nc.Close()
			continue
		}
		return c, true, nil
	}
	if !deadline.IsZero() {
		// The call's deadline bounds the dial too.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	nc, err := t.dial(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	return newH1Conn(nc, host), false, nil
}

func newH1Conn(nc net.Conn, host string) *h1Conn {
	in := sockio.NewReader(nc)
	c := &h1Conn{nc: nc, br: bufio.NewReaderSize(in, 8<<10), bw: bufio.NewWriterSize(sockio.NewWriter(nc), 8<<10), host: host}
	if r, ok := in.(*sockio.Reader); ok {
		c.in = r
		c.flush = func() error {
			c.sent = true
			c.sendErr = c.bw.Flush()
			return c.sendErr
		}
	}
	return c
}

// send writes the request buffered in c.bw. Where it can, it leaves the writing to the read of
// the answer (see sockio.Reader.Send), which then need not read once in vain before it waits;
// unsent tells, when that read fails, whether the write did.
func (c *h1Conn) send() error {
	c.sent, c.sendErr = false, nil
	if c.in == nil || c.br.Buffered() > 0 {
		// A buffered byte would answer the read without asking the socket, and the request
		// would never go out.
		c.sent = true
		return c.bw.Flush()
	}
	c.in.Send(c.flush)
	return nil
}

// unsent returns, for a read of the answer that failed with readErr, the error of writing the
// request: the write's own, or readErr when the read ended (its deadline, a closed connection)
// before the request went out. It returns nil when the request went out.
func (c *h1Conn) unsent(readErr error) error {
	switch {
	case c.sendErr != nil:
		return c.sendErr
	case !c.sent:
		return readErr
	}
	return nil
}

// alive reports whether an idle connection is still open: a healthy idle connection has
// nothing to read, while end of stream or unexpected data means it must go.
func (c *h1Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	return c.socketAlive()
}

// aliveWait is how long aliveAfter waits: long enough for a closed connection's end of
// stream, already in the socket, to be read.
const aliveWait = time.Millisecond

// aliveAfter is socketAlive where a socket cannot be peeked at without blocking: it reads with
// a deadline wait from now, which a healthy idle connection reaches. A deadline already passed
// would not do, since Go fails such a read before asking the socket. The wait is spent only on
// connections that rested for more than a second. The connection is left without a deadline.
func (c *h1Conn) aliveAfter(wait time.Duration) bool {
	c.setDeadline(time.Now().Add(wait), 0)
	var buf [1]byte
	_, err := c.nc.Read(buf[:])
	c.setDeadline(time.Time{}, 0)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// put returns c to the pool, idle since the time given. A caller may pass a time it already
// has, from a little earlier: the connection then looks idle a little longer than it was, so it
// is checked or closed a little sooner.
func (t *Transport) put(c *h1Conn, since time.Time) {
	c.idleSince = since
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = map[string]*hostIdle{}
	}
	l := t.idle[c.host]
	if l == nil {
		l = &hostIdle{}
		t.idle[c.host] = l
	}
	if len(l.conns) >= t.maxIdle {
		c.nc.Close()
		return
	}
	l.conns = append(l.conns, c)
}

// CloseIdleConnections closes every pooled connection.
func (t *Transport) CloseIdleConnections() {
	t.fallback.CloseIdleConnections()
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l.conns {
			c.nc.Close()
		}
	}
}

// requestHost returns the Host req goes with: its own, or its URL's.
func requestHost(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}

// checkHeader refuses a request whose target, Host or header values would end or break their
// lines.
func checkHeader(req *http.Request) error {
	if !httpwire.ValidTarget(req.URL.RawQuery) {
		// The path is escaped as it is written (RequestURI); the query goes as it is.
		return fmt.Errorf("h1client: invalid query %q", req.URL.RawQuery)
	}
	if host := requestHost(req); !httpwire.SafeValue(host) {
		return fmt.Errorf("h1client: invalid Host %q", host)
	}
	for k, vv := range req.Header {
		for _, v := range vv {
			if !httpwire.SafeValue(v) {
				return fmt.Errorf("h1client: invalid value for header %q", k)
			}
		}
	}
	return nil
}

// writeRequest writes req, checked by checkHeader, in HTTP/1.1 wire format.
func (c *h1Conn) writeRequest(req *http.Request) error {
	w := c.bw
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(requestHost(req))
	w.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if req.Body != nil && req.Body != http.NoBody {
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		w.WriteString("\r\n\r\n")
		n, err := io.Copy(w, req.Body)
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return fmt.Errorf("h1client: body of %d bytes, declared %d", n, req.ContentLength)
		}
	} else if req.Method != http.MethodGet && req.Method != http.MethodHead {
		// A POST without a body still says so, as RFC 9110 asks of a user agent.
		w.WriteString("Content-Length: 0\r\n\r\n")
	} else {
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// h1Body returns its connection to the pool when the response was read to the end.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	t    *Transport
	stop func() bool
	keep bool
	eof  bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.keep = false
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.rc.Close()
	// A connection goes back only when its response was complete and its deadline was never
	// used to interrupt it.
	if b.stop() && b.keep && b.eof && err == nil {
		b.t.put(b.c, b.t.now())
		return nil
	}
	b.c.nc.Close()
	return err
}
