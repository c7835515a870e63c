// Command audit runs the audit service: the platform's append-only, hash-chained security log.
package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/internal/handler"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// settings is the audit service's configuration.
type settings struct {
	config.Service
	// CheckpointKey is the Ed25519 seed that signs checkpoints. It must never be stored in the
	// database the checkpoints protect.
	CheckpointKey config.Secret
}

func load(args []string, lookup func(string) (string, bool)) (settings, *chain.Signer, error) {
	var s settings
	l := config.NewLoader("audit", args, lookup)
	s.Service.Bind(l, "audit")
	l.Secret(&s.CheckpointKey, "checkpoint-key", "BASALT_AUDIT_CHECKPOINT_KEY", "base64 Ed25519 seed (32 bytes) that signs the log's checkpoints")
	_ = l.Load()
	s.Service.Check(l)
	seed, err := base64.StdEncoding.DecodeString(s.CheckpointKey.Reveal())
	l.Check(err == nil && len(seed) == 32, "BASALT_AUDIT_CHECKPOINT_KEY", "must be a base64 32-byte Ed25519 seed (go tool task up generates one)")
	if err := l.Err(); err != nil {
		return s, nil, err
	}
	signer, err := chain.NewSigner(seed)
	return s, signer, err
}

func main() {
	cfg, signer, err := load(os.Args[1:], os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The audit service records its own events (permission denials) straight into its log
	// rather than through an outbox relayed to itself.
	svc, err := service.New(ctx, cfg.Service, os.Stderr, service.WithVersion(version), service.WithoutOutbox())
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(1)
	}
	st := store.New(svc.DB, signer)
	if err := st.Migrate(ctx); err != nil {
		svc.Log.Error("migration failed", "error", err)
		_ = svc.Close(ctx)
		os.Exit(1)
	}
	api := handler.New(st, signer.PublicKey())
	svc.UseRecorder(handler.NewRecorder(api))
	svc.Server.Mount(auditv1connect.NewAuditServiceHandler(api, svc.Server.HandlerOptions()...))
	if err := svc.Run(ctx); err != nil {
		svc.Log.Error("audit stopped with an error", "error", err)
		os.Exit(1)
	}
}
