package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/basaltplatform/basalt/gateway/internal/cors"
	"github.com/basaltplatform/basalt/gateway/internal/headers"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// netExchange is the pipeline's codec over net/http's server, which serves HTTP/1.1, h2c and
// TLS with HTTP/2 or HTTP/1.1: every request the fast path does not take. A REST request is
// served by the transcoder, whose Connect call of the method comes back to the pipeline as an
// exchange of its own (see mountREST).
type netExchange struct {
	g *Gateway
	w http.ResponseWriter
	r *http.Request
	// rw is w as the gateway wraps it, for the status and size of the answer; nil for a
	// transcoded REST call, whose outer request records them.
	rw *responseWriter
	// c is the call's record, for the values of the headers the gateway sets (call.value).
	c *call
	// sentPath is the path the client sent, for the access log.
	sentPath string
}

var _ exchange = (*netExchange)(nil)

// netCall is what net/http's server allocates for one request: the call's record, the
// response writer and the codec, together.
type netCall struct {
	call
	rw responseWriter
	x  netExchange
}

// ServeHTTP serves one request through the pipeline (see serve).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	nc := &netCall{}
	c := &nc.call
	c.start, c.route = time.Now(), g.metrics.Unrouted()
	nc.rw = responseWriter{ResponseWriter: w, request: r.Header}
	nc.x = netExchange{g: g, w: &nc.rw, r: r, rw: &nc.rw, c: c, sentPath: requestPath(r)}
	if r.ProtoMajor == 1 {
		if r.ContentLength != 0 {
			// net/http's server sets no deadline on a request's body (its ReadTimeout would end
			// long streams too), so a body that stops coming, read here or discarded by
			// net/http after an answer that did not need it, would hold the connection for
			// good. It fails by the body timeout instead; Forward lifts the deadline for a
			// stream's body, which the call's deadline bounds.
			_ = http.NewResponseController(w).SetReadDeadline(c.start.Add(time.Duration(g.cfg.Limits.BodyTimeout)))
		}
		if len(r.TransferEncoding) > 0 {
			// A request with both Content-Length and Transfer-Encoding, or whose
			// Transfer-Encoding was folded over lines, may be framed one way here and another by
			// a proxy in front, so the connection must close after the answer (RFC 9112,
			// section 6.1). net/http drops the Content-Length of such a request and joins folded
			// lines, so it cannot be told from a chunked one: every chunked request closes its
			// connection. (The fast path leaves every request with Transfer-Encoding to
			// net/http.)
			w.Header()["Connection"] = connectionClose
		}
	} else {
		// A write to an HTTP/2 stream whose client stops reading it waits on flow control,
		// not on the socket (which clientConn bounds), so each has the write timeout as the
		// stream's deadline.
		nc.rw.stall = time.Duration(g.cfg.Limits.WriteTimeout)
	}
	g.serve(&nc.x, c)
}

var connectionClose = []string{"close"}

func (x *netExchange) method() string         { return x.r.Method }
func (x *netExchange) get(name string) string { return x.r.Header.Get(name) }
func (x *netExchange) secure() bool           { return x.r.TLS != nil }
func (x *netExchange) writer() http.ResponseWriter {
	return x.w
}
func (x *netExchange) context() context.Context { return x.r.Context() }
func (x *netExchange) carrier() propagation.TextMapCarrier {
	return propagation.HeaderCarrier(x.r.Header)
}
func (x *netExchange) logPath() string  { return x.sentPath }
func (x *netExchange) protocol() string { return protocolOf(x.r, x.c) }
func (x *netExchange) supported() bool  { return x.g.errors.IsSupported(x.r) }

func (x *netExchange) clientAddr(trusted []netip.Prefix) netip.Addr {
	return clientAddr(x.r, trusted)
}

func (x *netExchange) own(name, value string) {
	h := x.w.Header()
	if _, set := h[name]; set {
		h.Add(name, value)
		return
	}
	h[name] = x.c.value(value)
}

func (x *netExchange) preflight() bool {
	if !cors.IsPreflight(x.r) {
		return false
	}
	x.g.cors.Preflight(x.w, x.r)
	return true
}

func (x *netExchange) route() *routes.Route {
	route, ok := x.g.table.Lookup(x.r.URL.Path)
	if !ok {
		return nil
	}
	return route
}

// elsewhere serves what is no call of a routed procedure: the gateway's own endpoints, the
// console, a procedure that is not routed (not found), and REST.
func (x *netExchange) elsewhere(c *call) {
	g, rw, r := x.g, x.rw, x.r
	if h, ok := g.local[r.URL.Path]; ok {
		h.ServeHTTP(rw, r.WithContext(withCall(r.Context(), c)))
		return
	}
	if g.console != nil {
		if servesConsole(r.URL.Path) {
			g.console.ServeHTTP(rw, r)
			return
		}
		if r.URL.Path == "/" && wantsHTML(r) {
			// A browser opening the gateway's address gets the console; API clients asking for
			// / still get the REST answer (no such route).
			http.Redirect(rw, r, ConsolePath, http.StatusFound)
			return
		}
	}
	if routes.IsProcedurePath(r.URL.Path) && g.errors.IsSupported(r) {
		c.fail(g, rw, r, errNotFound)
		return
	}
	g.serveREST(rw, r, c)
}

// bound leaves the body to Forward, which bounds it as it reads it: a unary body whole
// (proxy.ErrTooLarge, and proxy.CheckCompressed for a compressed one), a stream's message by
// message.
func (x *netExchange) bound() error { return nil }

// fail answers a call in its protocol, and a request the gateway takes for a REST one, before
// the transcoder, as REST errors are answered.
func (x *netExchange) fail(c *call, err error) {
	if routes.IsProcedurePath(x.r.URL.Path) {
		c.fail(x.g, x.w, x.r, err)
		return
	}
	x.g.failREST(x.w, c, err)
}

func (x *netExchange) answered() (int, int64) { return x.rw.status, x.rw.written }

// forward writes the upstream header in place (the request is the gateway's to change, and
// copying the map would cost an allocation per header) and has proxy.Forward send the call.
func (x *netExchange) forward(_ context.Context, c *call, route *routes.Route, deadline time.Duration, bounded bool) proxy.Result {
	g, r := x.g, x.r
	// A passthrough route's methods are unknown, so their answers may be streams.
	unary := route.Method != nil && !route.Method.IsStreamingServer()
	if x.rw != nil {
		// A transcoded REST call's answer reaches the client through the transcoder, which
		// writes it as it sees fit; only a call's own answer is known to be one message.
		x.rw.once = unary
	}
	return g.proxy.Forward(x.w, r, &proxy.Call{
		Upstream:    g.upstreams[route.Index],
		BaseURL:     g.baseURLs[route.Index],
		Header:      upstreamHeader(r.Header, c),
		Buffer:      !route.StreamingRequest,
		Deadline:    deadline,
		Bounded:     bounded,
		Idempotent:  route.Rule.Idempotent,
		FullDuplex:  route.StreamingRequest && r.ProtoMajor == 2,
		UnaryAnswer: unary,
	})
}

// upstreamHeader turns a client's header into the one sent upstream, in place, by the
// gateway's header rules (headers.Upstream, headers.Added): the headers a Connection header
// names go too, as hop-by-hop ones.
func upstreamHeader(h http.Header, c *call) http.Header {
	if tokens := h["Connection"]; len(tokens) > 0 {
		for k := range h {
			if headers.Listed(tokens, k) {
				delete(h, k)
			}
		}
	}
	for k, vv := range h {
		switch headers.Upstream(k) {
		case headers.Drop:
			delete(h, k)
		case headers.Trailers:
			if headers.TE(strings.Join(vv, ",")) != "" {
				h[k] = teTrailers
			} else {
				delete(h, k)
			}
		case headers.Deadline:
			if c.added.Timeout != "" {
				delete(h, k)
			}
		}
	}
	set := func(k, v string) { h[k] = c.value(v) }
	c.added.Forwarding(set)
	c.added.Call(set)
	return h
}

var teTrailers = []string{headers.TrailersValue}
