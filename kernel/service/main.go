package service

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/basaltplatform/basalt/kernel/config"
)

// Main runs a service process: it builds the plumbing from cfg (logging to standard error),
// calls setup to migrate the store and mount the handlers, serves until SIGINT or SIGTERM,
// drains, and exits non-zero when any step fails. A service's main is its configuration, its
// setup, and a call to Main.
func Main(cfg config.Service, setup func(ctx context.Context, svc *Service) error, opts ...Option) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, cfg, setup, opts...)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, cfg config.Service, setup func(ctx context.Context, svc *Service) error, opts ...Option) int {
	svc, err := New(ctx, cfg, os.Stderr, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cfg.Name, err)
		return 1
	}
	if err := setup(ctx, svc); err != nil {
		svc.Log.Error("start-up failed", "error", err)
		_ = svc.Close(ctx)
		return 1
	}
	if err := svc.Run(ctx); err != nil {
		svc.Log.Error("stopped with an error", "error", err)
		return 1
	}
	return 0
}

// ExitOnConfigError prints a configuration error and exits with status 2, the conventional
// status of a usage error.
func ExitOnConfigError(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
