// Package server runs a service's one port: Connect, gRPC and gRPC-Web over HTTP/1.1 and
// h2c, gRPC health and reflection, /healthz and /readyz, the kernel's interceptors, timeouts
// and size limits, registration in discovery, and graceful shutdown. When configured, an admin
// listener of its own serves /metrics beside /healthz and /readyz (admin.go).
//
// The lifecycle is listen, register, serve; on shutdown the instance first reports itself not
// ready and deregisters, so callers stop choosing it, then drains in-flight requests within a
// timeout. Only then does Run return, and main closes the database.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	// Reflection resolves files through the global registry: google.rpc.Status is registered
	// there by this import and the error details by errors.go's, so that grpcurl can ask for
	// them to decode an error's BadRequest or RetryInfo.
	_ "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/clientinfo"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/requestid"
	"github.com/basaltplatform/basalt/kernel/telemetry"
)

// Server is one service's RPC server.
type Server struct {
	name string
	cfg  config.HTTP
	o    options
	mux  *http.ServeMux

	services []string
	health   *grpchealth.StaticChecker
	draining atomic.Bool

	handlerOpts []connect.HandlerOption
	inflight    sync.WaitGroup
	ready       chan struct{}
	addr        atomic.Pointer[net.TCPAddr]
	adminAddr   atomic.Pointer[net.TCPAddr]
	instance    discovery.Instance
	mountOnce   sync.Once
}

type options struct {
	log          *slog.Logger
	tel          *telemetry.Telemetry
	registrar    discovery.Registrar
	listener     net.Listener
	admin        net.Listener
	metrics      http.Handler
	checks       []readinessCheck
	interceptors []connect.Interceptor
	instanceID   string
	version      string
}

type readinessCheck struct {
	name string
	fn   func(context.Context) error
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithTelemetry enables OpenTelemetry tracing and metrics of every RPC.
func WithTelemetry(t *telemetry.Telemetry) Option { return func(o *options) { o.tel = t } }

// WithRegistrar registers the instance in discovery while it serves.
func WithRegistrar(r discovery.Registrar) Option { return func(o *options) { o.registrar = r } }

// WithListener serves on ln instead of listening on the configured address.
func WithListener(ln net.Listener) Option { return func(o *options) { o.listener = ln } }

// WithAdminListener serves the admin endpoints on ln instead of the configured address
// (config.HTTP.AdminListen).
func WithAdminListener(ln net.Listener) Option { return func(o *options) { o.admin = ln } }

// WithMetrics serves h at /metrics on the admin listener.
func WithMetrics(h http.Handler) Option { return func(o *options) { o.metrics = h } }

// WithReadinessCheck adds a check /readyz runs; the instance is ready only while every check
// passes. A database ping is the usual one.
func WithReadinessCheck(name string, fn func(context.Context) error) Option {
	return func(o *options) { o.checks = append(o.checks, readinessCheck{name, fn}) }
}

// WithInterceptors adds interceptors that run after the kernel's (authentication and
// authorization, for example), closest to the handler.
func WithInterceptors(i ...connect.Interceptor) Option {
	return func(o *options) { o.interceptors = append(o.interceptors, i...) }
}

// WithInstanceID sets the discovery instance id (default: the name and random bits).
func WithInstanceID(id string) Option { return func(o *options) { o.instanceID = id } }

// WithVersion sets the version published in discovery metadata.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// New returns a server for the named service. Mount its handlers, then call Run.
func New(name string, cfg config.HTTP, opts ...Option) (*Server, error) {
	o := options{log: slog.New(slog.DiscardHandler), version: "dev"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.instanceID == "" {
		o.instanceID = discovery.NewInstanceID(name)
	}
	s := &Server{
		name:   name,
		cfg:    cfg,
		o:      o,
		mux:    http.NewServeMux(),
		health: grpchealth.NewStaticChecker(),
		ready:  make(chan struct{}),
	}
	// The order is outermost first: tracing sees the code the client sees, the call
	// interceptor maps errors and logs, extra interceptors (authn, authz) run next, and
	// recovery sits closest to the handler so a panic becomes an ordinary error for all of
	// them.
	var interceptors []connect.Interceptor
	if o.tel != nil {
		otel, err := otelconnect.NewInterceptor(
			otelconnect.WithTracerProvider(o.tel.TracerProvider()),
			otelconnect.WithMeterProvider(o.tel.MeterProvider()),
			otelconnect.WithPropagator(o.tel.Propagator()),
			// Services sit behind the gateway and other services of the platform, so a remote
			// parent span is ours: continue its trace instead of only linking to it.
			otelconnect.WithTrustRemote(),
		)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		interceptors = append(interceptors, otel)
	}
	interceptors = append(interceptors, callInterceptor{log: o.log})
	interceptors = append(interceptors, o.interceptors...)
	interceptors = append(interceptors, recoverInterceptor{log: o.log})
	s.handlerOpts = []connect.HandlerOption{
		connect.WithInterceptors(interceptors...),
		connect.WithReadMaxBytes(cfg.MaxMessageBytes),
		connect.WithSendMaxBytes(cfg.MaxMessageBytes),
		connect.WithCompressMinBytes(1024),
	}
	s.handlerOpts = append(s.handlerOpts, jsonCodecs()...)
	s.mux.HandleFunc("GET /healthz", s.serveHealthz)
	s.mux.HandleFunc("GET /readyz", s.serveReadyz)
	return s, nil
}

// HandlerOptions returns the options every Connect handler of this server must be built with:
// the kernel's interceptors, the message size limits and its JSON codec.
func (s *Server) HandlerOptions() []connect.HandlerOption { return s.handlerOpts }

// Mount serves a generated Connect handler; its arguments are what the generated
// New<Service>Handler constructor returns. The service is added to gRPC health and reflection.
func (s *Server) Mount(path string, h http.Handler) {
	s.services = append(s.services, strings.Trim(path, "/"))
	s.mux.Handle(path, h)
}

// Handle serves a plain HTTP route (the JWKS document, for example).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Ready is closed once the server is listening and registered.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on; it is valid once Ready is closed.
func (s *Server) Addr() *net.TCPAddr { return s.addr.Load() }

// AdminAddr returns the address of the admin listener, or nil when it is off; it is valid once
// Ready is closed.
func (s *Server) AdminAddr() *net.TCPAddr { return s.adminAddr.Load() }

// URL returns the server's base URL; it is valid once Ready is closed.
func (s *Server) URL() string { return "http://" + s.Addr().String() }

// Instance returns what the server registered in discovery; it is valid once Ready is closed.
func (s *Server) Instance() discovery.Instance { return s.instance }

func (s *Server) mountCommon() {
	for _, svc := range s.services {
		s.health.SetStatus(svc, grpchealth.StatusServing)
	}
	s.health.SetStatus("", grpchealth.StatusServing)
	s.mux.Handle(grpchealth.NewHandler(s.health, s.handlerOpts...))
	// Reflection lists the mounted services and describes any file linked into the binary,
	// the error details' among them.
	reflector := grpcreflect.NewStaticReflector(s.services...)
	s.mux.Handle(grpcreflect.NewHandlerV1(reflector, s.handlerOpts...))
	s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, s.handlerOpts...))
}

// Run listens, registers in discovery and serves until ctx is done; then it drains and
// returns. It returns an error only when the server could not start or failed while serving.
func (s *Server) Run(ctx context.Context) error {
	s.mountOnce.Do(s.mountCommon)
	ln := s.o.listener
	if ln == nil {
		var err error
		ln, err = s.cfg.Inherited.Listen(s.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("server: listen on %s: %w", s.cfg.ListenAddr, err)
		}
	}
	admin, err := s.listenAdmin()
	if err != nil {
		ln.Close()
		return err
	}
	closeListeners := func() {
		ln.Close()
		if admin != nil {
			admin.Close()
		}
	}
	tcpAddr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		closeListeners()
		return fmt.Errorf("server: %s is not a TCP address", ln.Addr())
	}
	s.addr.Store(tcpAddr)
	if admin != nil {
		adminAddr, ok := admin.Addr().(*net.TCPAddr)
		if !ok {
			closeListeners()
			return fmt.Errorf("server: %s is not a TCP address (admin)", admin.Addr())
		}
		s.adminAddr.Store(adminAddr)
	}
	inst, err := s.describe(tcpAddr)
	if err != nil {
		closeListeners()
		return err
	}
	s.instance = inst

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s.middleware(s.mux),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		Protocols:         protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 256,
			// Pings find dead peers on long-lived streams.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(s.o.log.Handler(), slog.LevelWarn),
	}

	if s.o.registrar != nil {
		if err := s.o.registrar.Register(ctx, inst); err != nil {
			closeListeners()
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	attrs := []any{"addr", tcpAddr.String()}
	if admin != nil {
		adminSrv := s.adminServer()
		adminDone := s.serveAdmin(adminSrv, admin)
		// The admin listener outlives the drain, so the last scrape sees how it went.
		defer func() {
			_ = adminSrv.Close()
			<-adminDone
		}()
		attrs = append(attrs, "admin", admin.Addr().String())
	}
	close(s.ready)
	s.o.log.Info("serving", attrs...)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	s.shutdown(ctx, srv, inst)
	if serveErr == nil {
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("server: %w", serveErr)
}

// shutdown reports not ready, deregisters, keeps serving for the drain delay, then stops
// accepting and waits for in-flight requests up to the shutdown timeout.
func (s *Server) shutdown(ctx context.Context, srv *http.Server, inst discovery.Instance) {
	base := context.WithoutCancel(ctx)
	s.draining.Store(true)
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, svc := range s.services {
		s.health.SetStatus(svc, grpchealth.StatusNotServing)
	}
	if s.o.registrar != nil {
		dctx, cancel := context.WithTimeout(base, 5*time.Second)
		if err := s.o.registrar.Deregister(dctx, inst); err != nil {
			s.o.log.Warn("deregistration failed; the health check will take the instance out", "error", err)
		}
		cancel()
	}
	if s.cfg.DrainDelay > 0 {
		time.Sleep(s.cfg.DrainDelay)
	}
	sctx, cancel := context.WithTimeout(base, s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.o.log.Warn("drain timed out; closing remaining connections", "timeout", s.cfg.ShutdownTimeout)
		_ = srv.Close()
		// Closing the connections cancels the handlers' contexts; wait a moment for them to
		// return, so nothing the caller closes next (the database) is still in use.
		done := make(chan struct{})
		go func() { s.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.o.log.Error("handlers still running after their connections closed")
		}
		return
	}
	s.o.log.Info("drained")
}

func (s *Server) describe(addr *net.TCPAddr) (discovery.Instance, error) {
	hostPort := s.cfg.AdvertiseAddr
	if hostPort == "" {
		hostPort = addr.String()
	}
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return discovery.Instance{}, fmt.Errorf("server: advertise address %q: %w", hostPort, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port == 0 {
		port = addr.Port
	}
	base := "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	return discovery.Instance{
		ID:        s.o.instanceID,
		Service:   s.name,
		Host:      host,
		Port:      port,
		HealthURL: base + "/readyz",
		Tags:      []string{"connect", "grpc", "grpc-web"},
		Meta:      map[string]string{"version": s.o.version},
		Ready:     s.isReady,
	}, nil
}

// middleware sets the request id (propagated or new) on the context, and on the response when
// the server made it: a caller that sent one knows it, and the gateway answers its clients with
// its own. It notes the client's address and user agent, and keeps the caller's bearer token
// on the context so calls to other services can forward it.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		id := requestid.Sanitize(r.Header.Get(requestid.Header))
		if id == "" {
			id = requestid.New()
			r.Header.Set(requestid.Header, id)
			// Only an id the caller did not send is news to it. An answer that does not echo the
			// caller's id is the same bytes from one call to the next but for its date, which the
			// gateway's lean client takes whole (ADR-0043).
			w.Header().Set(requestid.Header, id)
		}
		ctx := requestid.With(r.Context(), id)
		ctx = clientinfo.With(ctx, clientinfo.FromRequest(r))
		if tok := authn.BearerToken(r.Header.Get("Authorization")); tok != "" {
			ctx = authn.WithToken(ctx, tok)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// serveReadyz answers 200 only when the server is not draining and every readiness check
// passes. Failing checks are named, their errors only logged.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"draining"}`))
		return
	}
	if failing := s.failing(r.Context()); len(failing) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"not ready","failing":[` + strings.Join(failing, ",") + `]}`))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}`))
}

// isReady reports what /readyz would: not draining and every readiness check passing.
func (s *Server) isReady(ctx context.Context) bool {
	return !s.draining.Load() && len(s.failing(ctx)) == 0
}

// failing runs the readiness checks and returns the names of those that fail, quoted for JSON.
func (s *Server) failing(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var failing []string
	for _, c := range s.o.checks {
		if err := c.fn(ctx); err != nil {
			s.o.log.WarnContext(ctx, "readiness check failed", "check", c.name, "error", err)
			failing = append(failing, strconv.Quote(c.name))
		}
	}
	return failing
}
