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
// poller, as net does, and honour its deadlines and Close.
package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Reader reads from a connection's socket. It is safe for concurrent use, as the connection is.
type Reader struct{ op }

// Writer writes to a connection's socket. It is safe for concurrent use, as the connection is.
type Writer struct{ op }

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
	r := &Reader{op{nc: nc, rc: rc}}
	r.fn = r.attempt
	return r
}

// NewWriter returns a writer to nc's socket, or nc itself when it has no socket to write
// directly.
func NewWriter(nc net.Conn) io.Writer {
	rc := rawConn(nc)
	if rc == nil {
		return nc
	}
	w := &Writer{op{nc: nc, rc: rc}}
	w.fn = w.attempt
	return w
}

func rawConn(nc net.Conn) syscall.RawConn {
	if !supported {
		return nil
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Read reads into p what the socket holds, waiting until it holds something.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.fn)
	r.buf = nil
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
			return false
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
