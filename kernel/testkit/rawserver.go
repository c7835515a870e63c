package testkit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RawReply is what a RawServer sends for one request: bytes as they are, then, optionally,
// the connection closed or never written to again.
type RawReply struct {
	Data  string
	Close bool
	Hang  bool
	// Delay comes before the data.
	Delay time.Duration
}

// RawServer reads HTTP/1.1 requests on a loopback port and answers each with the bytes its
// script returns, so that a test can send what net/http's server never writes: a broken or
// unusual answer, or one cut short.
type RawServer struct {
	// URL is the server's base URL.
	URL string
	// Conns and Requests count the connections accepted and the requests read.
	Conns, Requests atomic.Int64

	mu   sync.Mutex
	last *http.Request
}

// Last returns the last request the server read, its body read, or nil.
func (s *RawServer) Last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// AlwaysReply is a script that answers every request with r.
func AlwaysReply(r RawReply) func(int) RawReply { return func(int) RawReply { return r } }

// StartRawServer starts a RawServer whose script is given each request's number, from 0; the
// server and its connections close when the test ends.
func StartRawServer(t testing.TB, script func(request int) RawReply) *RawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &RawServer{URL: "http://" + ln.Addr().String()}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.Conns.Add(1)
			mu.Lock()
			open = append(open, nc)
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				s.serve(nc, script, done)
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		for _, nc := range open {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// serve answers the requests of one connection.
func (s *RawServer) serve(nc net.Conn, script func(int) RawReply, done <-chan struct{}) {
	br := bufio.NewReader(nc)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		s.mu.Lock()
		s.last = req
		s.mu.Unlock()
		reply := script(int(s.Requests.Add(1)) - 1)
		select {
		case <-time.After(reply.Delay):
		case <-done:
			return
		}
		if _, err := io.WriteString(nc, reply.Data); err != nil {
			return
		}
		if reply.Hang {
			<-done
			return
		}
		if reply.Close {
			return
		}
	}
}
