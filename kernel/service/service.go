// Package service assembles the platform plumbing every service process needs from its
// configuration: logger, telemetry, its database, discovery (Consul or static), a client
// factory for other services, and its server. A service's main loads its config, calls New,
// wires its own store and handlers explicitly, and calls Run.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/logging"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/telemetry"
)

// Service is one running service process's plumbing.
type Service struct {
	// Config is the shared configuration the service was built from.
	Config config.Service
	// Log is the process logger.
	Log *slog.Logger
	// Telemetry holds the trace and metric providers.
	Telemetry *telemetry.Telemetry
	// DB is the service's own database.
	DB *database.DB
	// Resolver finds other services.
	Resolver discovery.Resolver
	// RPC makes clients of other services.
	RPC *rpcclient.Client
	// Server is the service's RPC server; mount handlers on it before Run.
	Server *server.Server

	closers []func(context.Context) error
}

type options struct {
	version    string
	serverOpts []server.Option
	rpcOpts    []rpcclient.Option
	withoutDB  bool
}

// Option configures New.
type Option func(*options)

// WithVersion sets the version reported in telemetry and discovery.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithServerOptions adds server options (interceptors, readiness checks).
func WithServerOptions(opts ...server.Option) Option {
	return func(o *options) { o.serverOpts = append(o.serverOpts, opts...) }
}

// WithRPCOptions adds options to the client factory.
func WithRPCOptions(opts ...rpcclient.Option) Option {
	return func(o *options) { o.rpcOpts = append(o.rpcOpts, opts...) }
}

// WithoutDatabase builds a service that owns no database (the gateway).
func WithoutDatabase() Option { return func(o *options) { o.withoutDB = true } }

// New builds the plumbing, logging to logOut. On error everything built so far is closed again.
func New(ctx context.Context, cfg config.Service, logOut io.Writer, opts ...Option) (_ *Service, err error) {
	o := options{version: "dev"}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Service{Config: cfg}
	defer func() {
		if err != nil {
			_ = s.close(context.WithoutCancel(ctx))
		}
	}()
	instanceID := discovery.NewInstanceID(cfg.Name)
	format := logging.Format(cfg.Log.Format)
	if format == logging.FormatAuto && cfg.Environment == "production" {
		// Production logs go to a collector even when someone attaches a terminal.
		format = logging.FormatJSON
	}
	s.Log = logging.New(logOut,
		logging.WithLevel(cfg.Log.Level),
		logging.WithFormat(format),
		logging.WithAttrs(slog.String("service", cfg.Name), slog.String("instance", instanceID)),
	)

	var telOpts []telemetry.Option
	if cfg.Telemetry.OTLPEndpoint != "" {
		telOpts = append(telOpts, telemetry.WithOTLPEndpoint(cfg.Telemetry.OTLPEndpoint))
	}
	telOpts = append(telOpts,
		telemetry.WithSampleRatio(cfg.Telemetry.SampleRatio),
		telemetry.WithAttributes(attribute.String("service.instance.id", instanceID)),
	)
	if s.Telemetry, err = telemetry.New(ctx, cfg.Name, o.version, telOpts...); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	s.closers = append(s.closers, s.Telemetry.Shutdown)

	if !o.withoutDB {
		if s.DB, err = database.Open(ctx, cfg.Database, database.WithLogger(s.Log), database.WithApplicationName("basalt-"+cfg.Name)); err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		s.closers = append(s.closers, func(context.Context) error { s.DB.Close(); return nil })
	}

	var registrar discovery.Registrar = discovery.NopRegistrar{}
	if cfg.Discovery.UsesConsul() {
		consul, err := discovery.NewConsul(cfg.Discovery.ConsulAddr,
			discovery.WithToken(cfg.Discovery.ConsulToken.Reveal()),
			discovery.WithCheck(cfg.Discovery.CheckInterval, cfg.Discovery.CheckTimeout, cfg.Discovery.DeregisterAfter),
			discovery.WithConsulLogger(s.Log),
		)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func(context.Context) error { consul.Close(); return nil })
		registrar, s.Resolver = consul, consul
	} else {
		static, err := discovery.NewStatic(cfg.Discovery.Static)
		if err != nil {
			return nil, err
		}
		s.Resolver = static
	}

	rpcOpts := append([]rpcclient.Option{rpcclient.WithLogger(s.Log), rpcclient.WithTelemetry(s.Telemetry)}, o.rpcOpts...)
	if s.RPC, err = rpcclient.New(s.Resolver, rpcOpts...); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func(context.Context) error { s.RPC.Close(); return nil })

	serverOpts := []server.Option{
		server.WithLogger(s.Log),
		server.WithTelemetry(s.Telemetry),
		server.WithRegistrar(registrar),
		server.WithInstanceID(instanceID),
		server.WithVersion(o.version),
	}
	if s.DB != nil {
		serverOpts = append(serverOpts, server.WithReadinessCheck("database", s.DB.Ping))
	}
	if s.Server, err = server.New(cfg.Name, cfg.HTTP, append(serverOpts, o.serverOpts...)...); err != nil {
		return nil, err
	}
	return s, nil
}

// Run serves until ctx is done, drains, and then closes everything New built, last built
// first, so the database outlives the requests that use it.
func (s *Service) Run(ctx context.Context) error {
	runErr := s.Server.Run(ctx)
	return errors.Join(runErr, s.Close(ctx))
}

// Close releases everything New built, for a service that stops without serving (a failed
// migration, say). Run calls it itself.
func (s *Service) Close(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return s.close(cctx)
}

// OnClose registers fn to run when the service closes, before what New built (a relay that
// must stop before the database closes, for example).
func (s *Service) OnClose(fn func(context.Context) error) { s.closers = append(s.closers, fn) }

func (s *Service) close(ctx context.Context) error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i](ctx))
	}
	s.closers = nil
	return errors.Join(errs...)
}

// LoadConfig loads the shared configuration of the named service from args and the
// environment; services with settings of their own bind them on a Loader instead.
func LoadConfig(name string, args []string, lookup func(string) (string, bool)) (config.Service, error) {
	var cfg config.Service
	l := config.NewLoader(name, args, lookup)
	cfg.Bind(l, name)
	_ = l.Load()
	cfg.Check(l)
	return cfg, l.Err()
}
