// Package gateway is the platform's single entry for external traffic. For each request it
// answers CORS, finds the route the contracts define, authenticates the caller when the method
// is not public, applies the route's rate limit, and forwards the call unchanged to a healthy
// instance of the service; REST requests are first transcoded to Connect from the methods'
// google.api.http annotations.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/vanguard"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/policy"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/telemetry"

	"github.com/basaltplatform/basalt/gateway/internal/accesslog"
	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/cors"
	"github.com/basaltplatform/basalt/gateway/internal/h1client"
	"github.com/basaltplatform/basalt/gateway/internal/metrics"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/ratelimit"
	"github.com/basaltplatform/basalt/gateway/internal/reflection"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
	"github.com/basaltplatform/basalt/gateway/internal/tokens"
)

// Gateway serves external traffic.
type Gateway struct {
	cfg   config.Config
	o     options
	table *routes.Table
	// lean carries calls upstream over HTTP/1.1: the fast path's exchanges, and the calls
	// of the net/http codec the balancer sends marked HTTP1.
	lean *h1client.Transport
	// services are the discovery names every route leads to and the auth service's, each once:
	// the gateway is ready only while each has an instance.
	services  []string
	upstreams []proxy.Upstream
	baseURLs  []string
	rc        *rpcclient.Client
	jwks      *authn.JWKS
	tokens    *tokens.Cache
	cors      *cors.Policy
	proxy     *proxy.Proxy
	metrics   *metrics.Metrics
	errors    *connect.ErrorWriter
	local     map[string]http.Handler
	rest      http.Handler
	bodyless  []bool // by route index: the methods whose REST bindings take no body
	console   http.Handler
	health    *grpchealth.StaticChecker
	tracer    trace.Tracer
	inFlight  atomic.Int64
	// conns counts the open client connections (see clientListener).
	conns     atomic.Int64
	draining  atomic.Bool
	ready     chan struct{}
	addr      atomic.Pointer[net.TCPAddr]
	adminAddr atomic.Pointer[net.TCPAddr]
	// jwksRoute is the route of the key set the gateway publishes (see serveJWKS), jwksDoc
	// the set's last document.
	jwksRoute *routes.Route
	jwksDoc   atomic.Pointer[jwksDocument]
}

type options struct {
	log        *slog.Logger
	access     accesslog.Writer
	tel        *telemetry.Telemetry
	resolver   discovery.Resolver
	registrar  discovery.Registrar
	limiter    ratelimit.Limiter
	keys       authn.Keys
	listener   net.Listener
	admin      net.Listener
	instanceID string
	version    string
	files      *protoregistry.Files
	jwks       []authn.JWKSOption
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithAccessLog writes the access log to w (default: through the logger). The gateway's main
// package passes a direct JSON writer when the logs are JSON, since that line is written for
// every request.
func WithAccessLog(w accesslog.Writer) Option { return func(o *options) { o.access = w } }

// WithTelemetry records a span for every call and passes the trace on to the services. Without
// it the gateway still starts a trace per call (ids only, no span), for log correlation.
func WithTelemetry(t *telemetry.Telemetry) Option { return func(o *options) { o.tel = t } }

// WithResolver finds upstream instances (default: the configuration's static upstreams).
func WithResolver(r discovery.Resolver) Option { return func(o *options) { o.resolver = r } }

// WithRegistrar registers the gateway in discovery while it serves.
func WithRegistrar(r discovery.Registrar) Option { return func(o *options) { o.registrar = r } }

// WithLimiter keeps rate-limit buckets in l (default: in memory).
func WithLimiter(l ratelimit.Limiter) Option { return func(o *options) { o.limiter = l } }

// WithKeys verifies tokens with keys instead of the auth service's JWKS, for tests.
func WithKeys(k authn.Keys) Option { return func(o *options) { o.keys = k } }

// WithListener serves on ln instead of the configured address.
func WithListener(ln net.Listener) Option { return func(o *options) { o.listener = ln } }

// WithAdminListener serves the admin endpoints on ln instead of the configured address.
func WithAdminListener(ln net.Listener) Option { return func(o *options) { o.admin = ln } }

// WithVersion sets the version published in discovery.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithInstanceID sets the discovery instance id (default: "gateway-" and random bits).
func WithInstanceID(id string) Option { return func(o *options) { o.instanceID = id } }

// WithFiles routes the services of files instead of every contract linked into the binary.
func WithFiles(f *protoregistry.Files) Option { return func(o *options) { o.files = f } }

// withJWKSOptions configures the cache of the auth service's key set (its clock, in tests).
func withJWKSOptions(opts ...authn.JWKSOption) Option {
	return func(o *options) { o.jwks = append(o.jwks, opts...) }
}

// New builds a gateway for cfg.
func New(cfg config.Config, opts ...Option) (*Gateway, error) {
	o := options{
		log:     slog.New(slog.DiscardHandler),
		version: "dev",
		files:   protoregistry.GlobalFiles,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.access == nil {
		o.access = accesslog.Slog{Logger: o.log}
	}
	if o.instanceID == "" {
		o.instanceID = discovery.NewInstanceID("gateway")
	}
	table, err := routes.Build(o.files, cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	passthrough := map[string][]string{}
	for _, p := range cfg.Passthrough {
		passthrough[routes.PassthroughUpstream(p.Service)] = []string{p.Upstream}
	}
	if o.resolver == nil {
		static, err := discovery.NewStatic(cfg.Upstreams)
		if err != nil {
			return nil, fmt.Errorf("gateway: upstreams: %w", err)
		}
		o.resolver = static
	}
	resolver := o.resolver
	if len(passthrough) > 0 {
		static, err := discovery.NewStatic(passthrough)
		if err != nil {
			return nil, fmt.Errorf("gateway: passthrough: %w", err)
		}
		resolver = withPassthrough{static: static, next: o.resolver}
	}
	lean := h1client.New()
	rcOpts := []rpcclient.Option{rpcclient.WithLogger(o.log), rpcclient.WithDefaultTimeout(0), rpcclient.WithHTTP1Transport(lean)}
	rc, err := rpcclient.New(resolver, rcOpts...)
	if err != nil {
		return nil, err
	}
	if o.limiter == nil {
		o.limiter = ratelimit.NewMemory()
	}
	g := &Gateway{
		cfg:    cfg,
		o:      o,
		table:  table,
		rc:     rc,
		lean:   lean,
		cors:   cors.New(cfg.CORS.AllowedOrigins, cfg.CORS.AllowCredentials, time.Duration(cfg.CORS.MaxAge)),
		proxy:  proxy.New(cfg.Limits.MaxRequestBytes, time.Duration(cfg.Limits.BodyTimeout)),
		errors: connect.NewErrorWriter(),
		health: grpchealth.NewStaticChecker(),
		local:  map[string]http.Handler{},
		ready:  make(chan struct{}),
	}
	g.jwksRoute = routes.Local(len(table.Routes()), authn.JWKSPath, cfg)
	g.metrics = metrics.New(append(routeNames(table), g.jwksRoute.Procedure), g.inFlight.Load, g.conns.Load)
	for _, r := range table.Routes() {
		g.upstreams = append(g.upstreams, rc.HTTPClient(r.Upstream))
		g.baseURLs = append(g.baseURLs, rpcclient.BaseURL(r.Upstream))
		if !slices.Contains(g.services, r.Upstream) {
			g.services = append(g.services, r.Upstream)
		}
	}
	if !slices.Contains(g.services, cfg.Auth.Service) {
		g.services = append(g.services, cfg.Auth.Service)
	}
	slices.Sort(g.services)
	keys := o.keys
	if keys == nil {
		g.jwks = authn.NewJWKS(
			authn.HTTPFetcher(rc.HTTPClient(cfg.Auth.Service), rpcclient.BaseURL(cfg.Auth.Service)+authn.JWKSPath),
			append([]authn.JWKSOption{
				// Unknown kids refresh the set at most once a second: enough to pick up a new key
				// at once, too little for forged kids to load the auth service.
				authn.WithMinInterval(time.Second),
				authn.WithMaxAge(jwksFresh),
			}, o.jwks...)...,
		)
		keys = g.jwks
	}
	g.tokens = tokens.New(authn.NewVerifier(keys, cfg.Auth.Issuer, cfg.Auth.Audience), cfg.Auth.TokenCacheSize)
	if o.tel != nil {
		g.tracer = o.tel.TracerProvider().Tracer("github.com/basaltplatform/basalt/gateway")
	}
	if err := g.mountLocal(); err != nil {
		return nil, err
	}
	if err := g.mountREST(); err != nil {
		return nil, err
	}
	if cfg.Console.Dir != "" {
		g.console = &console{dir: cfg.Console.Dir, path: ConsolePath}
	}
	return g, nil
}

func routeNames(t *routes.Table) []string {
	names := make([]string, len(t.Routes()))
	for i, r := range t.Routes() {
		names[i] = r.Procedure
	}
	return names
}

// mountLocal sets up what the gateway answers itself: health, readiness, the signing keys,
// gRPC health, reflection of the routed services, and the OpenAPI document and reference page.
func (g *Gateway) mountLocal() error {
	g.local["/healthz"] = http.HandlerFunc(g.serveHealthz)
	g.local["/readyz"] = http.HandlerFunc(g.serveReadyz)
	g.local[authn.JWKSPath] = http.HandlerFunc(g.serveJWKS)
	g.health.SetStatus("", grpchealth.StatusServing)
	path, h := grpchealth.NewHandler(g.health)
	g.local[path+"Check"] = h
	g.local[path+"Watch"] = h
	files, err := reflection.Files(g.o.files, func(md protoreflect.MethodDescriptor) bool {
		return policy.FromDescriptor(md).Audience != policy.Internal
	})
	if err != nil {
		return err
	}
	var names []string
	for _, sd := range g.table.Services() {
		names = append(names, string(sd.FullName()))
	}
	for path, h := range reflection.Handlers(files, names) {
		g.local[path+"ServerReflectionInfo"] = h
	}
	return g.mountAPIDocs()
}

// mountREST sets up REST transcoding: vanguard turns a REST request into a Connect call of
// the annotated method and hands it back to the RPC path, so it is authenticated, limited and
// forwarded like any other call. The call's message is decoded from the request while the
// gateway reads the body it forwards (see restProto), after restCheck.
func (g *Gateway) mountREST() error {
	g.bodyless = bodyless(g.table)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		route, ok := g.table.Lookup(r.URL.Path)
		if !ok || c == nil {
			c.fail(g, w, r, errNotFound)
			return
		}
		c.route, c.procedure = route.Index, route.Procedure
		if err := g.restCheck(route, c.restRequest); err != nil {
			c.fail(g, w, r, err)
			return
		}
		r.Body = refusableBody{r.Body, c}
		g.call(&netExchange{g: g, w: w, r: r, c: c}, c, route)
	})
	var services []*vanguard.Service
	for _, sd := range g.table.Services() {
		services = append(services, vanguard.NewServiceWithSchema(sd, inner,
			vanguard.WithTargetProtocols(vanguard.ProtocolConnect),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithNoTargetCompression(),
			vanguard.WithMaxMessageBufferBytes(uint32(min(g.cfg.Limits.MaxRequestBytes, 1<<31))),
		))
	}
	t, err := vanguard.NewTranscoder(services,
		vanguard.WithUnknownHandler(http.HandlerFunc(g.serveNotFound)),
		vanguard.WithCodec(newRESTJSON),
		vanguard.WithCodec(newRESTProto),
	)
	if err != nil {
		return fmt.Errorf("gateway: REST transcoding: %w", err)
	}
	g.rest = t
	return nil
}

// Errors the gateway itself answers with.
var (
	errNotFound     = connect.NewError(connect.CodeNotFound, errors.New("no such method"))
	errNoRoute      = connect.NewError(connect.CodeNotFound, errors.New("no such route"))
	errNoToken      = connect.NewError(connect.CodeUnauthenticated, errors.New("this method needs an access token: send Authorization: Bearer <token>"))
	errExpired      = connect.NewError(connect.CodeUnauthenticated, errors.New("the access token has expired"))
	errInvalidToken = connect.NewError(connect.CodeUnauthenticated, errors.New("the access token is invalid"))
	errOverloaded   = connect.NewError(connect.CodeUnavailable, errors.New("the gateway is overloaded; retry shortly"))
)

// serveREST has the transcoder serve a REST request. Its body is bounded here: the transcoder
// inflates a gzip body without a bound, and refuses a large one with a 429, so the gateway
// inflates it (within limits.max_request_bytes, counted while inflating) and refuses what
// passes the limit itself, which restWriter answers with 413. What the gateway checks of the
// request after the transcoder has rewritten it (restCheck) is kept first.
func (g *Gateway) serveREST(rw *responseWriter, r *http.Request, c *call) {
	c.rest = true
	c.restRequest = restRequest{query: r.URL.RawQuery, body: r.Body != nil && r.Body != http.NoBody}
	if c.restRequest.body {
		limit := g.cfg.Limits.MaxRequestBytes
		encoding := r.Header.Get("Content-Encoding")
		if encoding == "gzip" {
			r.Header.Del("Content-Encoding")
			r.ContentLength = -1
		}
		if r.ContentLength > limit {
			// The transcoder would refuse it before reading; the bounded body refuses it as it
			// reads the first byte past the limit.
			r.ContentLength = -1
		}
		r.Body = proxy.Limited(r.Body, encoding, limit, func() { c.tooLarge = true })
	}
	w := &restWriter{responseWriter: rw, c: c}
	g.rest.ServeHTTP(w, r.WithContext(withCall(r.Context(), c)))
	w.finish(r)
}

// enter counts a request in flight and returns how many are; leave counts it out.
func (g *Gateway) enter() int64 {
	return g.inFlight.Add(1)
}

func (g *Gateway) leave() {
	g.inFlight.Add(-1)
}

// admit decides whether the call c of route may go on: a method that is not public needs a
// valid token in authorization, and every call a token from its caller's bucket (per client
// address for public methods, per subject for the rest). It returns the error to answer
// otherwise, with the Retry-After value when the caller is throttled.
func (g *Gateway) admit(ctx context.Context, c *call, route *routes.Route, authorization string) (retryAfter string, err error) {
	key := ""
	if route.Rule.Audience == policy.Public {
		key = c.memo.addressKey(c.addr)
	} else {
		token := authn.BearerToken(authorization)
		if token == "" {
			return "", errNoToken
		}
		p, err := g.tokens.VerifyFor(ctx, token, c.start, c.memo.lastToken())
		if err != nil {
			c.cause = err
			if errors.Is(err, authn.ErrExpired) || strings.Contains(err.Error(), authn.ErrExpired.Message) {
				return "", errExpired
			}
			return "", errInvalidToken
		}
		c.subject = p.Subject
		key = p.Subject
	}
	return g.allow(ctx, route, c.memo.bucketKey(route.Bucket, key))
}

// allow takes a token from the caller's bucket (key) for route and returns resource_exhausted
// when there is none. A failing shared store lets the request through: throttling is
// protection, and an outage of Redis should not become an outage of the platform.
func (g *Gateway) allow(ctx context.Context, route *routes.Route, key string) (retryAfter string, err error) {
	d, err := g.o.limiter.Take(ctx, key, route.Limit)
	if err != nil {
		g.o.log.WarnContext(ctx, "rate limiter failed; letting the request through", "error", err)
		return "", nil
	}
	if d.Allowed {
		return "", nil
	}
	g.metrics.RateLimited(route.Index)
	secs := max(int64((d.RetryAfter+time.Second-1)/time.Second), 1)
	retry := strconv.FormatInt(secs, 10)
	return retry, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("too many requests; retry after %ss", retry))
}

// Close releases the upstream connections.
func (g *Gateway) Close() { g.rc.Close() }

// withPassthrough resolves passthrough upstreams from a static table and every other service
// through next.
type withPassthrough struct {
	static discovery.Resolver
	next   discovery.Resolver
}

func (p withPassthrough) Endpoints(ctx context.Context, service string) ([]discovery.Endpoint, error) {
	if strings.HasPrefix(service, "passthrough:") {
		return p.static.Endpoints(ctx, service)
	}
	return p.next.Endpoints(ctx, service)
}
