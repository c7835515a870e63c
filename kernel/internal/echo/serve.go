package echo

import (
	"testing"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// HTTPConfig returns server settings suited to tests, with a small message limit.
func HTTPConfig() config.HTTP {
	cfg := testkit.HTTPConfig()
	cfg.MaxMessageBytes = 64 << 10
	return cfg
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
	return Running{Server: srv, stop: testkit.Serve(t, srv)}
}
