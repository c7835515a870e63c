package sockio_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/sockio"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// direct reports whether sockio reads the socket itself on this system.
func direct() bool { return runtime.GOOS == "linux" }

func TestReaderAndWriterOfATCPConnectionUseItsSocket(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	r, w := sockio.NewReader(c), sockio.NewWriter(c)
	_, rIsConn := r.(*net.TCPConn)
	_, wIsConn := w.(*net.TCPConn)
	if direct() && (rIsConn || wIsConn) {
		t.Fatalf("NewReader and NewWriter returned the connection itself (%T, %T) on %s", r, w, runtime.GOOS)
	}
	if !direct() && (!rIsConn || !wIsConn) {
		t.Fatalf("NewReader and NewWriter returned %T and %T on %s; want the connection", r, w, runtime.GOOS)
	}
}

func TestOtherConnectionsAreTheirOwnReaderAndWriter(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if r := sockio.NewReader(a); r != io.Reader(a) {
		t.Errorf("NewReader(pipe) = %T; want the pipe itself", r)
	}
	if w := sockio.NewWriter(a); w != io.Writer(a) {
		t.Errorf("NewWriter(pipe) = %T; want the pipe itself", w)
	}
}

func TestRoundTripBothWays(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	cr, cw := sockio.NewReader(c), sockio.NewWriter(c)
	sr, sw := sockio.NewReader(s), sockio.NewWriter(s)
	for _, msg := range []string{"x", "POST / HTTP/1.1\r\n\r\n", string(bytes.Repeat([]byte("abc"), 5000))} {
		if n, err := cw.Write([]byte(msg)); err != nil || n != len(msg) {
			t.Fatalf("client Write = %d, %v; want %d, nil", n, err, len(msg))
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(sr, got); err != nil || string(got) != msg {
			t.Fatalf("server read %d bytes (%v); want the %d written", len(got), err, len(msg))
		}
		if _, err := sw.Write(got); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(cr, back); err != nil || string(back) != msg {
			t.Fatalf("client read back %d bytes (%v); want the %d sent", len(back), err, len(msg))
		}
	}
	if n, err := cr.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

func TestReadWaitsForDataThenSeesEndOfStream(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r := sockio.NewReader(c)
	go func() {
		// The reader is already waiting (most likely) when the data arrives.
		time.Sleep(20 * time.Millisecond)
		_, _ = s.Write([]byte("late"))
		_ = s.CloseWrite()
	}()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "late" {
		t.Fatalf("ReadAll = %q, %v; want %q, nil (io.EOF ends it)", got, err, "late")
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestLargeWriteWaitsForTheReaderAndArrivesWhole(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	// A small send buffer makes the write fill it many times over.
	if err := c.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 8<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i/251)
	}
	done := make(chan error, 1)
	go func() {
		n, err := sockio.NewWriter(c).Write(payload)
		if err == nil && n != len(payload) {
			err = errors.New("short write")
		}
		done <- err
	}()
	got := make([]byte, len(payload))
	r := sockio.NewReader(s)
	for off := 0; off < len(got); {
		// The reader takes small bites, so the writer finds the buffer full again and again.
		n, err := r.Read(got[off:min(off+4096, len(got))])
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		off += n
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the bytes read differ from the bytes written")
	}
}

func TestConcurrentWritesDoNotInterleave(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	if err := c.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	w := sockio.NewWriter(c)
	const writers, size = 4, 256 << 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			if _, err := w.Write(bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
				errs <- err
			}
		})
	}
	got := make([]byte, writers*size)
	if _, err := io.ReadFull(sockio.NewReader(s), got); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Write: %v", err)
	}
	seen := map[byte]bool{}
	for off := 0; off < len(got); off += size {
		block := got[off : off+size]
		if !bytes.Equal(block, bytes.Repeat(block[:1], size)) {
			t.Fatalf("block at %d mixes the bytes of several writes", off)
		}
		seen[block[0]] = true
	}
	if len(seen) != writers {
		t.Fatalf("saw %d distinct blocks; want %d", len(seen), writers)
	}
}

func TestReadDeadlineFailsAsATimeout(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := sockio.NewReader(c).Read(make([]byte, 8))
	assertOpError(t, err, "read")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a timeout wrapping os.ErrDeadlineExceeded", err)
	}
}

func TestWriteDeadlineFailsAsATimeoutWhenThePeerDoesNotRead(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	if err := c.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// Far more than both socket buffers hold, with nobody reading.
	n, err := sockio.NewWriter(c).Write(make([]byte, 64<<20))
	assertOpError(t, err, "write")
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline = %v; want os.ErrDeadlineExceeded", err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Errorf("Write reported %d bytes written; want the part the buffers took", n)
	}
}

func TestCloseInterruptsAWaitingRead(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	r := sockio.NewReader(c)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	err := <-done
	assertOpError(t, err, "read")
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read interrupted by Close = %v; want net.ErrClosed", err)
	}
}

func TestWriteToAConnectionThePeerResetFails(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	// Closing with unread data and no linger resets the connection.
	if err := s.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	w := sockio.NewWriter(c)
	var err error
	// The first write may still be accepted locally; one after the reset arrived fails.
	for range 100 {
		if _, err = w.Write([]byte("after the reset")); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	assertOpError(t, err, "write")
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write to a reset connection = %v; want the socket's error", err)
	}
	if _, rerr := sockio.NewReader(c).Read(make([]byte, 8)); rerr == nil {
		t.Fatal("Read of a reset connection succeeded")
	}
}

// assertOpError checks that err is a *net.OpError for op, as net's own errors are, so callers
// classify sockio's errors as they classify net's.
func assertOpError(t *testing.T, err error, op string) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not a *net.OpError", err, err)
	}
	if oe.Op != op {
		t.Fatalf("OpError.Op = %q; want %q (%v)", oe.Op, op, err)
	}
}

// BenchmarkPingPong sends a 256-byte message back and forth over a loopback connection, through
// the connection itself and through sockio, as a proxy's request and answer go.
func BenchmarkPingPong(b *testing.B) {
	for _, tt := range []struct {
		name string
		wrap func(net.Conn) (io.Reader, io.Writer)
	}{
		{"net", func(c net.Conn) (io.Reader, io.Writer) { return c, c }},
		{"sockio", func(c net.Conn) (io.Reader, io.Writer) { return sockio.NewReader(c), sockio.NewWriter(c) }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				s, err := ln.Accept()
				if err != nil {
					return
				}
				defer s.Close()
				r, w := tt.wrap(s)
				buf := make([]byte, 256)
				for {
					if _, err := io.ReadFull(r, buf); err != nil {
						return
					}
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			r, w := tt.wrap(c)
			msg, buf := make([]byte, 256), make([]byte, 256)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			<-done
		})
	}
}

// wrapped is a connection that wraps a TCP connection and gives its socket through
// syscall.Conn, as a server's connection with bookkeeping of its own does.
type wrapped struct{ *net.TCPConn }

// TestAWrappedConnectionsSocketIsUsed checks that a connection that gives its socket through
// syscall.Conn is read and written directly, as a TCP connection is.
func TestAWrappedConnectionsSocketIsUsed(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	w, r := sockio.NewStallingWriter(wrapped{c}, time.Second), sockio.NewReader(wrapped{s})
	if _, ok := w.(*sockio.Writer); ok != direct() {
		t.Errorf("NewStallingWriter(wrapped) = %T on %s", w, runtime.GOOS)
	}
	if _, ok := r.(*sockio.Reader); ok != direct() {
		t.Errorf("NewReader(wrapped) = %T on %s", r, runtime.GOOS)
	}
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "ping" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestStallingWriteFailsWhenThePeerStopsReading writes far more than the socket buffers hold to
// a peer that reads nothing: the write fails as a timeout once the socket has taken nothing for
// the stall bound, through sockio and through WriteWithin alike.
func TestStallingWriteFailsWhenThePeerStopsReading(t *testing.T) {
	t.Parallel()
	for name, writer := range map[string]func(*net.TCPConn) io.Writer{
		"sockio":      func(c *net.TCPConn) io.Writer { return sockio.NewStallingWriter(c, 100*time.Millisecond) },
		"WriteWithin": func(c *net.TCPConn) io.Writer { return writeWithin{c, 100 * time.Millisecond} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, _ := pair(t)
			if err := c.SetWriteBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			n, err := writer(c).Write(make([]byte, 64<<20))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write to a peer that does not read = %v; want a timeout", err)
			}
			if n <= 0 || n >= 64<<20 {
				t.Errorf("Write reported %d bytes written; want the part the buffers took", n)
			}
		})
	}
}

type writeWithin struct {
	c     net.Conn
	stall time.Duration
}

func (w writeWithin) Write(p []byte) (int, error) { return sockio.WriteWithin(w.c, p, w.stall) }

// TestStallingWriteLastsWhileThePeerReads writes to a peer that reads in bites with pauses
// shorter than the stall bound, for longer in all than the bound: the write succeeds, since
// the bound is on a stall, not on the write; and a later write, after the bound has passed
// again, is not held to the deadline of the one before.
func TestStallingWriteLastsWhileThePeerReads(t *testing.T) {
	t.Parallel()
	const stall = time.Second
	for name, writer := range map[string]func(*net.TCPConn) io.Writer{
		"sockio":      func(c *net.TCPConn) io.Writer { return sockio.NewStallingWriter(c, stall) },
		"WriteWithin": func(c *net.TCPConn) io.Writer { return writeWithin{c, stall} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, s := pair(t)
			if err := c.SetWriteBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			if err := s.SetReadBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			// A write that fails leaves the reads below waiting for what never comes.
			if err := s.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
				t.Fatal(err)
			}
			w := writer(c)
			payload := make([]byte, 4<<20)
			done := make(chan error, 1)
			go func() {
				_, err := w.Write(payload)
				done <- err
			}()
			// Eight bites a quarter of the bound apart: twice the bound in all.
			start := time.Now()
			got := 0
			for bite := range 8 {
				time.Sleep(stall / 4)
				n, err := io.ReadFull(s, make([]byte, (len(payload)-got)/(8-bite)))
				if err != nil {
					t.Fatalf("read: %v; the write ended with %v", err, <-done)
				}
				got += n
			}
			if err := <-done; err != nil {
				t.Fatalf("a write to a reading peer failed after %v: %v", time.Since(start), err)
			}
			time.Sleep(stall + stall/2)
			go func() { _, _ = io.Copy(io.Discard, s) }()
			if _, err := w.Write([]byte("later")); err != nil {
				t.Fatalf("a write after the bound passed: %v", err)
			}
		})
	}
}
