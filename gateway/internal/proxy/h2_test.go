package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// h2cServer starts a server on loopback that speaks HTTP/1.1 and HTTP/2 without TLS.
func h2cServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// h2cClient is a client that speaks HTTP/2 without TLS.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestForwardRelaysAGRPCAnswerOverHTTP2 forwards gRPC calls between real h2c servers, with the
// method's answer declared unary and not: either way the client gets the message and the
// trailers, and no Content-Length the upstream did not send. An upstream that breaks off in the
// middle of its message leaves a unary call's client a gRPC error and nothing of the message,
// and a stream's client the part that came, ended by the same error in the trailers.
func TestForwardRelaysAGRPCAnswerOverHTTP2(t *testing.T) {
	t.Parallel()
	message := []byte{0, 0, 0, 0, 3, 'a', 'b', 'c'}
	upstream := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		// Headers out first, as gRPC servers send them: the answer has no length.
		w.(http.Flusher).Flush()
		if r.URL.Path == "/a.B/Cut" {
			_, _ = w.Write(message[:6])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write(message)
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}))
	upClient := h2cClient(t)
	tests := []struct {
		name   string
		unary  bool
		path   string
		body   []byte
		status string
	}{
		{"a unary answer", true, "/a.B/C", message, "0"},
		{"a stream's answer", false, "/a.B/C", message, "0"},
		{"a unary answer cut short", true, "/a.B/Cut", nil, "14"},
		{"a stream's answer cut short", false, "/a.B/Cut", message[:6], "14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := New(1<<20, time.Second)
			front := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p.Forward(w, r, &Call{
					Upstream: upClient, BaseURL: upstream.URL, Buffer: true, UnaryAnswer: tt.unary,
					Header: http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}},
				})
			}))
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, front.URL+tt.path, bytes.NewReader([]byte{0, 0, 0, 0, 0}))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			resp, err := h2cClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			status := resp.Trailer.Get("Grpc-Status")
			if status == "" {
				status = resp.Header.Get("Grpc-Status")
			}
			// The gateway's own error answer (trailers-only) has a length of 0, which is fine.
			invented := tt.status == "0" && resp.Header.Get("Content-Length") != ""
			if resp.ProtoMajor != 2 || !bytes.Equal(body, tt.body) || status != tt.status || invented {
				t.Errorf("HTTP/%d, body %q, grpc-status %q, Content-Length %q; want HTTP/2, %q, %q and no length",
					resp.ProtoMajor, body, status, resp.Header.Get("Content-Length"), tt.body, tt.status)
			}
		})
	}
}

// TestForwardTimesOutALateBodyOverHTTP2 sends part of a unary call's body over HTTP/2 and then
// nothing: the call must end with deadline_exceeded by the body timeout, which on HTTP/2 a timer
// of the proxy's sets.
func TestForwardTimesOutALateBodyOverHTTP2(t *testing.T) {
	t.Parallel()
	p := New(1<<20, 100*time.Millisecond)
	results := make(chan Result, 1)
	front := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		results <- p.Forward(w, r, &Call{
			Upstream: http.DefaultClient, BaseURL: "http://127.0.0.1:1", Buffer: true, UnaryAnswer: true,
			Header: http.Header{"Content-Type": {"application/proto"}},
		})
	}))
	body, send := io.Pipe()
	defer send.Close()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, front.URL+"/a.B/C", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Connect-Protocol-Version", "1")
	go func() { _, _ = send.Write([]byte{1}) }()
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	select {
	case res := <-results:
		if res.Code != connect.CodeDeadlineExceeded || resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("the call ended %v with %d, want deadline_exceeded (504)", res.Code, resp.StatusCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end by the body timeout")
	}
}
