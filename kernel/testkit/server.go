package testkit

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/config"
)

// Runner is what Serve needs of a server: *server.Server has both methods.
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// HTTPConfig returns server settings suited to tests: a free loopback port, short timeouts.
func HTTPConfig() config.HTTP {
	return config.HTTP{
		ListenAddr:        "127.0.0.1:0",
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxMessageBytes:   4 << 20,
		ShutdownTimeout:   5 * time.Second,
	}
}

// Serve runs srv in the background until the test ends (or the returned stop is called) and
// returns once it is ready. stop returns what Run returned.
func Serve(t testing.TB, srv Runner) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("testkit: server did not start: %v", err)
	}
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// H2CClient returns an HTTP client that speaks HTTP/2 without TLS, as gRPC needs.
func H2CClient(t testing.TB) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// HTTP1Client returns an HTTP/1.1 client, as browsers' Connect and gRPC-Web calls arrive.
func HTTP1Client(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
