package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// h2cPreface starts every HTTP/2 connection made with prior knowledge (RFC 9113, 3.4). No
// HTTP/1.x request starts with "PRI", so its first bytes tell the two apart.
var h2cPreface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// splitter is the gateway's upstream address for the conformance service. The gateway sends a
// call upstream over HTTP/1.1 or over HTTP/2 in plain text (h2c) depending on the call, but
// the reference server speaks only one of them per process; the splitter looks at the first
// bytes of each connection and relays it, byte for byte, to the reference server that speaks
// its version. It changes nothing in what passes, so it is invisible to the suite.
type splitter struct {
	ln      net.Listener
	http1   string
	http2   string
	timeout time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// newSplitter listens on a loopback port and relays HTTP/1.x connections to http1 and h2c
// connections to http2 (both host:port).
func newSplitter(http1, http2 string) (*splitter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &splitter{ln: ln, http1: http1, http2: http2, timeout: 10 * time.Second, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the host:port the splitter listens on.
func (s *splitter) Addr() string { return s.ln.Addr().String() }

func (s *splitter) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.relay(c)
		}()
	}
}

// relay connects c to the reference server of its HTTP version and copies both ways until
// both sides are done.
func (s *splitter) relay(c net.Conn) {
	br := bufio.NewReaderSize(c, len(h2cPreface))
	_ = c.SetReadDeadline(time.Now().Add(s.timeout))
	first, err := br.Peek(3)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	target := s.http1
	if bytes.Equal(first, h2cPreface[:3]) {
		target = s.http2
	}
	up, err := net.DialTimeout("tcp", target, s.timeout)
	if err != nil {
		return
	}
	if !s.track(up) {
		up.Close()
		return
	}
	defer s.untrack(up)
	var wg sync.WaitGroup
	wg.Add(2)
	// Each direction ends with a half-close, so a peer that finished sending still gets the
	// other side's answer; a failed copy closes both connections, which ends the other one.
	pipe := func(dst net.Conn, src io.Reader) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			c.Close()
			up.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	go pipe(up, br)
	go pipe(c, up)
	wg.Wait()
}

// track records an open connection so Close can end it; it reports false once the splitter
// is closed.
func (s *splitter) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *splitter) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close stops listening, ends every relayed connection and waits for the relays to return.
func (s *splitter) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
