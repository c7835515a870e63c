// Command audit runs the audit service: the platform's append-only, hash-chained security log.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/services/audit/internal/handler"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg, err := service.LoadConfig("audit", os.Args[1:], os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	svc, err := service.New(ctx, cfg, os.Stderr, service.WithVersion(version))
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(1)
	}
	st := store.New(svc.DB)
	if err := st.Migrate(ctx); err != nil {
		svc.Log.Error("migration failed", "error", err)
		_ = svc.Close(ctx)
		os.Exit(1)
	}
	svc.Server.Mount(auditv1connect.NewAuditServiceHandler(handler.New(st), svc.Server.HandlerOptions()...))
	if err := svc.Run(ctx); err != nil {
		svc.Log.Error("audit stopped with an error", "error", err)
		os.Exit(1)
	}
}
