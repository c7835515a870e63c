// Command auth runs the auth service: sessions, access tokens and refresh tokens, and the
// published keys that verify the tokens.
package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"time"

	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/services/auth/internal/handler"
	"github.com/basaltplatform/basalt/services/auth/internal/keys"
	"github.com/basaltplatform/basalt/services/auth/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// settings is the auth service's configuration.
type settings struct {
	config.Service
	KeySecret config.Secret
	Lifetimes handler.Lifetimes
	Rotation  keys.Policy
}

func load(args []string, lookup func(string) (string, bool)) (settings, []byte, error) {
	var s settings
	l := config.NewLoader("auth", args, lookup)
	s.Service.Bind(l, "auth")
	l.Secret(&s.KeySecret, "key-secret", "BASALT_AUTH_KEY_SECRET", "base64 32-byte secret that seals the signing keys at rest")
	l.Duration(&s.Lifetimes.Access, "access-ttl", "BASALT_AUTH_ACCESS_TTL", 15*time.Minute, "access token lifetime")
	l.Duration(&s.Lifetimes.Session, "session-ttl", "BASALT_AUTH_SESSION_TTL", 30*24*time.Hour, "absolute session lifetime")
	l.Duration(&s.Rotation.RotateEvery, "key-rotation", "BASALT_AUTH_KEY_ROTATION", 24*time.Hour, "how long a signing key signs")
	l.Duration(&s.Rotation.Prepublish, "key-prepublish", "BASALT_AUTH_KEY_PREPUBLISH", time.Hour, "how long a key is published before it signs")
	_ = l.Load()
	s.Service.Check(l)
	secret, err := base64.StdEncoding.DecodeString(s.KeySecret.Reveal())
	l.Check(err == nil && len(secret) == 32, "BASALT_AUTH_KEY_SECRET", "must be a base64 32-byte secret (go tool task up generates one)")
	l.Check(s.Lifetimes.Access >= time.Minute && s.Lifetimes.Access <= time.Hour, "BASALT_AUTH_ACCESS_TTL", "must be between 1m and 1h")
	l.Check(s.Lifetimes.Session >= time.Hour, "BASALT_AUTH_SESSION_TTL", "must be at least 1h")
	l.Check(s.Rotation.Prepublish >= 10*time.Minute, "BASALT_AUTH_KEY_PREPUBLISH", "must be at least 10m, twice the verifiers' JWKS cache")
	l.Check(s.Rotation.RotateEvery > s.Rotation.Prepublish, "BASALT_AUTH_KEY_ROTATION", "must be longer than BASALT_AUTH_KEY_PREPUBLISH")
	s.Rotation.AccessTTL = s.Lifetimes.Access
	return s, secret, l.Err()
}

func main() {
	cfg, secret, err := load(os.Args[1:], os.LookupEnv)
	service.ExitOnConfigError(err)
	service.Main(cfg.Service, func(ctx context.Context, svc *service.Service) error {
		st := store.New(svc.DB, svc.Outbox)
		if err := st.Migrate(ctx, migrate.WithLogger(svc.Log)); err != nil {
			return err
		}
		ring, err := keys.New(svc.DB, st.Client(), secret, cfg.Rotation, time.Now)
		if err != nil {
			return err
		}
		if err := ring.Rotate(ctx); err != nil {
			return err
		}
		svc.Go(func(ctx context.Context) {
			ring.Run(ctx, time.Minute, func(err error) { svc.Log.Error("key rotation failed", "error", err) })
		})
		identity := rpcclient.For(svc.RPC, "identity", identityv1connect.NewIdentityServiceClient)
		api := handler.New(st, identity, ring, svc.Outbox, cfg.Auth.Issuer, cfg.Auth.Audience, cfg.Lifetimes)
		// The auth service verifies tokens with its own keys and sessions with its own store.
		svc.UseKeys(ring.VerificationKeys())
		svc.UseSessions(authn.SessionsFunc(api.Active))
		svc.Server.Mount(authv1connect.NewAuthServiceHandler(api, svc.Server.HandlerOptions()...))
		svc.Server.Handle("GET "+authn.JWKSPath, http.HandlerFunc(api.ServeJWKS))
		return nil
	}, service.WithVersion(version))
}
