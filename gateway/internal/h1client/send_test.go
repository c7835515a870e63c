package h1client

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestUnsentTellsWhetherTheRequestWentOut covers how an exchange reports a failed read of its
// answer when the request's write was left to that read: the write's own error, the read's when
// the request never went out (both as a write, which the balancer may retry elsewhere), and
// nothing when the request went out (then it is the read that failed).
func TestUnsentTellsWhetherTheRequestWentOut(t *testing.T) {
	t.Parallel()
	writeErr, readErr := errors.New("write failed"), errors.New("read failed")
	for _, tc := range []struct {
		name    string
		sent    bool
		sendErr error
		want    error
	}{
		{"went out", true, nil, nil},
		{"write failed", true, writeErr, writeErr},
		{"never went out", false, nil, readErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &h1Conn{sent: tc.sent, sendErr: tc.sendErr}
			if got := c.unsent(readErr); got != tc.want {
				t.Errorf("unsent = %v; want %v", got, tc.want)
			}
		})
	}
}

// TestSendWritesAtOnceWhenBytesAreBuffered covers a connection whose reader already holds
// bytes (an upstream that sent something unasked): the read of the answer would return them
// without asking the socket, so a write left to it would never happen. send writes at once.
func TestSendWritesAtOnceWhenBytesAreBuffered(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_ = peer.SetDeadline(time.Now().Add(10 * time.Second))
	c := newH1Conn(nc, ln.Addr().String())
	if c.in == nil {
		t.Skip("sockio does not read sockets directly on this system")
	}
	if _, err := peer.Write([]byte("unasked")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.br.Peek(1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.bw.WriteString("request"); err != nil {
		t.Fatal(err)
	}
	if err := c.send(); err != nil {
		t.Fatalf("send = %v", err)
	}
	got := make([]byte, len("request"))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "request" {
		t.Fatalf("the peer read %q, %v; want the request, written by send itself", got, err)
	}
	if c.unsent(errors.New("read")) != nil {
		t.Error("unsent reports a request send wrote itself as not sent")
	}
}
