package gateway

import (
	"bufio"
	"context"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"

	"github.com/basaltplatform/basalt/kernel/requestid"

	"github.com/basaltplatform/basalt/gateway/internal/h1"
	"github.com/basaltplatform/basalt/gateway/internal/h1client"
	"github.com/basaltplatform/basalt/gateway/internal/headers"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// fastPath serves the gateway's most common request, a unary Connect call over HTTP/1.1, on
// the h1 server: it is the pipeline's codec over that server (fastCall is its exchange), and
// forwards the call as bytes over the balancer's pooled connections. Every other request goes
// through ServeHTTP.
type fastPath struct{ g *Gateway }

var _ h1.Handler = fastPath{}

// Accepts takes Connect unary calls (their content types say so) of routed methods. The route
// it finds is kept for Serve.
func (f fastPath) Accepts(r *h1.Request) bool {
	fc := stateOf(r)
	fc.sync(r)
	if !connectUnary(fc.known.contentType) {
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
		switch headers.Upstream(f.Name) {
		case headers.Pass:
			fc.fields = appendField(fc.fields, f.Name, f.Value)
		case headers.Deadline:
			fc.timeouts = appendField(fc.timeouts, f.Name, f.Value)
		case headers.Trailers:
			if v := headers.TE(f.Value); v != "" {
				fc.fields = appendField(fc.fields, "Te", v)
			}
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
	g *Gateway
	r *h1.Request
	w *h1.Response
}

// Serve answers r through the pipeline (see serve).
func (f fastPath) Serve(w *h1.Response, r *h1.Request) {
	g := f.g
	fc := stateOf(r)
	fc.callState = callState{g: g, r: r, w: w}
	c := &fc.call
	c.memo = &fc.memo
	c.start, c.route = time.Now(), g.metrics.Unrouted()
	g.metrics.FastPath()
	g.serve(fc, c)
}

var _ exchange = (*fastCall)(nil)

func (fc *fastCall) method() string  { return fc.r.Method }
func (fc *fastCall) logPath() string { return fc.r.Path }

// get returns the headers the pipeline reads from what sync found, and looks any other up.
func (fc *fastCall) get(name string) string {
	k := &fc.known
	switch name {
	case requestid.Header:
		return k.requestID
	case "Origin":
		return k.origin
	case "Authorization":
		return k.authorization
	case "Content-Type":
		return k.contentType
	case headers.ConnectTimeout:
		return k.connectTimeout
	case headers.GRPCTimeout:
		return k.grpcTimeout
	}
	return fc.r.Get(name)
}

func (fc *fastCall) clientAddr(trusted []netip.Prefix) netip.Addr {
	return clientAddrOf(fc.r.RemoteAddr.Addr(), func() []string {
		if !fc.known.forwardedFor {
			return nil
		}
		return fc.r.Values("X-Forwarded-For")
	}, trusted)
}

// secure is false: TLS connections go to net/http.
func (fc *fastCall) secure() bool { return false }

func (fc *fastCall) writer() http.ResponseWriter { return fc.w }

// own writes the gateway's own answer headers as lines of their own rather than through the
// header map, which then stays empty unless CORS or an error needs it; forward leaves out an
// upstream's request id.
func (fc *fastCall) own(name, value string) { fc.w.AddLine(name, value) }

// preflight is false: the h1 server takes only POST, and hands a preflight (OPTIONS) to
// net/http.
func (fc *fastCall) preflight() bool { return false }

// route is the route Accepts found.
func (fc *fastCall) route() *routes.Route { return fc.routed }

// elsewhere does not happen: Accepts takes only calls of routed procedures.
func (fc *fastCall) elsewhere(c *call) { fc.fail(c, errNotFound) }

// supported is what Accepts checked: a Connect unary call's content types.
func (fc *fastCall) supported() bool { return connectUnary(fc.known.contentType) }

// connectUnary reports whether ct is the content type of a Connect unary call, the only calls
// the fast path takes.
func connectUnary(ct string) bool { return ct == "application/proto" || ct == "application/json" }

// bound checks the body the h1 server read before the call: one cut short is the client's
// invalid request or its timeout, never a cancellation (the server does not know yet whether
// the client went away); a compressed one is bounded by what it inflates to. A body over the
// limit never gets here: the h1 server hands its request to net/http.
func (fc *fastCall) bound() error {
	if fc.r.BodyErr != nil {
		return proxy.BodyError(fc.r.BodyErr, false)
	}
	if e := fc.known.contentEncoding; e != "" {
		return proxy.CheckCompressed(e, fc.r.Body, fc.g.cfg.Limits.MaxRequestBytes)
	}
	return nil
}

func (fc *fastCall) context() context.Context            { return context.Background() }
func (fc *fastCall) carrier() propagation.TextMapCarrier { return fieldCarrier{fc.r} }
func (fc *fastCall) answered() (int, int64)              { return fc.w.Status(), fc.w.Written() }
func (fc *fastCall) protocol() string                    { return "connect" }

// forward sends the call upstream as bytes through the lean client's Exchange (h1client),
// which uses the balancer's instance choice, retries and passive health checks over pooled
// HTTP/1.1 connections without net/http's request and response types, and relays the answer.
// An answer that breaks off is replaced by an error while none of it has gone out, and cut off
// (the connection closes) otherwise.
func (fc *fastCall) forward(ctx context.Context, c *call, route *routes.Route, d time.Duration, bounded bool) proxy.Result {
	var deadline time.Time
	if bounded {
		deadline = c.start.Add(d)
	}
	x := h1client.Exchange{Request: fc, Idempotent: route.Rule.Idempotent, Deadline: deadline, Start: c.start}
	g, w, a := fc.g, fc.w, &fc.answer
	if err := g.lean.Exchange(ctx, g.rc, route.Upstream, &x, a); err != nil {
		err = proxy.UpstreamError(err)
		fc.fail(c, err)
		return proxy.Result{Code: c.code, Err: err, UpstreamFailed: true}
	}
	defer a.Close()
	own := w.Header()
	grpcStatus := ""
	// A 401 carries a challenge, the upstream's or the gateway's (see challengeUnauthorized).
	unauthorized := a.Status == http.StatusUnauthorized
	a.EndToEnd(func(k, v string) bool {
		switch {
		case len(k) == len("Grpc-Status") && strings.EqualFold(k, "Grpc-Status"):
			grpcStatus = v
		case unauthorized && strings.EqualFold(k, headers.WWWAuthenticate):
			unauthorized = false
		}
		// The gateway's own lines (the request id, Vary) are on the answer already; an
		// upstream's Vary line joins them as a line of its own.
		if headers.Answer(k, ownHeader(own, k)) != headers.Skip {
			w.AddLine(k, v)
		}
		return true
	})
	if unauthorized {
		challengeUnauthorized(own, fc.known.authorization)
	}
	w.WriteHeader(a.Status)
	if _, err := w.ReadFrom(a); err != nil {
		if !w.Discard() {
			w.Abort()
			return proxy.Result{Code: connect.CodeUnavailable, Err: err, UpstreamFailed: true}
		}
		// Discard dropped the lines, the gateway's own among them.
		ownHeaders(fc, c)
		err = proxy.UpstreamError(err)
		fc.fail(c, err)
		return proxy.Result{Code: c.code, Err: err, UpstreamFailed: true}
	}
	return proxy.Result{Code: proxy.CodeOf(a.Status, grpcStatus), Status: a.Status}
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

// WriteRequest writes the call for an upstream instance by the gateway's header rules: the
// client's Host and its headers as headers.Upstream lets them go (see sync), then the
// gateway's (headers.Added). The Host is the client's whichever instance the call goes to, as
// Envoy keeps it. What stays the same from one call of a connection to the next, the request
// line to the forwarding headers, is kept as bytes (see prefix) and written with one copy.
func (fc *fastCall) WriteRequest(w *bufio.Writer, _ string) error {
	r, c := fc.r, &fc.call
	w.Write(fc.prefix())
	b := w.AvailableBuffer()
	c.added.Call(func(k, v string) { b = appendField(b, k, v) })
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
// holds differs from the connection's last call. The forwarding headers follow from the
// client's address alone here, since the fast path serves no TLS client.
func (fc *fastCall) prefix() []byte {
	r, a, h := fc.r, &fc.added, &fc.head
	withTimeouts := a.Timeout == ""
	ip := a.ClientIP
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
	a.Forwarding(func(k, v string) { b = appendField(b, k, v) })
	*h = head{bytes: b, valid: true, path: r.Path, ip: ip, timeouts: withTimeouts}
	return b
}

func appendField(b []byte, k, v string) []byte {
	return append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
}

// fail answers the call with err in Connect's unary protocol, through the same error writer
// as the net/http codec.
func (fc *fastCall) fail(c *call, err error) {
	r, w := fc.r, fc.w
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		// Connect's unary protocol answers it with 401.
		challengeUnauthorized(w.Header(), fc.known.authorization)
	}
	req := &http.Request{
		Method: r.Method, URL: &url.URL{Path: r.Path}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {fc.known.contentType}},
	}
	if v := fc.known.protocolVersion; v != "" {
		req.Header.Set("Connect-Protocol-Version", v)
	}
	c.fail(fc.g, w, req, err)
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
