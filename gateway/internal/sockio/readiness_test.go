package sockio_test

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/sockio"
)

// reader returns nc's sockio reader; the tests of Send need the socket itself.
func reader(t *testing.T, nc net.Conn) *sockio.Reader {
	t.Helper()
	r, ok := sockio.NewReader(nc).(*sockio.Reader)
	if !ok {
		t.Skipf("sockio does not read sockets directly on this system")
	}
	return r
}

func TestSendWritesTheRequestAndTheReadWaitsForTheAnswer(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r, w := reader(t, c), sockio.NewWriter(c)
	// A deadline turns a request that never went out into a failure rather than a hang.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		// The peer answers each request after a pause, so that the read is waiting by then.
		buf := make([]byte, 16)
		for range 3 {
			n, err := s.Read(buf)
			if err != nil {
				served <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
			if _, err := s.Write(append([]byte("re:"), buf[:n]...)); err != nil {
				served <- err
				return
			}
		}
		served <- nil
	}()
	for _, req := range []string{"one", "two", "three"} {
		sent := false
		r.Send(func() error {
			sent = true
			_, err := w.Write([]byte(req))
			return err
		})
		got := make([]byte, len("re:")+len(req))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != "re:"+req {
			t.Fatalf("answer to %q = %q, %v", req, got, err)
		}
		if !sent {
			t.Fatalf("the read returned the answer to %q without sending it", req)
		}
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestSendRunsInPlaceOfTheFirstRead puts data in the socket before the Read: a Read that read
// first would return it without sending. With Send the request goes out first, and what was
// waiting is read with the answer, once the answer's arrival ends the wait.
func TestSendRunsInPlaceOfTheFirstRead(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r, w := reader(t, c), sockio.NewWriter(c)
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("early;")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	go func() {
		buf := make([]byte, 8)
		if _, err := io.ReadFull(s, buf[:3]); err == nil {
			_, _ = s.Write([]byte("late"))
		}
	}()
	sent := false
	r.Send(func() error {
		sent = true
		_, err := w.Write([]byte("req"))
		return err
	})
	got := make([]byte, 0, 16)
	for len(got) < len("early;late") {
		buf := make([]byte, 16)
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("Read = %v after %q", err, got)
		}
		if !sent {
			t.Fatalf("Read returned %q before sending the request", buf[:n])
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "early;late" {
		t.Fatalf("read %q; want %q", got, "early;late")
	}
}

func TestSendErrorEndsTheRead(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	r := reader(t, c)
	failed := errors.New("the request could not be written")
	r.Send(func() error { return failed })
	if n, err := r.Read(make([]byte, 8)); n != 0 || !errors.Is(err, failed) {
		t.Fatalf("Read after a failed send = %d, %v; want 0 and the send's error", n, err)
	}
}

func TestSendIsDroppedWhenTheReadCannotStart(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r := reader(t, c)
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	sent := false
	r.Send(func() error { sent = true; return nil })
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline = %v; want a timeout", err)
	}
	if sent {
		t.Fatal("a read that never started ran its send")
	}
	// The next read does not run the dropped send either: it reads what the peer sends.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "x" || sent {
		t.Fatalf("next Read = %q, %v (send ran: %t); want %q and no send", got, err, sent, "x")
	}
}

// TestSendToAPeerThatClosedEndsTheRead is the case the read's waiting without a first read
// must not hang on: the peer closed while the connection was idle, and what it sent then (its
// end of stream) was seen before the read began. The request then draws a reset.
func TestSendToAPeerThatClosedEndsTheRead(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r, w := reader(t, c), sockio.NewWriter(c)
	s.Close()
	// The end of stream arrives and the poller notes it while nobody reads.
	time.Sleep(20 * time.Millisecond)
	// A deadline turns a hang into a failure the test reports.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r.Send(func() error {
		_, err := w.Write([]byte("request"))
		return err
	})
	_, err := r.Read(make([]byte, 8))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after sending to a closed peer = %v; want end of stream or a reset, at once", err)
	}
}

// TestHoldWaitsForThePollerNotTheSocket checks both halves of Hold's bargain: after a read
// that emptied the socket, a Read does not ask the socket again (it reports ErrWouldBlock even
// though data has arrived since), and the data that arrived meanwhile is not missed: the wait
// that follows ends at once.
func TestHoldWaitsForThePollerNotTheSocket(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r := reader(t, c)
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	var got []string
	calls := 0
	err := r.Hold(func() bool {
		calls++
		buf := make([]byte, 64)
		n, err := r.Read(buf)
		switch {
		case err == sockio.ErrWouldBlock:
			return false
		case err != nil:
			t.Errorf("Read inside Hold: %v", err)
			return true
		}
		got = append(got, string(buf[:n]))
		if len(got) == 1 {
			// The next message arrives while the function is still busy with this one.
			if _, err := s.Write([]byte("second")); err != nil {
				t.Error(err)
				return true
			}
			time.Sleep(20 * time.Millisecond)
			if n, err := r.Read(buf); err != sockio.ErrWouldBlock {
				t.Errorf("Read after a read that emptied the socket = %d, %v; want ErrWouldBlock without asking the socket", n, err)
			}
			return false
		}
		return true
	})
	if err != nil {
		t.Fatalf("Hold = %v", err)
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Fatalf("read %q; want first, second", got)
	}
	if calls != 2 {
		t.Errorf("the function ran %d times; want 2 (the second message was there when it returned)", calls)
	}
}

func TestHoldEndsWithTheDeadlineOfItsWait(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	r := reader(t, c)
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	err := r.Hold(func() bool {
		_, err := r.Read(make([]byte, 8))
		return err != sockio.ErrWouldBlock
	})
	assertOpError(t, err, "read")
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Hold past its deadline = %v; want a timeout", err)
	}
	// Outside Hold, reads are ordinary again.
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after Hold = %v; want a timeout, not ErrWouldBlock", err)
	}
}

func TestHoldEndsWhenTheConnectionCloses(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	r := reader(t, c)
	done := make(chan error, 1)
	go func() {
		done <- r.Hold(func() bool {
			_, err := r.Read(make([]byte, 8))
			return err != sockio.ErrWouldBlock
		})
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	err := <-done
	assertOpError(t, err, "read")
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Hold interrupted by Close = %v; want net.ErrClosed", err)
	}
}

func TestHoldSeesTheEndOfStream(t *testing.T) {
	t.Parallel()
	c, s := pair(t)
	r := reader(t, c)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = s.CloseWrite()
	}()
	var last error
	if err := r.Hold(func() bool {
		_, last = r.Read(make([]byte, 8))
		return last != sockio.ErrWouldBlock
	}); err != nil {
		t.Fatalf("Hold = %v", err)
	}
	if !errors.Is(last, io.EOF) {
		t.Fatalf("Read at the end of stream = %v; want io.EOF", last)
	}
}
