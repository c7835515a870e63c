// Command authz runs the authorization service: roles, bindings and permission checks
// answered from an in-memory index.
package main

import (
	"context"
	"os"
	"time"

	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/permission"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/services/authz/internal/handler"
	"github.com/basaltplatform/basalt/services/authz/internal/index"
	"github.com/basaltplatform/basalt/services/authz/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// settings is the authz service's configuration.
type settings struct {
	config.Service
	// ReloadEvery is how often the index reloads regardless of notifications.
	ReloadEvery time.Duration
	// SyncTimeout bounds the wait for each other instance when a change is broadcast.
	SyncTimeout time.Duration
}

func load(args []string, lookup func(string) (string, bool)) (settings, error) {
	var s settings
	l := config.NewLoader("authz", args, lookup)
	s.Service.Bind(l, "authz")
	l.Duration(&s.ReloadEvery, "reload-every", "BASALT_AUTHZ_RELOAD_EVERY", 30*time.Second, "how often the index reloads regardless of notifications")
	l.Duration(&s.SyncTimeout, "sync-timeout", "BASALT_AUTHZ_SYNC_TIMEOUT", 2*time.Second, "wait for each other instance when a change is broadcast")
	_ = l.Load()
	s.Service.Check(l)
	l.Check(s.ReloadEvery >= time.Second, "BASALT_AUTHZ_RELOAD_EVERY", "must be at least 1s")
	l.Check(s.SyncTimeout > 0, "BASALT_AUTHZ_SYNC_TIMEOUT", "must be positive")
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
		ix := index.New()
		var listener index.Listener
		if svc.DB.Dialect() == "postgres" {
			listener = svc.DB
		}
		syncer := index.NewSyncer(ix, st, handler.NewPeers(svc.RPC, cfg.SyncTimeout), listener, store.Channel, cfg.ReloadEvery, svc.Log)
		if err := syncer.CatchUp(ctx, 0); err != nil {
			return err
		}
		svc.Go(syncer.Run)
		// The authz service checks its own methods' permissions against its own index.
		svc.UseChecker(permission.CheckerFunc(ix.Allowed))
		// The identity service says which administrators are active before the admin role is revoked.
		users := rpcclient.For(svc.RPC, "identity", identityv1connect.NewIdentityServiceClient)
		svc.Server.Mount(authzv1connect.NewAuthzServiceHandler(handler.New(st, ix, syncer, svc.Outbox, users), svc.Server.HandlerOptions()...))
		return nil
	}, service.WithVersion(version))
}
