// Command audit runs the audit service: the platform's append-only, hash-chained security log.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

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
	// RetiredCheckpointKeys are the public keys of earlier seeds, whose checkpoints still verify.
	RetiredCheckpointKeys []ed25519.PublicKey
}

func load(args []string, lookup func(string) (string, bool)) (settings, *chain.Signer, chain.Keys, error) {
	var s settings
	l := config.NewLoader("audit", args, lookup)
	s.Service.Bind(l, "audit")
	l.Secret(&s.CheckpointKey, "checkpoint-key", "BASALT_AUDIT_CHECKPOINT_KEY", "base64 Ed25519 seed (32 bytes) that signs the log's checkpoints")
	l.Func("retired-checkpoint-keys", "BASALT_AUDIT_RETIRED_CHECKPOINT_KEYS", "", "base64 Ed25519 public keys of earlier checkpoint keys, comma-separated", func(v string) error {
		s.RetiredCheckpointKeys = nil
		for i, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k == "" {
				continue
			}
			pub, err := base64.StdEncoding.DecodeString(k)
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return fmt.Errorf("key %d is not a base64 32-byte Ed25519 public key", i+1)
			}
			s.RetiredCheckpointKeys = append(s.RetiredCheckpointKeys, pub)
		}
		return nil
	})
	_ = l.Load()
	s.Service.Check(l)
	seed, err := base64.StdEncoding.DecodeString(s.CheckpointKey.Reveal())
	l.Check(err == nil && len(seed) == 32, "BASALT_AUDIT_CHECKPOINT_KEY", "must be a base64 32-byte Ed25519 seed (go tool task up generates one)")
	if err := l.Err(); err != nil {
		return s, nil, nil, err
	}
	signer, err := chain.NewSigner(seed)
	if err != nil {
		return s, nil, nil, err
	}
	return s, signer, chain.NewKeys(append([]ed25519.PublicKey{signer.PublicKey()}, s.RetiredCheckpointKeys...)...), nil
}

func main() {
	cfg, signer, keys, err := load(os.Args[1:], os.LookupEnv)
	service.ExitOnConfigError(err)
	// The audit service records its own events (permission denials) straight into its log
	// rather than through an outbox relayed to itself.
	service.Main(cfg.Service, func(ctx context.Context, svc *service.Service) error {
		st := store.New(svc.DB, signer)
		if err := st.Migrate(ctx, migrate.WithLogger(svc.Log)); err != nil {
			return err
		}
		// The public key is logged so that it can be listed among the retired keys once the seed
		// changes.
		svc.Log.Info("checkpoints are signed", "key_id", chain.KeyID(signer.PublicKey()),
			"public_key", base64.StdEncoding.EncodeToString(signer.PublicKey()), "retired_keys", len(cfg.RetiredCheckpointKeys))
		api := handler.New(st, keys)
		svc.UseRecorder(handler.NewRecorder(api))
		svc.Server.Mount(auditv1connect.NewAuditServiceHandler(api, svc.Server.HandlerOptions()...))
		return nil
	}, service.WithVersion(version), service.WithoutOutbox())
}
