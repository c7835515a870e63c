// Package rpcclient makes generated Connect clients for services found through discovery.
//
// A client built here sends each call to one of the service's healthy instances, in round-robin
// order, over pooled HTTP/2 connections (h2c on plain http), so unary, streaming, Connect and
// gRPC calls all work. An instance that refuses connections or keeps failing is ejected for a
// while (passive health checking, as Envoy's outlier detection does). A unary call goes to
// another instance when it never reached a server, or when the contract declares its method
// idempotent and the connection failed; any other call is never sent twice. The caller's
// deadline, request id and bearer token travel with every call, and OpenTelemetry continues
// the caller's trace.
//
// Consumers declare the small interface they need and let the generated client satisfy it:
//
//	type recorder interface {
//		Record(context.Context, *connect.Request[auditv1.RecordRequest]) (*connect.Response[auditv1.RecordResponse], error)
//	}
//	var audit recorder = rpcclient.For(rc, "audit", auditv1connect.NewAuditServiceClient)
package rpcclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/requestid"
	"github.com/basaltplatform/basalt/kernel/telemetry"
)

// Client builds service clients over one shared connection pool.
type Client struct {
	resolver  discovery.Resolver
	transport *http.Transport
	// http1 carries calls marked HTTP1 (see CallOptions.HTTP1 for why): net/http's pool of
	// HTTP/1.1 keep-alive connections, one per concurrent call, unless WithHTTP1Transport
	// brought another.
	http1 http.RoundTripper
	// direct makes ForEndpoint clients, which need an HTTPClient rather than a RoundTripper.
	direct    *http.Client
	o         options
	clientOps []connect.ClientOption

	mu       sync.Mutex
	services map[string]*balancer
}

type options struct {
	log             *slog.Logger
	tel             *telemetry.Telemetry
	defaultTimeout  time.Duration
	maxAttempts     int
	failuresToEject int
	baseEjection    time.Duration
	maxEjection     time.Duration
	now             func() time.Time
	interceptors    []connect.Interceptor
	tlsConfig       *tls.Config
	http1           http.RoundTripper
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithTelemetry traces calls and records client metrics.
func WithTelemetry(t *telemetry.Telemetry) Option { return func(o *options) { o.tel = t } }

// WithDefaultTimeout bounds calls whose context has no deadline (default 10s); zero disables it.
func WithDefaultTimeout(d time.Duration) Option { return func(o *options) { o.defaultTimeout = d } }

// WithMaxAttempts bounds how many instances one call may be sent to when it could not be sent
// (default 3).
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// WithEjection configures passive ejection: an instance is ejected after failures consecutive
// 502/503/504 answers (a refused or broken connection ejects at once), first for base, then
// twice as long each time it is ejected again, up to max (defaults 5, 1s, 30s).
func WithEjection(failures int, base, max time.Duration) Option {
	return func(o *options) { o.failuresToEject, o.baseEjection, o.maxEjection = failures, base, max }
}

// WithInterceptors adds client interceptors to every client made.
func WithInterceptors(i ...connect.Interceptor) Option {
	return func(o *options) { o.interceptors = append(o.interceptors, i...) }
}

// WithTLSConfig sets the TLS configuration for https endpoints.
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tlsConfig = c } }

// WithHTTP1Transport carries the calls marked HTTP1 (see CallOptions) over rt rather than over
// net/http's Transport: a caller with a leaner HTTP/1.1 client of its own (the gateway's)
// brings it, so that the kernel need not hold it. Close closes rt's idle connections when it
// has a CloseIdleConnections method.
func WithHTTP1Transport(rt http.RoundTripper) Option { return func(o *options) { o.http1 = rt } }

// withClock replaces the clock, for tests of ejection timing.
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New returns a Client resolving services through resolver.
func New(resolver discovery.Resolver, opts ...Option) (*Client, error) {
	o := options{
		log:             slog.New(slog.DiscardHandler),
		defaultTimeout:  10 * time.Second,
		maxAttempts:     3,
		failuresToEject: 5,
		baseEjection:    time.Second,
		maxEjection:     30 * time.Second,
		now:             time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{
		Protocols:           protocols,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     o.tlsConfig,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		// Connect and gRPC negotiate compression themselves; the transport's own gzip would
		// rewrite bodies the gateway forwards as they are.
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	http1 := o.http1
	if http1 == nil {
		http1 = &http.Transport{
			DialContext:         transport.DialContext,
			TLSClientConfig:     o.tlsConfig,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
	}
	c := &Client{
		resolver:  resolver,
		transport: transport,
		http1:     http1,
		direct: &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		o:        o,
		services: map[string]*balancer{},
	}
	interceptors := []connect.Interceptor{propagator{defaultTimeout: o.defaultTimeout}}
	if o.tel != nil {
		otel, err := otelconnect.NewInterceptor(
			otelconnect.WithTracerProvider(o.tel.TracerProvider()),
			otelconnect.WithMeterProvider(o.tel.MeterProvider()),
			otelconnect.WithPropagator(o.tel.Propagator()),
		)
		if err != nil {
			return nil, fmt.Errorf("rpcclient: %w", err)
		}
		interceptors = append(interceptors, otel)
	}
	interceptors = append(interceptors, o.interceptors...)
	c.clientOps = []connect.ClientOption{connect.WithInterceptors(interceptors...)}
	return c, nil
}

// For returns a generated client of service; newClient is the generated constructor, for
// example auditv1connect.NewAuditServiceClient. Extra options (connect.WithGRPC(), say) are
// passed on.
func For[T any](c *Client, service string, newClient func(connect.HTTPClient, string, ...connect.ClientOption) T, opts ...connect.ClientOption) T {
	return newClient(c.HTTPClient(service), BaseURL(service), append(append([]connect.ClientOption{}, c.clientOps...), opts...)...)
}

// ForEndpoint returns a generated client bound to one instance, for calls that must reach
// every instance (a cache invalidation, say) rather than any. It shares the pool, the
// interceptors and the credentials of the balanced clients.
func ForEndpoint[T any](c *Client, ep discovery.Endpoint, newClient func(connect.HTTPClient, string, ...connect.ClientOption) T, opts ...connect.ClientOption) T {
	return newClient(c.direct, ep.URL(), append(append([]connect.ClientOption{}, c.clientOps...), opts...)...)
}

// Resolver returns the resolver the client balances over.
func (c *Client) Resolver() discovery.Resolver { return c.resolver }

// BaseURL is the placeholder base URL of service's clients; the balancer replaces its host
// with a chosen instance's on every call.
func BaseURL(service string) string { return "http://" + service + ".service.basalt" }

// HTTPClient returns the balancing HTTP client of service.
func (c *Client) HTTPClient(service string) connect.HTTPClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.services[service]
	if !ok {
		b = &balancer{c: c, service: service, state: map[string]*endpointState{}}
		c.services[service] = b
	}
	return b
}

// Close releases idle connections.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
	if ci, ok := c.http1.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// balancer spreads one service's calls over its instances.
type balancer struct {
	c       *Client
	service string
	next    atomic.Uint64

	mu    sync.Mutex
	state map[string]*endpointState
}

// endpointState is the passive health of one instance.
type endpointState struct {
	consecutive  int
	ejections    int
	ejectedUntil time.Time
}

var _ connect.HTTPClient = (*balancer)(nil)

// Do sends req to one instance of the service, and to another when it could not be sent.
func (b *balancer) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var resp *http.Response
	err := b.send(ctx, isIdempotent(ctx), canReplay(req), func(ep discovery.Endpoint, attempt int) (int, error) {
		out, err := b.prepare(req, ep, attempt)
		if err != nil {
			return 0, &notAttempted{err}
		}
		// The transports are called directly: http.Client would copy the header and the URL
		// of every call to follow redirects, which calls between services never do.
		var rt http.RoundTripper = b.c.transport
		if o := callOptionsFrom(ctx); o.HTTP1 {
			rt = b.c.http1
		}
		resp, err = rt.RoundTrip(out)
		if err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// notAttempted is a failure to prepare an attempt, which says nothing of the instance.
type notAttempted struct{ err error }

func (e *notAttempted) Error() string { return e.err.Error() }
func (e *notAttempted) Unwrap() error { return e.err }

// Refused marks err as the failure of a call its sender refused before sending it (a header
// that would break its line, a deadline already past): the balancer returns err as it is,
// neither holding it against the instance nor trying another. A transport given to
// WithHTTP1Transport, or an Attempter, returns it.
func Refused(err error) error { return &notAttempted{err} }

// An Attempter sends a call to one instance by its own means (the gateway writes the bytes of
// a forwarded call itself), for Client.Send.
type Attempter interface {
	// Attempt sends the call to ep, the attempt-th instance tried (from 1), and returns the
	// HTTP status of its answer. An error from Refused ends the call there; any other error
	// is classified as a Do's would be, and may have the call sent to another instance.
	Attempt(ctx context.Context, ep discovery.Endpoint, attempt int) (status int, err error)
}

// Send sends a call to instances of service through a, with the balancing, retries and
// passive health checks of the service's clients: another instance is tried when the call
// never reached one, or when idempotent and its connection broke, and each answer's status
// feeds the instance's health. a is called again for another instance, so it must be able to
// send the call again.
//
// a is an interface rather than a function so that a caller can pass state it already holds,
// and allocate nothing per call.
func (c *Client) Send(ctx context.Context, service string, idempotent bool, a Attempter) error {
	b := c.HTTPClient(service).(*balancer)
	return b.send(ctx, idempotent, true, func(ep discovery.Endpoint, attempt int) (int, error) {
		return a.Attempt(ctx, ep, attempt)
	})
}

// send calls try with one instance of the service after another until an attempt gets an
// answer, or fails in a way that makes another attempt unsafe: sending a call again is safe
// when it never left, or when the method declares itself idempotent in its contract and the
// connection failed. replayable says whether the call can be written again at all. Each
// outcome feeds the instance's passive health.
func (b *balancer) send(ctx context.Context, idempotent, replayable bool, try func(ep discovery.Endpoint, attempt int) (status int, err error)) error {
	eps, err := b.c.resolver.Endpoints(ctx, b.service)
	if err != nil {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("rpcclient: resolve %s: %w", b.service, err))
	}
	if len(eps) == 0 {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("rpcclient: no healthy instance of %s", b.service))
	}
	attempts := min(len(eps), b.c.o.maxAttempts)
	var triedBuf [4]string
	tried := triedBuf[:0]
	for attempt := 1; ; attempt++ {
		ep := b.pick(eps, tried)
		tried = append(tried, ep.ID)
		status, err := try(ep, attempt)
		if err != nil {
			var na *notAttempted
			if errors.As(err, &na) {
				return na.err
			}
			connFailure := isConnectionFailure(err)
			b.report(ep, connFailure, true)
			safe := isNotSent(err) || (connFailure && idempotent)
			if safe && attempt < attempts && replayable && ctx.Err() == nil {
				b.c.o.log.DebugContext(ctx, "call not sent; trying another instance", "target", b.service, "endpoint", ep.URL(), "error", err)
				continue
			}
			return err
		}
		switch status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			b.report(ep, false, true)
		default:
			b.report(ep, false, false)
		}
		return nil
	}
}

// prepare points a copy of req at ep. Only the URL is copied deeply: the transport never
// writes to the headers, and a forwarding gateway should not pay for copying them per
// attempt. Retries get a fresh body from GetBody. The Host becomes the instance's, unless the
// caller set one of its own, apart from its URL's placeholder host: a proxy keeps its client's.
func (b *balancer) prepare(req *http.Request, ep discovery.Endpoint, attempt int) (*http.Request, error) {
	out := new(http.Request)
	*out = *req
	u := *req.URL
	u.Scheme, u.Host = ep.Scheme, ep.Host
	out.URL = &u
	if req.Host == "" || req.Host == req.URL.Host {
		out.Host = ep.Host
	}
	if attempt > 1 && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		out.Body = body
	}
	return out, nil
}

// pick returns the next instance in round-robin order that is neither ejected nor already
// tried for this call. When every instance is ejected it ignores ejection, as Envoy's panic
// threshold does: a possibly-bad instance beats certain failure.
//
// The clock is read only for an instance with ejection state: a healthy pool has none, and
// this runs for every call.
func (b *balancer) pick(eps []discovery.Endpoint, tried []string) discovery.Endpoint {
	var now time.Time
	start := b.next.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.state) > 2*len(eps)+8 {
		b.prune(eps)
	}
	var fallback *discovery.Endpoint
	for i := range len(eps) {
		ep := &eps[(start+uint64(i))%uint64(len(eps))]
		if contains(tried, ep.ID) {
			continue
		}
		st := b.state[ep.ID]
		if st != nil && now.IsZero() {
			now = b.c.o.now()
		}
		if st != nil && now.Before(st.ejectedUntil) {
			if fallback == nil {
				fallback = ep
			}
			continue
		}
		return *ep
	}
	if fallback != nil {
		return *fallback
	}
	return eps[start%uint64(len(eps))]
}

// report records the outcome of one attempt: ejectNow for refused or broken connections,
// failed for 5xx answers that count towards the consecutive-failure limit.
func (b *balancer) report(ep discovery.Endpoint, ejectNow, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[ep.ID]
	if !failed {
		if st != nil {
			st.consecutive = 0
		}
		return
	}
	if st == nil {
		st = &endpointState{}
		b.state[ep.ID] = st
	}
	st.consecutive++
	if !ejectNow && st.consecutive < b.c.o.failuresToEject {
		return
	}
	now := b.c.o.now()
	if now.Before(st.ejectedUntil) {
		return
	}
	d := b.c.o.baseEjection << min(st.ejections, 16)
	if d > b.c.o.maxEjection || d <= 0 {
		d = b.c.o.maxEjection
	}
	st.ejections++
	st.consecutive = 0
	st.ejectedUntil = now.Add(d)
	b.c.o.log.Info("instance ejected", "target", b.service, "endpoint", ep.URL(), "for", d)
}

func (b *balancer) prune(eps []discovery.Endpoint) {
	live := make(map[string]bool, len(eps))
	for _, ep := range eps {
		live[ep.ID] = true
	}
	for id := range b.state {
		if !live[id] {
			delete(b.state, id)
		}
	}
}

// ejected reports whether the instance is ejected now (for tests).
func (b *balancer) ejected(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[id]
	return st != nil && b.c.o.now().Before(st.ejectedUntil)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func canReplay(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// isNotSent reports errors that prove the request never reached a server: the connection
// could not be made, or writing to it failed because the peer had already closed it (a pooled
// connection to an instance that crashed). Sending such a call elsewhere is safe for any method.
func isNotSent(err error) bool {
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		return false
	}
	switch opErr.Op {
	case "dial":
		return true
	case "write":
		return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
	}
	return false
}

type callOptionsKey struct{}

// CallOptions tell the balancer how a call made without a generated client (the gateway
// forwarding one) may be sent.
type CallOptions struct {
	// Idempotent allows sending the call to another instance after its connection broke.
	Idempotent bool
	// HTTP1 sends the call over HTTP/1.1 instead of HTTP/2, through the transport given to
	// WithHTTP1Transport or net/http's. Only calls that need nothing HTTP/2 has may use it:
	// not gRPC (which needs trailers) and not full-duplex streams. Go's HTTP/2 client writes
	// each frame with its own system call and re-indexes long headers (a bearer token) on
	// every call, so for one forwarded call per connection at a time HTTP/1.1 costs both ends
	// less.
	HTTP1 bool
}

// WithCallOptions returns a context whose calls the balancer sends as o says.
func WithCallOptions(ctx context.Context, o CallOptions) context.Context {
	return context.WithValue(ctx, callOptionsKey{}, o)
}

func callOptionsFrom(ctx context.Context) CallOptions {
	o, _ := ctx.Value(callOptionsKey{}).(CallOptions)
	return o
}

// isIdempotent reports whether the call in ctx is to a method whose contract declares it
// idempotent or free of side effects.
func isIdempotent(ctx context.Context) bool {
	return callOptionsFrom(ctx).Idempotent
}

// isConnectionFailure reports errors of the connection rather than of the call: the instance
// could not be reached, or the connection broke before an answer came.
func isConnectionFailure(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection lost") || strings.Contains(msg, "connection reset")
}

// propagator sends the caller's request id and bearer token with every call and bounds calls
// that have no deadline. Connect itself turns the deadline into the protocol's timeout header.
type propagator struct {
	defaultTimeout time.Duration
}

var _ connect.Interceptor = propagator{}

func (p propagator) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !req.Spec().IsClient {
			return next(ctx, req)
		}
		setCallHeaders(ctx, req.Header())
		ctx, cancel := p.bound(ctx)
		defer cancel()
		if req.Spec().IdempotencyLevel != connect.IdempotencyUnknown {
			ctx = WithCallOptions(ctx, CallOptions{Idempotent: true})
		}
		return next(ctx, req)
	}
}

func (p propagator) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		// A stream's lifetime is the caller's to bound: a default timeout would cut long
		// exports short.
		conn := next(ctx, spec)
		setCallHeaders(ctx, conn.RequestHeader())
		return conn
	}
}

func (p propagator) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (p propagator) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || p.defaultTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.defaultTimeout)
}

func setCallHeaders(ctx context.Context, h http.Header) {
	if id := requestid.From(ctx); id != "" && h.Get(requestid.Header) == "" {
		h.Set(requestid.Header, id)
	}
	if tok := authn.TokenFrom(ctx); tok != "" && h.Get("Authorization") == "" {
		h.Set("Authorization", "Bearer "+tok)
	}
}
