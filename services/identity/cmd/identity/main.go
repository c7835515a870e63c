// Command identity runs the identity service: users, their passwords, and credential checks.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/services/identity/internal/grants"
	"github.com/basaltplatform/basalt/services/identity/internal/handler"
	"github.com/basaltplatform/basalt/services/identity/internal/password"
	"github.com/basaltplatform/basalt/services/identity/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// settings is the identity service's configuration.
type settings struct {
	config.Service
	AdminEmail      string
	AdminPassword   config.Secret
	Lockout         store.Lockout
	HashConcurrency int
}

func load(args []string, lookup func(string) (string, bool)) (settings, error) {
	var s settings
	l := config.NewLoader("identity", args, lookup)
	s.Service.Bind(l, "identity")
	l.String(&s.AdminEmail, "admin-email", "BASALT_ADMIN_EMAIL", "", "email of the bootstrap administrator, created at start-up when missing")
	l.Secret(&s.AdminPassword, "admin-password", "BASALT_ADMIN_PASSWORD", "password of the bootstrap administrator when it is created")
	l.Int(&s.Lockout.MaxFailures, "lockout-failures", "BASALT_LOCKOUT_FAILURES", 5, "failed checks that lock an email")
	l.Duration(&s.Lockout.Window, "lockout-window", "BASALT_LOCKOUT_WINDOW", 15*time.Minute, "window the failures are counted in")
	l.Duration(&s.Lockout.Duration, "lockout-duration", "BASALT_LOCKOUT_DURATION", 15*time.Minute, "how long a locked email stays locked")
	l.Int(&s.HashConcurrency, "hash-concurrency", "BASALT_HASH_CONCURRENCY", runtime.GOMAXPROCS(0)*2, "password hashes computed at once (each holds 19 MiB)")
	_ = l.Load()
	s.Service.Check(l)
	l.Check(s.Lockout.MaxFailures >= 1, "BASALT_LOCKOUT_FAILURES", "must be at least 1")
	l.Check(s.Lockout.Window > 0 && s.Lockout.Duration > 0, "BASALT_LOCKOUT_WINDOW", "window and duration must be positive")
	l.Check(s.HashConcurrency >= 1, "BASALT_HASH_CONCURRENCY", "must be at least 1")
	return s, l.Err()
}

func main() {
	cfg, err := load(os.Args[1:], os.LookupEnv)
	service.ExitOnConfigError(err)
	service.Main(cfg.Service, func(ctx context.Context, svc *service.Service) error {
		st := store.New(svc.DB, svc.Outbox)
		if err := st.Migrate(ctx, migrate.WithLogger(svc.Log)); err != nil {
			return err
		}
		auth := rpcclient.For(svc.RPC, "auth", authv1connect.NewAuthServiceClient)
		authz := rpcclient.For(svc.RPC, "authz", authzv1connect.NewAuthzServiceClient)
		api := handler.New(st, password.NewHasher(password.Default, cfg.HashConcurrency), svc.Guard, svc.Outbox, auth, authz,
			handler.WithLockout(cfg.Lockout),
			handler.WithGrantDelivery(func(ctx context.Context) error { return grants.DeliverDue(ctx, st, authz, svc.Log) }))
		if cfg.AdminEmail != "" {
			// The bootstrap acts as the identity service itself, which is what its audit event says.
			admin, created, err := api.Bootstrap(authn.WithCaller(ctx, "identity"), cfg.AdminEmail, cfg.AdminPassword.Reveal())
			if err != nil {
				return fmt.Errorf("the bootstrap administrator %s: %w", cfg.AdminEmail, err)
			}
			svc.Log.Info("bootstrap administrator", "email", admin.Email, "created", created)
		}
		svc.Go(func(ctx context.Context) { grants.Relay(ctx, st, authz, time.Second, svc.Log) })
		svc.Server.Mount(identityv1connect.NewIdentityServiceHandler(api, svc.Server.HandlerOptions()...))
		return nil
	}, service.WithVersion(version))
}
