package gateway

import (
	"bufio"
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/basaltplatform/basalt/kernel/requestid"

	"github.com/basaltplatform/basalt/gateway/internal/cors"
	"github.com/basaltplatform/basalt/gateway/internal/h1"
	"github.com/basaltplatform/basalt/gateway/internal/h1client"
	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// fastPath serves the gateway's most common request, a unary Connect call over HTTP/1.1, on
// the h1 server: the same checks as ServeHTTP (request id, CORS, the in-flight bound, the
// token, the rate limit, the route's timeout) in the same order, and the call forwarded as
// bytes over the balancer's pooled connections. Every other request goes through ServeHTTP.
type fastPath struct{ g *Gateway }

var _ h1.Handler = fastPath{}

// Accepts takes Connect unary calls (their content types say so) of routed methods. The route
// it finds is kept for Serve.
func (f fastPath) Accepts(r *h1.Request) bool {
	fc := stateOf(r)
	fc.sync(r)
	ct := fc.known.contentType
	if ct != "application/proto" && ct != "application/json" {
		return false
	}
	if fc.routed == nil || fc.routedPath != r.Path {
		route, ok := f.g.table.Lookup(r.Path)
		if !ok {
			return false
		}
		fc.routed, fc.routedPath = route, r.Path
	}
	route := fc.routed
	if route.StreamingRequest || r.ContentLength > f.g.cfg.Limits.MaxRequestBytes {
		return false
	}
	return true
}

// stateOf returns the connection's call state, made on its first call.
func stateOf(r *h1.Request) *fastCall {
	fc, _ := r.State.(*fastCall)
	if fc == nil {
		fc = new(fastCall)
		r.State = fc
	}
	return fc
}

// fastCall is the state of calls on the fast path. It is allocated once per connection:
// callState is cleared for each call, and nothing keeps it once the call is answered. The
// rest is what the connection's calls share while their heads repeat.
type fastCall struct {
	callState
	// answer is the upstream's, which the exchange resets itself.
	answer h1client.Answer
	// memo outlives the call, for the connection's next ones.
	memo memo
	// seq is the number of the head the fields below were made for (see sync).
	seq uint64
	// known holds the values of the headers the fast path reads.
	known known
	// routed is the route of routedPath, the path of the last call Accepts looked up.
	routed     *routes.Route
	routedPath string
	// fields are the client's header lines as they go upstream, and timeouts its deadline
	// lines, which go only when the gateway does not replace them.
	fields, timeouts []byte
	// head is the start of the upstream request.
	head head
}

// sync makes what fc derives from the client's fields for r's head, unless it was made for
// the head before and r repeats its fields. Every head of a connection on the fast path
// comes through Accepts, so that is the common case on a connection whose client repeats its
// headers.
func (fc *fastCall) sync(r *h1.Request) {
	if fc.seq != 0 && r.Repeated && fc.seq == r.Seq-1 {
		fc.seq = r.Seq
		return
	}
	fc.seq = r.Seq
	fc.known = knownOf(r.Fields)
	fc.head.valid = false
	fc.fields, fc.timeouts = fc.fields[:0], fc.timeouts[:0]
	for _, f := range r.Fields {
		switch {
		case dropped(f.Name) || replaced(f.Name):
		case strings.EqualFold(f.Name, "Connect-Timeout-Ms") || strings.EqualFold(f.Name, "Grpc-Timeout"):
			fc.timeouts = appendField(fc.timeouts, f.Name, f.Value)
		case strings.EqualFold(f.Name, "Te"):
			// Only "trailers" passes, as on the net/http path (outboundHeader).
			if strings.Contains(strings.ToLower(f.Value), "trailers") {
				fc.fields = appendField(fc.fields, "Te", "trailers")
			}
		default:
			fc.fields = appendField(fc.fields, f.Name, f.Value)
		}
	}
}

// known holds the values of the request headers the fast path reads: the first value of each,
// as h1.Request.Get returns it, and whether there are X-Forwarded-For lines.
type known struct {
	contentType, requestID, origin, authorization string
	connectTimeout, grpcTimeout, protocolVersion  string
	contentEncoding                               string
	forwardedFor                                  bool
}

// knownOf finds the headers of known in one pass over fields. Names are told apart by length
// first, so that most of them are compared with nothing.
func knownOf(fields []h1.Field) known {
	var k known
	var found uint8
	take := func(bit uint8, dst *string, v string) {
		if found&bit == 0 {
			found |= bit
			*dst = v
		}
	}
	for i := range fields {
		name, v := fields[i].Name, fields[i].Value
		is := func(want string) bool { return strings.EqualFold(name, want) }
		switch len(name) {
		case len("Origin"):
			if is("Origin") {
				take(1, &k.origin, v)
			}
		case len("Content-Type"): // and X-Request-Id, Grpc-Timeout
			switch {
			case is("Content-Type"):
				take(2, &k.contentType, v)
			case is(requestid.Header):
				take(4, &k.requestID, v)
			case is("Grpc-Timeout"):
				take(8, &k.grpcTimeout, v)
			}
		case len("Authorization"):
			if is("Authorization") {
				take(16, &k.authorization, v)
			}
		case len("Connect-Timeout-Ms"):
			if is("Connect-Timeout-Ms") {
				take(32, &k.connectTimeout, v)
			}
		case len("Connect-Protocol-Version"):
			if is("Connect-Protocol-Version") {
				take(64, &k.protocolVersion, v)
			}
		case len("X-Forwarded-For"):
			k.forwardedFor = k.forwardedFor || is("X-Forwarded-For")
		case len("Content-Encoding"):
			if is("Content-Encoding") {
				take(128, &k.contentEncoding, v)
			}
		}
	}
	return k
}

// callState is what one call on the fast path sets anew.
type callState struct {
	call
	r     *h1.Request
	route *routes.Route
	// timeout is the Connect-Timeout-Ms sent upstream in place of the client's, or "".
	timeout string
	// trace holds the propagator's headers, when the gateway traces.
	trace http.Header
}

// Serve answers r.
func (f fastPath) Serve(w *h1.Response, r *h1.Request) {
	g := f.g
	fc := stateOf(r)
	route, k := fc.routed, &fc.known
	fc.callState = callState{r: r}
	c := &fc.call
	c.memo = &fc.memo
	c.start, c.route = time.Now(), g.metrics.Unrouted()
	g.metrics.FastPath()
	n := g.enter()
	defer func() {
		g.leave()
		g.record(c, r.Method, r.Path, w.Status(), w.Written(), connectProtocol)
	}()

	h := w.Header()
	// The request id and Vary go on the answer as lines of their own rather than through the
	// header map, which then stays empty unless CORS or an error needs it; forward leaves out
	// an upstream's id.
	ownLines(w, c.identify(k.requestID))
	c.addr = clientAddrOf(r.RemoteAddr.Addr(), func() []string {
		if !k.forwardedFor {
			return nil
		}
		return r.Values("X-Forwarded-For")
	}, g.cfg.Trusted())
	if k.origin != "" {
		g.cors.Allow(h, k.origin)
	}
	if n > int64(g.cfg.Limits.MaxInFlight) {
		h.Set("Retry-After", "1")
		f.fail(w, fc, errOverloaded)
		return
	}
	fc.route = route
	c.route, c.procedure = route.Index, route.Procedure
	if r.BodyErr != nil {
		// The fast path reads a body before it knows whether the client went away, so a body
		// cut short is the client's invalid request or its timeout, never a cancellation.
		f.fail(w, fc, proxy.BodyError(r.BodyErr, false))
		return
	}
	ctx := context.Background()
	if retryAfter, err := g.admit(ctx, c, route, k.authorization); err != nil {
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		f.fail(w, fc, err)
		return
	}
	if c.subject != "" && !httpwire.SafeValue(c.subject) {
		f.fail(w, fc, errInvalidToken)
		return
	}
	if k.contentEncoding != "" {
		// As on the net/http path: a compressed body is bounded by what it inflates to.
		if err := proxy.CheckCompressed(k.contentEncoding, r.Body, g.cfg.Limits.MaxRequestBytes); err != nil {
			f.fail(w, fc, err)
			return
		}
	}

	var span trace.Span
	if g.tracer != nil {
		ctx, span = g.startSpan(ctx, fieldCarrier{r}, route)
		defer span.End()
		c.traceID = span.SpanContext().TraceID().String()
		fc.trace = http.Header{}
		g.o.tel.Propagator().Inject(ctx, propagation.HeaderCarrier(fc.trace))
	}
	var deadline time.Time
	if d, fromClient, ok := proxy.Deadline(route.Timeout, k.connectTimeout, k.grpcTimeout); ok {
		if fromClient && d > 0 {
			// As on the net/http path: the upstream learns the client's deadline and answers it
			// itself; the gateway's own bound comes a little later.
			fc.timeout = proxy.ConnectTimeout(d)
			d += proxy.UpstreamGrace
		}
		deadline = c.start.Add(d)
	}
	x := h1client.Exchange{Request: fc, Idempotent: route.Rule.Idempotent, Deadline: deadline, Start: c.start}
	res := f.forward(ctx, w, fc, &x)
	if span != nil {
		endSpan(span, res)
	}
}

// forward sends the call upstream and relays the answer. An answer that breaks off is replaced
// by an error while none of it has gone out, and cut off (the connection closes) otherwise.
func (f fastPath) forward(ctx context.Context, w *h1.Response, fc *fastCall, x *h1client.Exchange) proxy.Result {
	g, c, a := f.g, &fc.call, &fc.answer
	if err := g.lean.Exchange(ctx, g.rc, fc.route.Upstream, x, a); err != nil {
		g.metrics.UpstreamError(fc.route.Index)
		err = proxy.UpstreamError(err)
		f.fail(w, fc, err)
		return proxy.Result{Code: c.code, Err: err, UpstreamFailed: true}
	}
	defer a.Close()
	own := w.Header()
	grpcStatus := ""
	// A 401 carries a challenge, the upstream's or the gateway's (see challenge).
	unauthorized := a.Status == http.StatusUnauthorized
	a.EndToEnd(func(k, v string) bool {
		switch {
		case len(k) == len(requestid.Header) && strings.EqualFold(k, requestid.Header):
			// The gateway's own, already on the answer.
		case len(k) == len("Grpc-Status") && strings.EqualFold(k, "Grpc-Status"):
			grpcStatus = v
			w.AddLine(k, v)
		case len(k) == len("Vary") && strings.EqualFold(k, "Vary"):
			// Vary lines add up, the gateway's and the upstream's.
			w.AddLine(k, v)
		case unauthorized && strings.EqualFold(k, "Www-Authenticate"):
			unauthorized = false
			w.AddLine(k, v)
		case !ownHeader(own, k):
			w.AddLine(k, v)
		}
		return true
	})
	if unauthorized {
		challenge(own, fc.known.authorization)
	}
	w.WriteHeader(a.Status)
	if _, err := w.ReadFrom(a); err != nil {
		g.metrics.UpstreamError(fc.route.Index)
		if !w.Discard() {
			w.Abort()
			c.code, c.coded, c.cause = connect.CodeUnavailable, true, err
			return proxy.Result{Code: c.code, Err: err, UpstreamFailed: true}
		}
		// Discard dropped the lines, the gateway's own among them.
		ownLines(w, c.id)
		err = proxy.UpstreamError(err)
		f.fail(w, fc, err)
		return proxy.Result{Code: c.code, Err: err, UpstreamFailed: true}
	}
	c.code, c.coded = proxy.CodeOf(a.Status, grpcStatus), true
	return proxy.Result{Code: c.code, Status: a.Status}
}

// ownLines adds the lines the gateway puts on every answer of the fast path: the request id,
// and "Vary: Origin", which every answer carries, with or without an Origin (see cors.Decorate).
func ownLines(w *h1.Response, id string) {
	w.AddLine(requestid.Header, id)
	w.AddLine("Vary", cors.VaryOrigin)
}

// ownHeader reports whether the gateway set the header named k (in any case) on its answer
// itself, which then wins over the upstream's. The names in own are canonical, as are most
// names upstreams send, so a name is canonicalized only when it is not already.
func ownHeader(own http.Header, k string) bool {
	if len(own) == 0 {
		return false
	}
	if _, set := own[k]; set {
		return true
	}
	if canonical(k) {
		return false
	}
	_, set := own[textproto.CanonicalMIMEHeaderKey(k)]
	return set
}

// canonical reports whether k is in canonical form: its first letter and every letter after a
// hyphen upper case, the others lower case.
func canonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// WriteRequest writes the call for an upstream instance: the client's Host and headers less
// the ones that never go upstream (see dropped) and the ones the gateway sets itself (see
// sync), then the gateway's, as outboundHeader does on the net/http path. The Host is the
// client's whichever instance the call goes to, as Envoy keeps it. What stays the same from
// one call of a connection to the next, the request line to the forwarding headers, is kept as
// bytes (see prefix) and written with one copy.
func (fc *fastCall) WriteRequest(w *bufio.Writer, _ string) error {
	r, c := fc.r, &fc.call
	w.Write(fc.prefix())
	b := w.AvailableBuffer()
	b = appendField(b, requestid.Header, c.id)
	if c.subject != "" {
		b = appendField(b, "X-Basalt-Subject", c.subject)
	}
	for k, vv := range fc.trace {
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	if fc.timeout != "" {
		b = appendField(b, "Connect-Timeout-Ms", fc.timeout)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.Body)), 10)
	b = append(b, "\r\n\r\n"...)
	w.Write(b)
	_, err := w.Write(r.Body)
	return err
}

// head is the start of the upstream request that a connection's calls share while their heads
// repeat: the request line, the Host line, the client's fields as they go upstream (with its
// deadline lines when the gateway does not replace them) and the forwarding headers.
type head struct {
	bytes []byte
	// valid is false until bytes are made, and after the client's fields change (the Host
	// line among them).
	valid bool
	// The rest is what bytes were made for, besides the fields: the request's path, the
	// client's address and whether the client's deadline lines go too. The address follows
	// from the connection and the fields today; it is compared anyway, since a call that
	// reached the upstream as from another client would be a silent fault.
	path, ip string
	timeouts bool
}

// prefix returns the start of the call's upstream request, made anew only when something it
// holds differs from the connection's last call.
func (fc *fastCall) prefix() []byte {
	r, c, h := fc.r, &fc.call, &fc.head
	withTimeouts := fc.timeout == ""
	ip := c.clientIP()
	if h.valid && h.path == r.Path && h.ip == ip && h.timeouts == withTimeouts {
		return h.bytes
	}
	b := append(h.bytes[:0], "POST "...)
	b = append(b, r.Path...)
	b = append(b, " HTTP/1.1\r\n"...)
	b = appendField(b, "Host", r.Host)
	b = append(b, fc.fields...)
	if withTimeouts {
		b = append(b, fc.timeouts...)
	}
	if ip != "" {
		b = appendField(b, "X-Forwarded-For", ip)
	}
	// The fast path serves plain HTTP, the scheme of the upstream's own connection, so it sends
	// no X-Forwarded-Proto (ADR-0043).
	*h = head{bytes: b, valid: true, path: r.Path, ip: ip, timeouts: withTimeouts}
	return b
}

func appendField(b []byte, k, v string) []byte {
	return append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
}

// replaced reports the client headers whose values the gateway sets itself upstream.
func replaced(k string) bool {
	for _, r := range replacedHeaders {
		if len(k) == len(r) && strings.EqualFold(k, r) {
			return true
		}
	}
	return false
}

var replacedHeaders = [...]string{"Content-Length", "X-Forwarded-For", requestid.Header, "Traceparent"}

// fail answers the call with err in Connect's unary protocol, through the same error writer
// as the net/http path.
func (f fastPath) fail(w *h1.Response, fc *fastCall, err error) {
	r := fc.r
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		// Connect's unary protocol answers it with 401.
		challenge(w.Header(), fc.known.authorization)
	}
	req := &http.Request{
		Method: r.Method, URL: &url.URL{Path: r.Path}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {fc.known.contentType}},
	}
	if v := fc.known.protocolVersion; v != "" {
		req.Header.Set("Connect-Protocol-Version", v)
	}
	fc.fail(f.g, w, req, err)
}

// fieldCarrier reads a request's trace context for a span's link.
type fieldCarrier struct{ r *h1.Request }

func (f fieldCarrier) Get(key string) string { return f.r.Get(key) }
func (f fieldCarrier) Set(string, string)    {}
func (f fieldCarrier) Keys() []string {
	keys := make([]string, len(f.r.Fields))
	for i, fl := range f.r.Fields {
		keys[i] = fl.Name
	}
	return keys
}
