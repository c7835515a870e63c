// Package service assembles the platform plumbing every service process needs from its
// configuration: logger, telemetry, its database and outbox, discovery (Consul or static),
// service credentials, a client factory for other services, authentication and permission
// checks, and its server. A service's main loads its config, calls New, wires its own store
// and handlers explicitly, and calls Run.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"

	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/logging"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/permission"
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
	// DB is the service's own database (nil for WithoutDatabase).
	DB *database.DB
	// Outbox records audit events in DB; nil for WithoutOutbox.
	Outbox *outbox.Outbox
	// Recorder records audit events outside a transaction: the outbox, or what UseRecorder set.
	Recorder outbox.Recorder
	// Resolver finds other services.
	Resolver discovery.Resolver
	// Tokens are this service's credentials towards other services.
	Tokens *authn.ServiceTokens
	// RPC makes clients of other services.
	RPC *rpcclient.Client
	// Guard checks permissions for handlers and records denials.
	Guard *permission.Guard
	// Server is the service's RPC server; mount handlers on it before Run.
	Server *server.Server

	authn      *authn.Interceptor
	closers    []func(context.Context) error
	background []func(context.Context)
}

type options struct {
	version       string
	serverOpts    []server.Option
	rpcOpts       []rpcclient.Option
	withoutDB     bool
	keys          authn.Keys
	sessions      authn.Sessions
	checker       permission.Checker
	withoutOutbox bool
	telOpts       []telemetry.Option
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

// WithTelemetryOptions adds options to the service's telemetry: tests record its spans with
// telemetry.WithSpanProcessor.
func WithTelemetryOptions(opts ...telemetry.Option) Option {
	return func(o *options) { o.telOpts = append(o.telOpts, opts...) }
}

// WithoutDatabase builds a service that owns no database (the gateway).
func WithoutDatabase() Option { return func(o *options) { o.withoutDB = true } }

// WithoutOutbox builds no outbox and no relay: the audit service appends its own events to its
// log and sets its recorder with UseRecorder.
func WithoutOutbox() Option { return func(o *options) { o.withoutOutbox = true } }

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
	if cfg.HTTP.AdminListen != "" {
		telOpts = append(telOpts, telemetry.WithPrometheus())
	}
	telOpts = append(telOpts,
		telemetry.WithSampleRatio(cfg.Telemetry.SampleRatio),
		telemetry.WithAttributes(attribute.String("service.instance.id", instanceID)),
	)
	if s.Telemetry, err = telemetry.New(ctx, cfg.Name, o.version, append(telOpts, o.telOpts...)...); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	s.closers = append(s.closers, s.Telemetry.Shutdown)

	if !o.withoutDB {
		if s.DB, err = database.Open(ctx, cfg.Database, database.WithLogger(s.Log), database.WithApplicationName("basalt-"+cfg.Name), database.WithTelemetry(s.Telemetry)); err != nil {
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

	var tokenOpts []authn.ServiceTokensOption
	if accepted := cfg.Auth.InternalSecretAccepted; accepted.IsSet() {
		tokenOpts = append(tokenOpts, authn.WithAcceptedSecret([]byte(accepted.Reveal())))
	}
	if s.Tokens, err = authn.NewServiceTokens(cfg.Name, []byte(cfg.Auth.InternalSecret.Reveal()), tokenOpts...); err != nil {
		return nil, err
	}
	rpcOpts := append([]rpcclient.Option{
		rpcclient.WithLogger(s.Log),
		rpcclient.WithTelemetry(s.Telemetry),
		rpcclient.WithInterceptors(authn.NewClientCredentials(s.Tokens)),
	}, o.rpcOpts...)
	if s.RPC, err = rpcclient.New(s.Resolver, rpcOpts...); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func(context.Context) error { s.RPC.Close(); return nil })

	if err := s.setUpOutbox(ctx, o); err != nil {
		return nil, err
	}

	// By default users are verified with the auth service's published keys, sessions checked
	// with the auth service, and permissions with the authz service; those services replace
	// their own with UseKeys, UseSessions and UseChecker.
	keys := authn.NewJWKS(authn.HTTPFetcher(s.RPC.HTTPClient("auth"), rpcclient.BaseURL("auth")+authn.JWKSPath))
	s.authn = authn.NewInterceptor(authn.NewVerifier(keys, cfg.Auth.Issuer, cfg.Auth.Audience), s.Tokens, authn.WithLogger(s.Log))
	if cfg.Auth.SessionCheck {
		auth := rpcclient.For(s.RPC, "auth", authv1connect.NewAuthServiceClient)
		s.authn.SetSessions(authn.NewCachedSessions(func(ctx context.Context, sid string) (bool, error) {
			res, err := auth.CheckSession(ctx, connect.NewRequest(&authv1.CheckSessionRequest{SessionId: sid}))
			if err != nil {
				return false, err
			}
			return res.Msg.GetActive(), nil
		}, 10_000, cfg.Auth.SessionCacheTTL))
	}
	checker := permission.NewRemote(rpcclient.For(s.RPC, "authz", authzv1connect.NewAuthzServiceClient), 10_000, cfg.Auth.PermissionCacheTTL)
	s.Guard = permission.NewGuard(cfg.Name, checker, s.Recorder, s.Log)

	serverOpts := []server.Option{
		server.WithLogger(s.Log),
		server.WithTelemetry(s.Telemetry),
		server.WithRegistrar(registrar),
		server.WithInstanceID(instanceID),
		server.WithVersion(o.version),
		server.WithInterceptors(s.authn, permission.NewInterceptor(s.Guard)),
	}
	if s.DB != nil {
		serverOpts = append(serverOpts, server.WithReadinessCheck("database", s.DB.Ping))
	}
	if h := s.Telemetry.MetricsHandler(); h != nil {
		serverOpts = append(serverOpts, server.WithMetrics(h))
	}
	if s.Server, err = server.New(cfg.Name, cfg.HTTP, append(serverOpts, o.serverOpts...)...); err != nil {
		return nil, err
	}
	return s, nil
}

// setUpOutbox gives the service an outbox in its database, relayed to the audit service
// while the service runs, as its recorder of audit events.
func (s *Service) setUpOutbox(ctx context.Context, o options) error {
	if o.withoutOutbox || s.DB == nil {
		return nil
	}
	s.Outbox = outbox.New(s.DB, s.Config.Name, outbox.WithLogger(s.Log), outbox.WithTracerProvider(s.Telemetry.TracerProvider()))
	if err := s.Outbox.Migrate(ctx); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	backlog, err := s.Outbox.ObserveBacklog(s.Telemetry.MeterProvider())
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	// Closed before the database, which the backlog's metrics read.
	s.closers = append(s.closers, func(context.Context) error { return backlog.Unregister() })
	s.Recorder = s.Outbox
	audit := rpcclient.For(s.RPC, "audit", auditv1connect.NewAuditServiceClient)
	relay := outbox.RelayOptions{Interval: s.Config.Outbox.Interval, BatchSize: s.Config.Outbox.BatchSize, MaxBackoff: s.Config.Outbox.MaxBackoff}
	s.Go(func(ctx context.Context) { s.Outbox.Relay(ctx, audit, relay) })
	return nil
}

// UseKeys verifies access tokens with keys (the auth service's own key ring) instead of the
// published JWKS. Call it before Run.
func (s *Service) UseKeys(keys authn.Keys) {
	s.authn.SetVerifier(authn.NewVerifier(keys, s.Config.Auth.Issuer, s.Config.Auth.Audience))
}

// UseSessions checks sessions with sessions (the auth service's own store) instead of asking
// the auth service. Call it before Run.
func (s *Service) UseSessions(sessions authn.Sessions) {
	if s.Config.Auth.SessionCheck {
		s.authn.SetSessions(sessions)
	}
}

// UseChecker checks permissions with c (the authz service's own index) instead of asking the
// authz service. Call it before Run.
func (s *Service) UseChecker(c permission.Checker) { s.Guard.SetChecker(c) }

// UseRecorder makes r the service's recorder of audit events, for the guard's denials too.
func (s *Service) UseRecorder(r outbox.Recorder) {
	s.Recorder = r
	s.Guard.SetRecorder(r)
}

// Go runs fn in the background while the service serves. Its context is canceled once the
// server has drained, before anything New built is closed.
func (s *Service) Go(fn func(ctx context.Context)) { s.background = append(s.background, fn) }

// Run serves until ctx is done, drains, stops the background work, and then closes everything
// New built, last built first, so the database outlives the requests that use it.
func (s *Service) Run(ctx context.Context) error {
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, fn := range s.background {
		wg.Go(func() { fn(bgCtx) })
	}
	runErr := s.Server.Run(ctx)
	stopBackground()
	wg.Wait()
	return errors.Join(runErr, s.Close(ctx))
}

// Ready is closed once the server listens and is registered.
func (s *Service) Ready() <-chan struct{} { return s.Server.Ready() }

// OnClose registers fn to run when the service closes, before what New built.
func (s *Service) OnClose(fn func(context.Context) error) { s.closers = append(s.closers, fn) }

// Close releases everything New built, for a service that stops without serving (a failed
// migration, say). Run calls it itself.
func (s *Service) Close(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return s.close(cctx)
}

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
