package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/sockio"
)

// Handler serves the requests the fast path takes.
type Handler interface {
	// Accepts reports whether the handler serves r (whose body has not been read yet). A
	// request it declines goes, with the rest of its connection, to the fallback server.
	Accepts(r *Request) bool
	// Serve answers r on w.
	Serve(w *Response, r *Request)
}

// Server serves HTTP/1.1 connections, handing the ones it does not serve to a net/http server.
type Server struct {
	handler  Handler
	fallback *http.Server
	o        options
	handoff  *connListener

	shutting atomic.Bool
	mu       sync.Mutex
	conns    map[*conn]struct{}
	ln       net.Listener
	served   chan struct{}
}

type options struct {
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	bodyTimeout       time.Duration
	writeTimeout      time.Duration
	maxHeaderBytes    int
	maxBody           int64
	log               *slog.Logger
	now               func() time.Time
}

// Option configures New.
type Option func(*options)

// WithReadHeaderTimeout bounds the wait for a request's head once its first byte arrived, and
// for a new connection's first request from the start (default 10s).
func WithReadHeaderTimeout(d time.Duration) Option {
	return func(o *options) { o.readHeaderTimeout = d }
}

// WithWriteTimeout bounds how long an answer's write may wait while the client takes none of
// it, a client that stopped reading (default 30s; 0: no bound).
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithIdleTimeout bounds the wait for the next request on a kept-alive connection (default 2m).
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithBodyTimeout bounds the wait for a request's body (default 30s).
func WithBodyTimeout(d time.Duration) Option { return func(o *options) { o.bodyTimeout = d } }

// WithMaxHeaderBytes bounds the head the fast path reads (default, and at most, 8 KiB, its
// read buffer); a longer head goes to the fallback, which applies its own limit.
func WithMaxHeaderBytes(n int) Option { return func(o *options) { o.maxHeaderBytes = n } }

// WithMaxBody bounds the body the fast path reads (default 4 MiB); a request with a larger
// one goes to the fallback.
func WithMaxBody(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns a server that serves what handler accepts and hands everything else to
// fallback, whose timeouts and limits then apply.
func New(handler Handler, fallback *http.Server, opts ...Option) *Server {
	o := options{
		readHeaderTimeout: 10 * time.Second,
		idleTimeout:       2 * time.Minute,
		bodyTimeout:       30 * time.Second,
		writeTimeout:      30 * time.Second,
		maxHeaderBytes:    bufferSize,
		maxBody:           4 << 20,
		log:               slog.New(slog.DiscardHandler),
		now:               time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Server{handler: handler, fallback: fallback, o: o, conns: map[*conn]struct{}{}, served: make(chan struct{})}
}

// Serve accepts connections on ln until Shutdown or Close; it returns http.ErrServerClosed
// then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.handoff = newConnListener(ln.Addr())
	s.mu.Unlock()
	fallbackDone := make(chan error, 1)
	go func() { fallbackDone <- s.fallback.Serve(s.handoff) }()
	defer func() {
		s.handoff.Close()
		<-fallbackDone
		close(s.served)
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			if temporary(err) {
				// Out of file descriptors and the like: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.o.log.Warn("accept failed; retrying", "error", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := &conn{s: s, nc: nc}
		if !s.track(c) {
			nc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, closes idle connections, lets requests in progress finish, and
// shuts the fallback down, all within ctx. Connections still busy when ctx ends are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	ln := s.stopAccepting()
	fallback := make(chan error, 1)
	go func() { fallback <- s.fallback.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for !s.closeIdle() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			s.closeAll()
			break wait
		case <-tick.C:
		}
	}
	if ferr := <-fallback; err == nil {
		err = ferr
	}
	if ln != nil {
		<-s.served
	}
	return err
}

// temporary reports accept errors that pass: out of file descriptors or memory, a connection
// aborted before it was accepted.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// stopAccepting marks the server as shutting down and closes its listener, which it returns
// (nil when Serve was never called).
func (s *Server) stopAccepting() net.Listener {
	s.mu.Lock()
	s.shutting.Store(true)
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	return ln
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	ln := s.stopAccepting()
	s.closeAll()
	err := s.fallback.Close()
	if ln != nil {
		<-s.served
	}
	return err
}

// closeIdle wakes the connections waiting for a request, which then close; it reports whether
// no connection is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle.Load() {
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	return len(s.conns) == 0
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.abort()
	}
}

// abort ends the connection at once, from another goroutine. A connection serving a request
// inside sockio's Hold keeps its descriptor until the request is answered (Close would wait for
// that), so its socket is shut down instead: the client sees the connection end now, a wait
// for it ends, and the answer's write fails. serve then closes it.
func (c *conn) abort() {
	tc, ok := c.nc.(halfCloser)
	if !ok {
		c.nc.Close()
		return
	}
	_ = tc.CloseWrite()
	_ = tc.CloseRead()
}

// halfCloser is a connection whose two directions close apart: a TCP connection, or one that
// wraps it.
type halfCloser interface {
	CloseRead() error
	CloseWrite() error
}

// conn is one client connection on the fast path.
type conn struct {
	s *Server
	// idle is true while the connection waits for a request, when shutting down may close it.
	idle atomic.Bool

	nc net.Conn
	// in and out read and write nc's socket directly (see sockio).
	in  io.Reader
	out io.Writer
	// deadline is nc's read deadline, which an idle wait leaves in place when it is close
	// enough: the idle limit is minutes long, and re-arming it per request costs more.
	deadline sockio.Deadline
	br       *bufio.Reader
	bw       *bufio.Writer
	req      Request
	resp     Response

	// stage is where step resumes: waiting for a request, for the rest of its head, or for
	// the rest of its body (read bytes of it so far).
	stage stage
	read  int
	// timed is true once the head being read is bounded by the header timeout, and waiting
	// once the wait for the next request is bounded by the idle timeout: a wait that step
	// resumes after the socket became readable keeps the bound it set.
	timed, waiting bool
	// handOff is true when step left the connection to the fallback.
	handOff bool
	// blank counts the CR and LF bytes skipped before the head being read.
	blank int
}

type stage int

const (
	awaitRequest stage = iota
	awaitHead
	awaitBody
)

// bufferSize is the size of a connection's reader and of the writer an answer borrows; a
// request head that does not fit the reader goes to the fallback.
const bufferSize = 8 << 10

// keepBelow is the largest body buffer a connection keeps for its next request or answer.
const keepBelow = 16 << 10

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufferSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufferSize) }}
)

// releaseWriter returns the answer's writer to the pool.
func (c *conn) releaseWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		writers.Put(c.bw)
		c.bw, c.resp.bw = nil, nil
	}
}

// serve reads and answers requests until the connection closes or is handed off. Where the
// socket is read directly, step runs inside sockio's Hold, so that waiting for the client's
// next request takes no read that finds nothing; elsewhere reads block and step never waits.
func (c *conn) serve() {
	s := c.s
	c.br = readers.Get().(*bufio.Reader)
	c.in = sockio.NewReader(c.nc)
	if s.o.writeTimeout > 0 {
		c.out = sockio.NewStallingWriter(c.nc, s.o.writeTimeout)
	} else {
		c.out = sockio.NewWriter(c.nc)
	}
	c.br.Reset(c.in)
	c.resp.now = s.o.now
	if ap, err := netip.ParseAddrPort(c.nc.RemoteAddr().String()); err == nil {
		c.req.RemoteAddr = ap
	}
	defer func() {
		s.untrack(c)
		if !c.handOff {
			c.nc.Close()
			c.br.Reset(nil)
			readers.Put(c.br)
		}
		c.releaseWriter()
	}()
	defer func() {
		// A panic in a handler closes its connection and is logged, as net/http does.
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			s.o.log.Error("panic serving a request", "panic", v, "remote", c.nc.RemoteAddr().String())
		}
	}()
	if r, ok := c.in.(*sockio.Reader); ok {
		if err := r.Hold(c.step); err != nil && c.stage == awaitBody {
			// The body did not arrive in time (or the connection closed): the request is
			// answered with that, as a body cut short is.
			c.req.BodyErr = err
			c.answer()
		}
	} else {
		for !c.step() {
		}
	}
	if c.handOff {
		c.handOff = c.giveAway()
	}
}

// step serves requests until it must wait for the client (false) or the connection is done
// (true: closed, failed, or to be handed to the fallback).
func (c *conn) step() bool {
	s := c.s
	for {
		switch c.stage {
		case awaitRequest:
			// Shutdown sets shutting before it looks for idle connections; checking it after
			// marking the connection idle means one of the two always sees the other.
			c.idle.Store(true)
			if s.shutting.Load() {
				return true
			}
			switch {
			case c.waiting:
			case c.req.Seq == 0 && s.o.readHeaderTimeout > 0:
				// A new connection's first request is bounded by the header timeout from the
				// start, as net/http's is: a client that connects and sends nothing does not
				// hold the connection for the idle limit.
				c.readBy(s.o.now().Add(s.o.readHeaderTimeout), 0)
			case s.o.idleTimeout > 0:
				// An idle connection closes between the idle limit and a sixteenth more (at
				// most a second more).
				c.readBy(s.o.now().Add(s.o.idleTimeout), min(time.Second, s.o.idleTimeout/16))
			default:
				// No idle limit: the last request's header or body deadline must not apply.
				c.readBy(time.Time{}, 0)
			}
			c.waiting = true
			if _, err := c.br.Peek(1); err != nil {
				return err != sockio.ErrWouldBlock
			}
			c.idle.Store(false)
			if s.shutting.Load() {
				return true
			}
			c.stage, c.timed, c.waiting, c.blank = awaitHead, false, false, 0
		case awaitHead:
			n, out := c.readHead()
			switch {
			case out == waiting:
				return false
			case out == incomplete:
				return true
			case out == declined || c.req.ContentLength > s.o.maxBody || !s.handler.Accepts(&c.req):
				c.handOff = true
				return true
			}
			_, _ = c.br.Discard(n)
			c.startBody()
			c.stage = awaitBody
		case awaitBody:
			if !c.readBody() {
				return false
			}
			c.stage = awaitRequest
			if !c.answer() {
				return true
			}
		}
	}
}

// answer has the request answered and reports whether the connection stays open.
func (c *conn) answer() bool {
	// The writer is taken for the answer only, so an idle connection holds just its reader, as
	// net/http's does.
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(c.out)
	c.resp.reset(c.bw)
	if c.req.Close || c.req.BodyErr != nil {
		c.resp.close = true
	}
	c.s.handler.Serve(&c.resp, &c.req)
	if cap(c.req.Body) > keepBelow {
		// A large body's buffer is not kept for the connection's next requests.
		c.req.Body = nil
	}
	err := c.resp.finish()
	c.releaseWriter()
	return err == nil && !c.resp.close
}

// readBy sets the read deadline to at (zero: none), or leaves one at most slack later in place.
func (c *conn) readBy(at time.Time, slack time.Duration) {
	if d, ok := c.deadline.Need(at, slack); ok {
		_ = c.nc.SetReadDeadline(d)
	}
}

// readHead parses the head once the buffer holds it whole. A declined head sends the
// connection to the fallback (which then reads the same bytes); an incomplete one means the
// client went away or ran out of time, and the connection closes, as net/http's would; waiting
// means the rest has yet to arrive.
func (c *conn) readHead() (int, outcome) {
	limit := min(c.s.o.maxHeaderBytes, c.br.Size())
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if c.req.Seq > 0 {
			// Only a connection's first head has none before it: a head after a request the
			// fast path served, a POST, skips them as net/http's server does.
			if k := blankLines(buf, c.blank); k > 0 {
				_, _ = c.br.Discard(k)
				c.blank += k
				buf, _ = c.br.Peek(c.br.Buffered())
			}
		}
		n, out := parseHead(buf, &c.req)
		if out == complete && n > limit {
			// A head over the limit is the fallback's to refuse, however it arrived.
			return 0, declined
		}
		if out != incomplete {
			return n, out
		}
		if len(buf) >= limit {
			return 0, declined
		}
		// A head usually arrives whole with its first byte; only one that does not is timed.
		if !c.timed && c.s.o.readHeaderTimeout > 0 {
			c.readBy(c.s.o.now().Add(c.s.o.readHeaderTimeout), 0)
			c.timed = true
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			if err == sockio.ErrWouldBlock {
				return 0, waiting
			}
			return 0, incomplete
		}
	}
}

// startBody readies the request's body buffer and, when the body has not arrived yet, bounds
// the wait for it by the body timeout.
func (c *conn) startBody() {
	r := &c.req
	r.BodyErr = nil
	if int64(cap(r.Body)) < r.ContentLength {
		r.Body = make([]byte, r.ContentLength)
	}
	r.Body = r.Body[:r.ContentLength]
	c.read = 0
	if int64(c.br.Buffered()) < r.ContentLength && c.s.o.bodyTimeout > 0 {
		c.readBy(c.s.o.now().Add(c.s.o.bodyTimeout), 0)
	}
}

// readBody reads what has arrived of the body; false means the rest has yet to arrive. A body
// that cannot be read in full is the request's BodyErr.
func (c *conn) readBody() bool {
	r := &c.req
	for c.read < len(r.Body) {
		n, err := c.br.Read(r.Body[c.read:])
		c.read += n
		if err == sockio.ErrWouldBlock {
			return false
		}
		if err != nil {
			if err == io.EOF && c.read > 0 {
				// As io.ReadFull reports a body cut short.
				err = io.ErrUnexpectedEOF
			}
			r.BodyErr = err
			break
		}
	}
	return true
}

// giveAway gives the connection to the fallback server, with what has been read of it. It
// reports false when the fallback no longer takes connections.
func (c *conn) giveAway() bool {
	_ = c.nc.SetReadDeadline(time.Time{})
	c.s.untrack(c)
	return c.s.handoff.give(&bufferedConn{Conn: c.nc, br: c.br})
}

// bufferedConn is a connection whose first bytes were already read into br.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if b.br != nil && b.br.Buffered() > 0 {
		return b.br.Read(p)
	}
	if b.br != nil {
		b.br.Reset(nil)
		readers.Put(b.br)
		b.br = nil
	}
	return b.Conn.Read(p)
}

// connListener is the fallback server's listener: it yields the connections handed to it.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give hands nc to the fallback's accept loop; false when the listener is closed.
func (l *connListener) give(nc net.Conn) bool {
	select {
	case l.conns <- nc:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
