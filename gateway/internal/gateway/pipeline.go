package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/basaltplatform/basalt/kernel/requestid"

	"github.com/basaltplatform/basalt/gateway/internal/cors"
	"github.com/basaltplatform/basalt/gateway/internal/headers"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// exchange is one request and its answer as the pipeline sees them, whichever server read the
// request: net/http's (HTTP/1.1, h2c, TLS h2; netExchange) or the gateway's own HTTP/1.1 server
// (the fast path; fastCall). Such a codec reads the few request headers the policy reads, takes
// the gateway's own answer headers, and forwards a call and relays its answer in its own way;
// serve and call decide everything else, once for every codec (ADR-0047).
type exchange interface {
	// method is the request's method.
	method() string
	// get returns the first value of the request header name (canonical), or "". The policy
	// reads only a few: the request id, Origin, Authorization, the content type and the
	// deadline headers.
	get(name string) string
	// clientAddr returns the client's address: the peer's, or the nearest untrusted one in
	// X-Forwarded-For when the peer is trusted.
	clientAddr(trusted []netip.Prefix) netip.Addr
	// secure reports a client that came over TLS.
	secure() bool
	// writer is where the answer goes; its header map takes the gateway's own headers.
	writer() http.ResponseWriter
	// own puts a header the gateway adds to every answer on it (see ownHeaders).
	own(name, value string)
	// preflight answers a CORS preflight and reports whether the request was one.
	preflight() bool
	// route returns the route of a call of a routed procedure, or nil.
	route() *routes.Route
	// elsewhere serves a request that is no call of a routed procedure: the gateway's own
	// endpoints, the console, REST (which comes back to call once transcoded), or not found.
	elsewhere(c *call)
	// supported reports whether the request is in a protocol the gateway forwards (Connect,
	// gRPC, gRPC-Web).
	supported() bool
	// bound checks the request body's bounds (too large, a compressed one inflating past the
	// limit, one cut short) where the codec has read it before forwarding; the net/http codec
	// bounds it while forwarding.
	bound() error
	// context is the request's context; carrier its trace context, for a span's link.
	context() context.Context
	carrier() propagation.TextMapCarrier
	// forward sends the call upstream with the client's headers by headers.Upstream and the
	// gateway's (c.added), within the deadline, over the balancer (retries, ejection), and
	// relays the answer by headers.Answer.
	forward(ctx context.Context, c *call, route *routes.Route, deadline time.Duration, bounded bool) proxy.Result
	// fail answers with err in the request's protocol and records it.
	fail(c *call, err error)
	// answered returns the answer's status and body size, for the access log and metrics, and
	// protocol names the client's protocol.
	answered() (status int, written int64)
	protocol() string
	// logPath is the path the client sent, for the access log.
	logPath() string
}

// serve runs the gateway's policy for one request, in this order: request id, CORS
// (preflights answered, answers decorated), the in-flight bound, the route (a procedure's call
// goes on in call; the rest is the codec's, REST coming back to call once transcoded), then
// the access log line and metrics. c is the call's record, the codec's to allocate.
func (g *Gateway) serve(x exchange, c *call) {
	n := g.enter()
	defer func() {
		g.leave()
		status, written := x.answered()
		g.record(c, x.method(), x.logPath(), status, written, x.protocol)
	}()
	x.own(requestid.Header, c.identify(x.get(requestid.Header)))
	c.addr = x.clientAddr(g.cfg.Trusted())
	origin := x.get("Origin")
	if origin != "" && x.preflight() {
		return
	}
	x.own("Vary", cors.VaryOrigin)
	g.cors.Allow(x.writer().Header(), origin)
	if n > int64(g.cfg.Limits.MaxInFlight) {
		x.writer().Header()["Retry-After"] = retryOne
		x.fail(c, errOverloaded)
		return
	}
	route := x.route()
	if route == nil {
		x.elsewhere(c)
		return
	}
	g.call(x, c, route)
}

// ownHeaders puts the headers the gateway adds to every answer on an answer made anew (one
// that replaces an upstream's answer cut short): the request id, and Vary: Origin, which
// every answer carries, with or without an Origin (see cors.Decorate).
func ownHeaders(x exchange, c *call) {
	x.own(requestid.Header, c.id)
	x.own("Vary", cors.VaryOrigin)
}

var retryOne = []string{"1"}

// call runs the policy of a call of route: the method and content-type checks, the token, the
// rate limit, the body's bounds, the deadline, the trace, the upstream headers, and the call
// forwarded and its answer relayed.
func (g *Gateway) call(x exchange, c *call, route *routes.Route) {
	c.route, c.procedure = route.Index, route.Procedure
	w := x.writer()
	if m := x.method(); m != http.MethodPost && m != http.MethodGet {
		// Every protocol posts its calls; Connect may also GET a side-effect-free unary one.
		c.code = connect.CodeUnknown
		w.Header().Set("Allow", "POST, GET")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if !x.supported() {
		c.code = connect.CodeInvalidArgument
		w.Header().Set("Accept-Post", "application/json, application/proto, application/connect+json, application/connect+proto, application/grpc, application/grpc+proto, application/grpc+json, application/grpc-web, application/grpc-web+proto, application/grpc-web+json, application/grpc-web-text")
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	ctx := x.context()
	if retryAfter, err := g.admit(ctx, c, route, x.get("Authorization")); err != nil {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		x.fail(c, err)
		return
	}
	if c.subject != "" && !headers.Safe(c.subject) {
		// The subject goes upstream as a header value.
		x.fail(c, errInvalidToken)
		return
	}
	if err := x.bound(); err != nil {
		x.fail(c, err)
		return
	}
	var span trace.Span
	if g.tracer != nil {
		ctx, span = g.startSpan(ctx, x.carrier(), route)
		defer span.End()
		c.traceID = span.SpanContext().TraceID().String()
	}
	c.added = headers.Added{ClientIP: c.clientIP(), TLS: x.secure(), RequestID: c.id, Subject: c.subject}
	if span != nil {
		c.added.Trace = http.Header{}
		g.o.tel.Propagator().Inject(ctx, propagation.HeaderCarrier(c.added.Trace))
	}
	d, fromClient, bounded := proxy.Deadline(route.Timeout, x.get(headers.ConnectTimeout), x.get(headers.GRPCTimeout))
	if fromClient && d > 0 {
		// A client that sent a deadline has the upstream learn it in its protocol (no later
		// than the route's) and answer it itself, in a way the client understands; the
		// gateway's own bound is a backstop for an upstream that does not, a little later so
		// as not to race it. A client that sent none is left without one upstream, as it asked.
		c.added.TimeoutName, c.added.Timeout = proxy.TimeoutHeader(x.get("Content-Type"), d)
		d += proxy.UpstreamGrace
	}
	res := x.forward(ctx, c, route, d, bounded)
	c.code, c.coded, c.cause = res.Code, true, res.Err
	c.tooLarge = c.tooLarge || errors.Is(res.Err, proxy.ErrTooLarge)
	if res.UpstreamFailed {
		g.metrics.UpstreamError(route.Index)
	}
	if span != nil {
		endSpan(span, res)
	}
}

// challengeUnauthorized gives a 401 answer the gateway's challenge when the upstream's answer
// carried none (headers.Challenge); authorization is the client's Authorization header.
func challengeUnauthorized(h http.Header, authorization string) {
	if _, set := h[headers.WWWAuthenticate]; !set {
		h[headers.WWWAuthenticate] = headers.Challenge(authorization)
	}
}
