// Package sockio reads and writes a TCP connection's non-blocking socket with system calls
// that keep the goroutine's processor, for servers and clients that make a few small reads
// and writes per call.
//
// Go's net package enters every read and write through the scheduler's system-call path: the
// processor is marked as in a system call, so that one which blocks can be handed to another
// thread, and the runtime's monitor thread is woken to watch it. A socket in non-blocking
// mode never blocks in read or write, so for a proxy making four of them per forwarded call
// that bookkeeping, and the thread hand-offs it causes when the machine is busy, cost more
// than the calls themselves. A Reader and a Writer wait for readiness through the connection's
// poller, as net does, and honour its deadlines and Close. A Reader's Send and Hold keep the
// poller's record of the socket across reads, so that a request's answer or a client's next
// request is waited for without first reading in vain.
package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Reader reads from a connection's socket. It is safe for concurrent use, as the connection is,
// except while Hold runs.
type Reader struct {
	op
	// send is what the next Read runs in place of its first read (see Send).
	send func() error
	// hold is the state of Hold, touched only by the goroutine running it.
	hold struct {
		on bool
		fd uintptr
		fn func() bool
		// drained is true when the last read left nothing in the socket: a Read then waits
		// for the poller rather than ask the socket again.
		drained bool
	}
	holdStep func(fd uintptr) bool
}

// ErrWouldBlock is what a Read made inside Hold returns when the socket has nothing to read.
var ErrWouldBlock = errors.New("sockio: nothing to read yet")

// Writer writes to a connection's socket. It is safe for concurrent use, as the connection is.
type Writer struct {
	op
	// stall bounds how long a write waits while the socket takes none of it (0: no bound).
	stall time.Duration
	// armed is true while a write has a stall deadline set, made when it had written mark
	// bytes.
	armed bool
	mark  int
}

// op is the state one read or write shares with its callback, which is made once per reader or
// writer so that a call allocates nothing.
type op struct {
	nc net.Conn
	rc syscall.RawConn

	mu  sync.Mutex
	buf []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var (
	_ io.Reader = (*Reader)(nil)
	_ io.Writer = (*Writer)(nil)
)

// NewReader returns a reader of nc's socket, or nc itself when it has no socket to read
// directly (a TLS connection, a pipe in a test).
func NewReader(nc net.Conn) io.Reader {
	rc := rawConn(nc)
	if rc == nil {
		return nc
	}
	r := &Reader{op: op{nc: nc, rc: rc}}
	r.fn, r.holdStep = r.attempt, r.step
	return r
}

// NewWriter returns a writer to nc's socket, or nc itself when it has no socket to write
// directly.
func NewWriter(nc net.Conn) io.Writer {
	rc := rawConn(nc)
	if rc == nil {
		return nc
	}
	w := &Writer{op: op{nc: nc, rc: rc}}
	w.fn = w.attempt
	return w
}

// NewStallingWriter is NewWriter for a peer that may stop reading: a write fails once the
// socket has taken none of it for stall. Only a write that finds the socket's send buffer full
// sets nc's write deadline, stall ahead, afresh each time the socket takes more, and clears it
// when done, so a write that never waits reads no clock. Where nc has no socket to write
// directly, each write goes through WriteWithin.
func NewStallingWriter(nc net.Conn, stall time.Duration) io.Writer {
	rc := rawConn(nc)
	if rc == nil {
		return stallingConn{nc, stall}
	}
	w := &Writer{op: op{nc: nc, rc: rc}, stall: stall}
	w.fn = w.attempt
	return w
}

// WriteWithin writes p to nc, failing once nc has taken none of it for stall: the write
// deadline is set stall ahead for each write and again after each partial one. It leaves the
// deadline set, so every write to nc must be made through it.
func WriteWithin(nc net.Conn, p []byte, stall time.Duration) (int, error) {
	written := 0
	for {
		_ = nc.SetWriteDeadline(time.Now().Add(stall))
		n, err := nc.Write(p[written:])
		written += n
		var ne net.Error
		if err == nil || n == 0 || !errors.As(err, &ne) || !ne.Timeout() {
			return written, err
		}
	}
}

type stallingConn struct {
	nc    net.Conn
	stall time.Duration
}

func (s stallingConn) Write(p []byte) (int, error) { return WriteWithin(s.nc, p, s.stall) }

// rawConn returns the raw connection of nc's socket, when it has one sockio can use: nc, or
// what wraps it, gives it through syscall.Conn.
func rawConn(nc net.Conn) syscall.RawConn {
	if !supported {
		return nil
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Send has the next Read run send, which writes a request to the connection, in place of its
// first read, and then wait for the answer. A Read starts by making the poller forget what it
// saw of the socket, so that it must read once before it may wait; a Read that answers a
// request it sends itself is already watching when the request goes out, and need not make a
// read that would find nothing. An error from send ends the Read with that error.
//
// Send is only for a peer that sends nothing unasked: data that arrived before the Read would
// go unnoticed until more arrives. An HTTP/1.1 server is such a peer; a connection it closed
// meanwhile answers the request with a reset, which the poller sees.
func (r *Reader) Send(send func() error) {
	r.mu.Lock()
	r.send = send
	r.mu.Unlock()
}

// Hold runs fn, and again each time the socket has become readable, until fn returns true.
// Inside fn, a Read reads the socket at once, or returns ErrWouldBlock when the last read left
// it empty; fn then returns false to wait for more. Hold returns the error that ended a wait
// (a deadline, Close).
//
// A Read outside Hold starts by making the poller forget what it saw of the socket, so it must
// read once before it may wait, and a server that has answered a request reads in vain before
// waiting for the next. Inside Hold the poller keeps watching between reads, across everything
// fn does, so Hold waits without that read, as an event loop does. Only fn may read r while
// Hold runs.
func (r *Reader) Hold(fn func() bool) error {
	h := &r.hold
	h.on, h.fn, h.drained = true, fn, false
	defer func() { h.on, h.fn = false, nil }()
	if err := r.rc.Read(r.holdStep); err != nil {
		return opError("read", r.nc, err)
	}
	return nil
}

// step runs the held function: the first time, or after the poller saw the socket readable.
func (r *Reader) step(fd uintptr) bool {
	r.hold.fd, r.hold.drained = fd, false
	return r.hold.fn()
}

// readHeld is Read inside Hold.
func (r *Reader) readHeld(p []byte) (int, error) {
	h := &r.hold
	if h.drained {
		return 0, ErrWouldBlock
	}
	for {
		n, errno := read(h.fd, p)
		switch errno {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			// A read returns all the socket holds, up to len(p): less means it is empty now.
			// Whatever arrives later, the poller sees.
			h.drained = n < len(p)
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			h.drained = true
			return 0, ErrWouldBlock
		default:
			return 0, opError("read", r.nc, os.NewSyscallError("read", errno))
		}
	}
}

// Read reads into p what the socket holds, waiting until it holds something.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.hold.on {
		return r.readHeld(p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.fn)
	// A send the Read never ran (the deadline had passed, the connection was closed) is
	// dropped: the caller learns from the error that nothing was sent.
	r.buf, r.send = nil, nil
	if err != nil {
		return 0, opError("read", r.nc, err)
	}
	if r.err != nil {
		return r.n, r.err
	}
	return r.n, nil
}

// attempt makes one read; false asks the poller to wait until the socket is readable.
func (r *Reader) attempt(fd uintptr) bool {
	if send := r.send; send != nil {
		r.send = nil
		if err := send(); err != nil {
			r.err = err
			return true
		}
		return false
	}
	for {
		n, errno := read(fd, r.buf)
		switch errno {
		case 0:
			r.n = n
			if n == 0 {
				r.err = io.EOF
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			r.err = opError("read", r.nc, os.NewSyscallError("read", errno))
			return true
		}
	}
}

// Write writes all of p, waiting whenever the socket's send buffer is full.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf, w.n, w.err = p, 0, nil
	err := w.rc.Write(w.fn)
	for err == nil && w.err == nil && w.n < len(w.buf) {
		// The socket is full and the write has a stall bound (attempt stops then): the
		// deadline goes stall ahead of now, when the socket first filled or took more since.
		_ = w.nc.SetWriteDeadline(time.Now().Add(w.stall))
		w.armed, w.mark = true, w.n
		err = w.rc.Write(w.fn)
	}
	if w.armed {
		w.armed = false
		_ = w.nc.SetWriteDeadline(time.Time{})
	}
	w.buf = nil
	if err != nil && w.err == nil {
		w.err = opError("write", w.nc, err)
	}
	return w.n, w.err
}

// attempt writes what it can of the rest; false asks the poller to wait until the socket is
// writable.
func (w *Writer) attempt(fd uintptr) bool {
	for w.n < len(w.buf) {
		n, errno := write(fd, w.buf[w.n:])
		switch errno {
		case 0:
			w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			// With a stall bound, Write sets the deadline before the wait: when none is set, or
			// the socket took more since it was.
			return w.stall > 0 && (!w.armed || w.n > w.mark)
		default:
			w.err = opError("write", w.nc, os.NewSyscallError("write", errno))
			return true
		}
	}
	return true
}

// opError wraps err as net does, so callers classify it the same way (a timeout, a closed
// connection, a reset by the peer).
func opError(op string, nc net.Conn, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		if oe.Op == op {
			return err
		}
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: nc.LocalAddr(), Addr: nc.RemoteAddr(), Err: err}
}
