// Command gateway runs the API gateway, the platform's one entry for external traffic.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"

	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/logging"
	"github.com/basaltplatform/basalt/kernel/telemetry"

	"github.com/basaltplatform/basalt/gateway/internal/accesslog"
	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/gateway"
	"github.com/basaltplatform/basalt/gateway/internal/ratelimit"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg, err := config.Load(os.Args[1:], os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, cfg, os.Stderr)
	stop()
	os.Exit(code)
}

// run builds the gateway's dependencies from cfg, serves until ctx is done, and returns the
// exit status.
func run(ctx context.Context, cfg config.Config, logOut io.Writer) int {
	instanceID := discovery.NewInstanceID("gateway")
	format := logging.Format(cfg.Log.Format)
	if format == logging.FormatAuto && cfg.Environment == "production" {
		format = logging.FormatJSON
	}
	// Access log lines are written in batches, as nginx's buffered access_log does: a system
	// call per request would cost more than the rest of the logging.
	buffered := logging.NewBufferedWriter(logOut, 64<<10, 200*time.Millisecond)
	defer buffered.Close()
	log := logging.New(buffered,
		logging.WithLevel(cfg.Log.Level),
		logging.WithFormat(format),
		logging.WithAttrs(slog.String("service", "gateway"), slog.String("instance", instanceID)),
	)
	// The access log is written straight to the buffer as JSON, in the layout of the other lines,
	// unless the logs are text for a person to read.
	var access accesslog.Writer = accesslog.Slog{Logger: log}
	if format != logging.FormatText {
		access = accesslog.New(buffered,
			accesslog.WithLevel(cfg.Log.Level),
			accesslog.WithField("service", "gateway"),
			accesslog.WithField("instance", instanceID),
		)
	}
	if err := serve(ctx, cfg, log, access, instanceID); err != nil {
		log.Error("gateway stopped with an error", "error", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger, access accesslog.Writer, instanceID string) error {
	opts := []gateway.Option{
		gateway.WithLogger(log),
		gateway.WithAccessLog(access),
		gateway.WithVersion(version),
		gateway.WithInstanceID(instanceID),
	}
	if cfg.Telemetry.OTLPEndpoint != "" {
		tel, err := telemetry.New(ctx, "gateway", version,
			telemetry.WithOTLPEndpoint(cfg.Telemetry.OTLPEndpoint),
			telemetry.WithSampleRatio(cfg.Telemetry.SampleRatio),
			telemetry.WithAttributes(attribute.String("service.instance.id", instanceID)),
		)
		if err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = tel.Shutdown(sctx)
		}()
		opts = append(opts, gateway.WithTelemetry(tel))
	}
	if cfg.Discovery.UsesConsul() {
		consul, err := discovery.NewConsul(cfg.Discovery.ConsulAddr,
			discovery.WithToken(cfg.Discovery.ConsulToken.Reveal()),
			discovery.WithCheck(cfg.Discovery.CheckInterval, cfg.Discovery.CheckTimeout, cfg.Discovery.DeregisterAfter),
			discovery.WithConsulLogger(log),
		)
		if err != nil {
			return err
		}
		defer consul.Close()
		opts = append(opts, gateway.WithResolver(consul), gateway.WithRegistrar(consul))
	}
	if u := cfg.RateLimits.RedisURL.Reveal(); u != "" {
		ropts, err := redis.ParseURL(u)
		if err != nil {
			return fmt.Errorf("BASALT_GATEWAY_REDIS_URL: %w", err)
		}
		// A rate-limit decision must not hold a request up: a slow Redis fails open quickly.
		ropts.DialTimeout, ropts.ReadTimeout, ropts.WriteTimeout = time.Second, 100*time.Millisecond, 100*time.Millisecond
		client := redis.NewClient(ropts)
		defer client.Close()
		opts = append(opts, gateway.WithLimiter(ratelimit.NewRedis(client, cfg.RateLimits.RedisPrefix)))
	}
	g, err := gateway.New(cfg, opts...)
	if err != nil {
		return err
	}
	defer g.Close()
	return g.Run(ctx)
}
