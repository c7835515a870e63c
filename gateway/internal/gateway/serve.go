package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/basaltplatform/basalt/kernel/discovery"

	"github.com/basaltplatform/basalt/gateway/internal/h1"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// Ready is closed once the gateway listens (and is registered, when a registrar is set).
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Addr is the address the gateway serves on; valid once Ready is closed.
func (g *Gateway) Addr() *net.TCPAddr { return g.addr.Load() }

// AdminAddr is the address of the admin endpoints, or nil when they are off; valid once Ready
// is closed.
func (g *Gateway) AdminAddr() *net.TCPAddr { return g.adminAddr.Load() }

// Run listens, registers and serves until ctx is done; then it reports itself not ready,
// deregisters, and drains within the shutdown timeout.
func (g *Gateway) Run(ctx context.Context) error {
	ln := g.o.listener
	if ln == nil {
		var err error
		if ln, err = g.cfg.Inherited.Listen(g.cfg.Listen); err != nil {
			return fmt.Errorf("gateway: listen on %s: %w", g.cfg.Listen, err)
		}
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return fmt.Errorf("gateway: %s is not a TCP address", ln.Addr())
	}
	g.addr.Store(addr)
	srv, err := g.server()
	if err != nil {
		ln.Close()
		return err
	}
	// Every client connection, whichever server takes it, is counted against the limit and
	// has its writes bounded.
	ln = &clientListener{
		Listener: ln, max: int64(g.cfg.Limits.MaxConnections), writeTimeout: time.Duration(g.cfg.Limits.WriteTimeout),
		open: &g.conns, refused: g.metrics.RefusedConnection,
	}
	useTLS := srv.TLSConfig != nil
	if useTLS {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}

	admin := g.o.admin
	if admin == nil && g.cfg.AdminListen != "" {
		if admin, err = g.cfg.Inherited.Listen(g.cfg.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("gateway: listen on %s (admin): %w", g.cfg.AdminListen, err)
		}
	}
	var adminSrv *http.Server
	if admin != nil {
		g.adminAddr.Store(admin.Addr().(*net.TCPAddr))
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", g.metrics.Handler())
		mux.HandleFunc("GET /healthz", g.serveHealthz)
		mux.HandleFunc("GET /readyz", g.serveReadyz)
		// Profiles are on the admin listener only, which is loopback unless an operator says
		// otherwise: the gateway's hot path is what most needs measuring in production.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	}

	inst, err := g.instance(addr)
	if err != nil {
		ln.Close()
		if admin != nil {
			admin.Close()
		}
		return err
	}
	if g.o.registrar != nil {
		if err := g.o.registrar.Register(ctx, inst); err != nil {
			ln.Close()
			if admin != nil {
				admin.Close()
			}
			return err
		}
	}
	// Plain-text connections go to the h1 server, which serves unary Connect calls itself and
	// hands every other connection to srv; TLS connections go to srv directly.
	var front frontServer = srv
	serve := srv.Serve
	if !useTLS && !g.cfg.Limits.DisableFastPath {
		fast := h1.New(fastPath{g}, srv,
			h1.WithReadHeaderTimeout(time.Duration(g.cfg.Limits.ReadHeaderTimeout)),
			h1.WithIdleTimeout(time.Duration(g.cfg.Limits.IdleTimeout)),
			h1.WithBodyTimeout(time.Duration(g.cfg.Limits.BodyTimeout)),
			h1.WithWriteTimeout(time.Duration(g.cfg.Limits.WriteTimeout)),
			h1.WithMaxHeaderBytes(g.cfg.Limits.MaxHeaderBytes),
			h1.WithMaxBody(g.cfg.Limits.MaxRequestBytes),
			h1.WithLogger(g.o.log),
		)
		front, serve = fast, fast.Serve
	}
	served := make(chan error, 2)
	go func() { served <- serve(ln) }()
	if adminSrv != nil {
		go func() { served <- adminSrv.Serve(admin) }()
	}
	close(g.ready)
	g.o.log.Info("serving", "addr", addr.String(), "tls", useTLS, "admin", adminAddrString(admin), "routes", len(g.table.Routes()))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	g.shutdown(ctx, front, adminSrv, inst)
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if serveErr != nil {
		return fmt.Errorf("gateway: %w", serveErr)
	}
	return nil
}

func adminAddrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// frontServer is what serves the gateway's listener: net/http's server, or the h1 server in front
// of it.
type frontServer interface {
	Shutdown(context.Context) error
	Close() error
}

// server builds the HTTP server: HTTP/1.1 and HTTP/2 (h2c in plain text, h2 over TLS), with
// the configured header limit and slow-client timeouts.
func (g *Gateway) server() (*http.Server, error) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: time.Duration(g.cfg.Limits.ReadHeaderTimeout),
		IdleTimeout:       time.Duration(g.cfg.Limits.IdleTimeout),
		MaxHeaderBytes:    g.cfg.Limits.MaxHeaderBytes,
		Protocols:         protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      250,
			MaxReceiveBufferPerStream: 1 << 20,
			SendPingTimeout:           30 * time.Second,
			PingTimeout:               15 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(g.o.log.Handler(), slog.LevelWarn),
	}
	if g.cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("gateway: tls: %w", err)
		}
		tc := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		}
		if g.cfg.TLS.ClientCAFile != "" {
			pem, err := os.ReadFile(g.cfg.TLS.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("gateway: tls: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("gateway: tls: no certificate in %s", g.cfg.TLS.ClientCAFile)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		srv.TLSConfig = tc
	}
	return srv, nil
}

func (g *Gateway) instance(addr *net.TCPAddr) (discovery.Instance, error) {
	hostPort := g.cfg.Advertise
	if hostPort == "" {
		hostPort = addr.String()
	}
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return discovery.Instance{}, fmt.Errorf("gateway: advertise address %q: %w", hostPort, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port == 0 {
		port = addr.Port
	}
	scheme := "http"
	if g.cfg.TLS.Enabled() {
		scheme = "https"
	}
	return discovery.Instance{
		ID:        g.o.instanceID,
		Service:   "gateway",
		Host:      host,
		Port:      port,
		HealthURL: scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/readyz",
		Tags:      []string{"gateway"},
		Meta:      map[string]string{"version": g.o.version},
		Ready:     g.isReady,
	}, nil
}

// shutdown stops taking new work: not ready, deregistered, then a drain of in-flight requests
// bounded by the shutdown timeout, after which remaining connections are closed.
func (g *Gateway) shutdown(ctx context.Context, srv frontServer, admin *http.Server, inst discovery.Instance) {
	base := context.WithoutCancel(ctx)
	g.draining.Store(true)
	g.health.SetStatus("", grpchealth.StatusNotServing)
	if g.o.registrar != nil {
		dctx, cancel := context.WithTimeout(base, 5*time.Second)
		if err := g.o.registrar.Deregister(dctx, inst); err != nil {
			g.o.log.Warn("deregistration failed; the health check will take the gateway out", "error", err)
		}
		cancel()
	}
	sctx, cancel := context.WithTimeout(base, time.Duration(g.cfg.Limits.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		g.o.log.Warn("drain timed out; closing remaining connections", "timeout", time.Duration(g.cfg.Limits.ShutdownTimeout))
		_ = srv.Close()
	}
	if admin != nil {
		_ = admin.Close()
	}
	g.o.log.Info("drained")
}

func (g *Gateway) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// serveReadyz answers 200 while the gateway can authenticate and route: the auth service's keys
// are loaded, discovery answers, and every service a route leads to has an instance to call
// (passing, or last known while discovery is unreachable). Otherwise it answers 503 naming what
// fails and which services have no instance; while draining, 503 as well.
func (g *Gateway) serveReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if g.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"draining"}`))
		return
	}
	failing, empty := g.unready(r.Context())
	if len(failing) > 0 || len(empty) > 0 {
		body, _ := json.Marshal(struct {
			Status  string   `json:"status"`
			Failing []string `json:"failing,omitempty"`
			Empty   []string `json:"empty_services,omitempty"`
		}{"not ready", failing, empty})
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(body)
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}`))
}

// isReady reports what /readyz would; it is the state the gateway's registration is made again
// in when discovery lost it.
func (g *Gateway) isReady(ctx context.Context) bool {
	if g.draining.Load() {
		return false
	}
	failing, empty := g.unready(ctx)
	return len(failing) == 0 && len(empty) == 0
}

// unready returns the failing readiness checks ("discovery", "jwks") and the routed services
// that have no instance to call. The checks share one bound of two seconds, so an unreachable
// discovery costs that once, not once per service.
func (g *Gateway) unready(ctx context.Context) (failing, empty []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var discoveryErr error
	for _, name := range g.services {
		eps, err := g.rc.Resolver().Endpoints(ctx, name)
		if err != nil && discoveryErr == nil {
			discoveryErr = err
		}
		if len(eps) == 0 {
			empty = append(empty, name)
		}
	}
	if discoveryErr != nil {
		g.o.log.WarnContext(ctx, "readiness: discovery failed", "error", discoveryErr)
		failing = append(failing, "discovery")
	}
	if len(empty) > 0 {
		g.o.log.WarnContext(ctx, "readiness: services without an instance", "services", empty)
	}
	if g.jwks != nil {
		if err := g.jwks.Ready(ctx); err != nil {
			g.o.log.WarnContext(ctx, "readiness: no signing keys yet", "error", err)
			failing = append(failing, "jwks")
		}
	}
	return failing, empty
}

// serveNotFound answers a path that is neither a procedure nor a REST route.
func (g *Gateway) serveNotFound(w http.ResponseWriter, r *http.Request) {
	g.failREST(w, callFrom(r.Context()), errNoRoute)
}

// startSpan starts the gateway's span of a call. A client's trace context is not trusted to
// parent it (anyone can send one); it is linked instead, so the trace stays the platform's own
// and still leads back to the caller's.
func (g *Gateway) startSpan(ctx context.Context, header propagation.TextMapCarrier, route *routes.Route) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithNewRoot(),
		trace.WithAttributes(
			attribute.String("rpc.system", "connect_rpc"),
			attribute.String("rpc.method", route.Procedure),
			attribute.String("server.upstream", route.Upstream),
		),
	}
	if header.Get("Traceparent") != "" {
		remote := trace.SpanContextFromContext(g.o.tel.Propagator().Extract(ctx, header))
		if remote.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: remote}))
		}
	}
	return g.tracer.Start(ctx, route.Procedure, opts...)
}

func endSpan(span trace.Span, res proxy.Result) {
	span.SetAttributes(attribute.Int("rpc.connect_rpc.status_code", int(res.Code)))
	if res.Code != 0 && res.Code != connect.CodeCanceled {
		span.SetStatus(codes.Error, res.Code.String())
	}
}
