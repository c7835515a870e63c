package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/basaltplatform/basalt/kernel/requestid"

	"github.com/basaltplatform/basalt/gateway/internal/accesslog"
	"github.com/basaltplatform/basalt/gateway/internal/headers"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
	"github.com/basaltplatform/basalt/gateway/internal/tokens"
)

// call is what the gateway learns about one request while serving it, for its access log
// line and its metrics.
type call struct {
	start     time.Time
	id        string
	addr      netip.Addr
	route     int
	procedure string
	subject   string
	// traceID is the trace's id in hex, for the access log.
	traceID string
	// code is the outcome; coded says it was set (code 0 is ok).
	code  connect.Code
	coded bool
	// cause is why the gateway failed the call, for the log only.
	cause error
	// tooLarge is true once the call was refused for the size of its body, which a REST
	// answer then says with 413 (see restWriter).
	tooLarge bool
	// rest is true for a request the gateway took for a REST one (handed to the transcoder),
	// and refused once the transcoder has answered it with an error (see refusableBody).
	rest, refused bool
	// restRequest is what the gateway kept of a REST request before it was transcoded.
	restRequest restRequest
	// ip is addr as text, made once for the upstream's X-Forwarded-For and the access log.
	ip string
	// values backs the one-value header slices the gateway adds upstream, so that a call
	// allocates them once rather than one by one; nothing modifies header slices once set.
	values [8]string
	used   int
	// added is what the gateway adds to the call upstream (see headers.Added).
	added headers.Added
	// memo is the connection's, on the fast path; nil otherwise.
	memo *memo
	// entry is the access log line, kept here because the logger, an interface, would make a
	// local one escape to the heap.
	entry accesslog.Entry
}

// identify gives the call the request id the client sent, when it is plausible, or a new one,
// and returns it for the answer.
func (c *call) identify(sent string) string {
	c.id = requestid.Sanitize(sent)
	if c.id == "" {
		c.id = requestid.New()
	}
	return c.id
}

// clientIP returns the client's address as text ("" when unknown).
func (c *call) clientIP() string {
	if c.ip == "" && c.addr.IsValid() {
		c.ip = c.memo.text(c.addr)
	}
	return c.ip
}

// value returns v as a one-value header slice.
func (c *call) value(v string) []string {
	if c.used == len(c.values) {
		return []string{v}
	}
	i := c.used
	c.used++
	c.values[i] = v
	return c.values[i : i+1 : i+1]
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// fail answers r with err in the request's protocol and records the outcome.
func (c *call) fail(g *Gateway, w http.ResponseWriter, r *http.Request, err error) {
	c.failed(err)
	_ = proxy.WriteError(g.errors, w, r, err)
}

// failed records that the call failed with err (c may be nil).
func (c *call) failed(err error) {
	if c == nil {
		return
	}
	c.code, c.coded = connect.CodeOf(err), true
	if c.cause == nil {
		c.cause = err
	}
	c.tooLarge = c.tooLarge || errors.Is(err, proxy.ErrTooLarge)
}

// requestPath is the path of r as the client sent it, escaped as it was and without the
// query, whose values may hold secrets (a token in a link) and never reach the log. The
// transcoder rewrites a REST request's URL into its procedure's, so the path is taken before.
func requestPath(r *http.Request) string {
	if r.RequestURI == "" {
		return r.URL.EscapedPath()
	}
	path, _, _ := strings.Cut(r.RequestURI, "?")
	return path
}

// record writes the metrics and the access log line of a finished call. The log line names
// the caller by address and subject but never carries a token or a body; protocol is only
// asked for when the line is written.
func (g *Gateway) record(c *call, method, path string, status int, written int64, protocol func() string) {
	d := time.Since(c.start)
	if status == 0 {
		status = http.StatusOK
	}
	code := c.code
	if !c.coded {
		code = codeOfStatus(status)
	}
	g.metrics.Request(c.route, code, d)
	e := &c.entry
	*e = accesslog.Entry{
		Time:      c.start,
		Level:     slog.LevelInfo,
		RequestID: c.id,
		Method:    method,
		Path:      path,
		Status:    status,
		Code:      codeName(code),
		Duration:  d,
		BytesOut:  written,
		ClientIP:  c.clientIP(),
		Route:     c.procedure,
		Subject:   c.subject,
	}
	if c.memo != nil {
		e.Fragment = &c.memo.fragment
	}
	if path == "/healthz" || path == "/readyz" {
		// Probes arrive every few seconds from every checker; their lines would bury the rest.
		e.Level = slog.LevelDebug
	}
	if !g.o.access.Enabled(e.Level) {
		return
	}
	e.Protocol = protocol()
	e.TraceID = c.traceID
	if c.cause != nil {
		e.Error = c.cause.Error()
	}
	g.o.access.Log(e)
}

func codeName(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}

// codeOfStatus classifies answers that did not go through the RPC path (health, CORS, the
// console).
func codeOfStatus(status int) connect.Code {
	switch {
	case status < 400:
		return 0
	case status == http.StatusNotFound:
		return connect.CodeNotFound
	case status == http.StatusForbidden:
		return connect.CodePermissionDenied
	case status == http.StatusServiceUnavailable:
		return connect.CodeUnavailable
	case status < 500:
		return connect.CodeInvalidArgument
	default:
		return connect.CodeInternal
	}
}

// protocolOf names the protocol the client of call c used, for the access log: "rest" for a
// request handed to the transcoder, "grpc", "grpc-web" or "connect" for a call of a procedure,
// and "http" for the rest (health, the console, a path that is neither).
func protocolOf(r *http.Request, c *call) string {
	if c.rest {
		return "rest"
	}
	rpc := c.procedure != "" || r.Header.Get("Connect-Protocol-Version") != "" || routes.IsProcedurePath(r.URL.Path)
	return protocolName(r.Header.Get("Content-Type"), rpc)
}

// protocolName names a request's protocol from its content type and whether it is a call of a
// procedure (rpc).
func protocolName(ct string, rpc bool) string {
	switch {
	case len(ct) >= 16 && ct[:16] == "application/grpc" && (len(ct) == 16 || ct[16] == '+'):
		return "grpc"
	case len(ct) >= 20 && ct[:20] == "application/grpc-web":
		return "grpc-web"
	case len(ct) >= 20 && ct[:20] == "application/connect+":
		return "connect"
	case rpc:
		return "connect"
	default:
		return "http"
	}
}

// responseWriter notes the status and size of a response. It unwraps for
// http.ResponseController, so flushing, deadlines and full duplex reach the connection. With
// stall set, each write and flush must complete within it (an HTTP/2 stream's write deadline
// is set around it), so a client that stops reading a stream ends it.
type responseWriter struct {
	http.ResponseWriter
	status  int
	written int64
	stall   time.Duration
	// once says the answer is one message, written as it arrives whole (a unary method's):
	// its writes then share one deadline, set before the first and never lifted, since the
	// stream ends with the answer and its end stops the deadline's timer. Setting and lifting
	// an HTTP/2 stream's deadline each hands a message to the connection's serving goroutine,
	// two per write otherwise. armed says that deadline is set.
	once, armed bool
	// request is the request's header, for the challenge of a 401.
	request http.Header
}

// arm sets the stream's write deadline for a write, and reports whether it must be lifted
// after (see once).
func (w *responseWriter) arm() (lift bool) {
	if w.once && w.armed {
		return false
	}
	w.armed = true
	_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now().Add(w.stall))
	return !w.once
}

// lift ends the deadline arm set, so that a stream idle between messages is not cut off.
func (w *responseWriter) lift() {
	_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Time{})
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if code == http.StatusUnauthorized {
			challengeUnauthorized(w.Header(), w.request.Get("Authorization"))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.stall > 0 && w.arm() {
		defer w.lift()
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// Flush implements http.Flusher for code that asserts it rather than using a controller.
func (w *responseWriter) Flush() {
	if w.stall > 0 && w.arm() {
		defer w.lift()
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// FlushError is Flush that reports its error, which http.ResponseController prefers.
func (w *responseWriter) FlushError() error {
	if w.stall > 0 && w.arm() {
		defer w.lift()
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// memo keeps, for the calls of one connection, what a call would otherwise work out anew: the
// client's address as text, the address's rate-limit key, the caller's bucket key and the last
// token verified (see tokens.Last). The calls of a kept-alive connection mostly come from one
// address and, when authenticated, with one token. A nil memo keeps nothing.
type memo struct {
	addr        netip.Addr
	ip          string
	keyAddr     netip.Addr
	addrKey     string
	bucket, key string
	limitKey    string
	token       tokens.Last
	// fragment is the access log's encoding of what the connection's calls share.
	fragment accesslog.Fragment
}

// lastToken returns the memo's last verified token, or nil for a nil memo.
func (m *memo) lastToken() *tokens.Last {
	if m == nil {
		return nil
	}
	return &m.token
}

// text returns a as text.
func (m *memo) text(a netip.Addr) string {
	if m == nil {
		return a.String()
	}
	if m.ip == "" || m.addr != a {
		m.addr, m.ip = a, a.String()
	}
	return m.ip
}

// addressKey returns limitKey(a), the rate-limit key of a public call from a. An IPv4
// address is its own key, so that shares the text the access log uses.
func (m *memo) addressKey(a netip.Addr) string {
	if m == nil {
		return limitKey(a)
	}
	if !a.Is6() {
		return m.text(a)
	}
	if m.addrKey == "" || m.keyAddr != a {
		m.keyAddr, m.addrKey = a, limitKey(a)
	}
	return m.addrKey
}

// bucketKey returns the key of the caller's bucket for a route's bucket name.
func (m *memo) bucketKey(bucket, key string) string {
	if m == nil {
		return bucket + "|" + key
	}
	if m.limitKey == "" || m.bucket != bucket || m.key != key {
		m.bucket, m.key, m.limitKey = bucket, key, bucket+"|"+key
	}
	return m.limitKey
}
