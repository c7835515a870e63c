package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/sockio"
)

// clientListener accepts the gateway's client connections, on every path (the fast path,
// net/http, TLS). It keeps at most max open: past that, a new connection is closed as soon as
// it is accepted, before anything is read from it. Answering it instead (a 503) would mean
// reading its request, and a TLS handshake or an HTTP/2 preface first for many clients, which
// is what a gateway out of connections cannot afford; a client sees the connection end and may
// try again. Each connection's writes fail once the client has taken none of an answer for
// writeTimeout (see clientConn.Write).
type clientListener struct {
	net.Listener
	max          int64
	writeTimeout time.Duration
	// open counts the connections open; it is the gateway's, for its metrics.
	open    *atomic.Int64
	refused func()
}

func (l *clientListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			nc.Close()
			l.refused()
			continue
		}
		return &clientConn{Conn: nc, l: l}, nil
	}
}

// clientConn is one client connection: counted until it closes, and given the fast path's
// direct socket access (syscall.Conn) and half-closing through it as a TCP connection would.
type clientConn struct {
	net.Conn
	l    *clientListener
	once sync.Once
}

// Write bounds each write by the write timeout, renewed whenever the client takes part of it
// (sockio.WriteWithin): net/http's server sets no write deadline that would not also cut a
// long stream short. The fast path writes the socket directly, with the same bound
// (sockio.NewStallingWriter).
func (c *clientConn) Write(p []byte) (int, error) {
	if c.l.writeTimeout <= 0 {
		return c.Conn.Write(p)
	}
	return sockio.WriteWithin(c.Conn, p, c.l.writeTimeout)
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// SyscallConn gives the socket of a TCP connection, which the fast path reads and writes
// directly.
func (c *clientConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, syscall.EINVAL
	}
	return sc.SyscallConn()
}

// CloseRead and CloseWrite close one direction of a TCP connection.
func (c *clientConn) CloseRead() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.CloseRead()
	}
	return c.Conn.Close()
}

func (c *clientConn) CloseWrite() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return c.Conn.Close()
}
