package echo

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// HTTPConfig returns server settings suited to tests.
func HTTPConfig() config.HTTP {
	return config.HTTP{
		ListenAddr:        "127.0.0.1:0",
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxMessageBytes:   64 << 10,
		ShutdownTimeout:   5 * time.Second,
	}
}

// Running is an echo server started in the background by Start.
type Running struct {
	*server.Server
	stop func() error
}

// Stop shuts the server down (once) and returns what Run returned.
func (r Running) Stop() error { return r.stop() }

// Start runs an echo server on the kernel's server until the test ends.
func Start(t testing.TB, cfg config.HTTP, unary UnaryFunc, opts ...server.Option) Running {
	t.Helper()
	opts = append([]server.Option{server.WithLogger(testkit.Logger(t))}, opts...)
	srv, err := server.New("echo", cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(Handler(unary, nil, srv.HandlerOptions()...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return Running{Server: srv, stop: stop}
}
