// Command audit runs the audit service: the platform's append-only, hash-chained security log.
package main

import (
	"context"
	"encoding/base64"
	"os"

	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/migrate"
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
	service.ExitOnConfigError(err)
	// The audit service records its own events (permission denials) straight into its log
	// rather than through an outbox relayed to itself.
	service.Main(cfg.Service, func(ctx context.Context, svc *service.Service) error {
		st := store.New(svc.DB, signer)
		if err := st.Migrate(ctx, migrate.WithLogger(svc.Log)); err != nil {
			return err
		}
		api := handler.New(st, signer.PublicKey())
		svc.UseRecorder(handler.NewRecorder(api))
		svc.Server.Mount(auditv1connect.NewAuditServiceHandler(api, svc.Server.HandlerOptions()...))
		return nil
	}, service.WithVersion(version), service.WithoutOutbox())
}
