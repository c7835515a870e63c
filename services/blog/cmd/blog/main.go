// Command blog runs the blog service: posts that members write and anyone may read, the
// platform's reference business service.
package main

import (
	"context"
	"os"

	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/services/blog/internal/handler"
	"github.com/basaltplatform/basalt/services/blog/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg, err := service.LoadConfig("blog", os.Args[1:], os.LookupEnv)
	service.ExitOnConfigError(err)
	service.Main(cfg, func(ctx context.Context, svc *service.Service) error {
		st := store.New(svc.DB, svc.Outbox)
		if err := st.Migrate(ctx, migrate.WithLogger(svc.Log)); err != nil {
			return err
		}
		api := handler.New(st, svc.Guard, svc.Outbox)
		svc.Server.Mount(blogv1connect.NewBlogServiceHandler(api, svc.Server.HandlerOptions()...))
		return nil
	}, service.WithVersion(version))
}
