// Package proxy forwards RPCs to upstream instances without decoding them: the request's
// headers and body go to an instance chosen by the kernel's balancer, and the response's
// status, headers, body and trailers come back as they are. Connect, gRPC and gRPC-Web all
// pass through this way, so error details, compression and the protocols' timeouts are the
// service's own.
//
// What the proxy adds is what an edge must: the request body of a unary call is read within a
// time limit and bounded in size (and kept, so the balancer can send it again when that is
// safe), a streamed body is bounded per message, the call is bounded by the deadline its caller
// worked out (see Deadline), the answer's headers are relayed by the gateway's rules
// (headers.Answer), and a response is flushed as it arrives when it is a stream. The request's
// headers come written by the caller, which applies the gateway's rules for them.
package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/basaltplatform/basalt/kernel/rpcclient"

	"github.com/basaltplatform/basalt/gateway/internal/headers"
	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// Upstream is a balancing HTTP client of one service; the kernel's rpcclient provides it.
type Upstream interface {
	Do(*http.Request) (*http.Response, error)
}

// Call is one request to forward.
type Call struct {
	// Upstream sends the request; BaseURL is the placeholder URL it expects.
	Upstream Upstream
	BaseURL  string
	// Header is the header to send, already written by the caller's header rules (the
	// gateway's headers package), the deadline's header among them.
	Header http.Header
	// Buffer is true when the body is a single message that may be read before forwarding.
	Buffer bool
	// Deadline bounds the call, retries included, when Bounded; the caller works it out from
	// the route's timeout and the client's (see Deadline) and adds UpstreamGrace when the
	// upstream is told the client's.
	Deadline time.Duration
	Bounded  bool
	// Idempotent allows the balancer to resend the call after a broken connection.
	Idempotent bool
	// FullDuplex is true when the call may stream both ways at once, which needs HTTP/2.
	FullDuplex bool
	// UnaryAnswer is true when the method answers with one message. Its answer is then read
	// whole (as far as the relay's buffer holds it) before it goes out, even in a stream's
	// framing (gRPC, gRPC-Web), and goes out without a flush per message.
	UnaryAnswer bool
}

// Result describes a forwarded call, for metrics and the access log.
type Result struct {
	// Code is the call's outcome as a Connect code (0 for success).
	Code connect.Code
	// Status is the HTTP status sent to the client.
	Status int
	// Err is the gateway's own error, when the call failed before an upstream answered or while
	// relaying the answer; nil when the upstream's answer was relayed whole.
	Err error
	// UpstreamFailed is true when the error came from reaching or reading the upstream.
	UpstreamFailed bool
}

// Proxy forwards calls.
type Proxy struct {
	maxBody     int64
	bodyTimeout time.Duration
	errors      *connect.ErrorWriter
	buffers     sync.Pool
}

// New returns a proxy that buffers unary bodies of at most maxBody bytes read within
// bodyTimeout, and bounds each message of a stream to maxBody bytes.
func New(maxBody int64, bodyTimeout time.Duration) *Proxy {
	return &Proxy{
		maxBody:     maxBody,
		bodyTimeout: bodyTimeout,
		errors:      connect.NewErrorWriter(),
		buffers: sync.Pool{New: func() any {
			b := make([]byte, 32<<10)
			return &b
		}},
	}
}

// Errors the proxy answers with; their messages are what clients see.
var (
	ErrTooLarge        = connect.NewError(connect.CodeResourceExhausted, errors.New("the request is larger than the gateway accepts"))
	ErrBodyTimeout     = connect.NewError(connect.CodeDeadlineExceeded, errors.New("the request body did not arrive in time"))
	ErrUnavailable     = connect.NewError(connect.CodeUnavailable, errors.New("the service is unavailable"))
	ErrDeadline        = connect.NewError(connect.CodeDeadlineExceeded, errors.New("the call did not complete in time"))
	ErrCanceled        = connect.NewError(connect.CodeCanceled, errors.New("the client canceled the call"))
	errUpstreamAborted = errors.New("proxy: the upstream broke off its response")
	errInvalidQuery    = connect.NewError(connect.CodeInvalidArgument, errors.New("the request's query holds a space, a control character or a byte that is not ASCII; escape them (RFC 3986)"))
	errUnreadableBody  = connect.NewError(connect.CodeInvalidArgument, errors.New("the request body could not be read"))
)

// Forward sends r to the upstream and relays the answer to w.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, c *Call) Result {
	if !httpwire.ValidTarget(r.URL.RawQuery) {
		// The query goes upstream as it came, on an HTTP/1.1 request line, where such bytes
		// would end or break it; HTTP/2's :path and lenient HTTP/1.1 servers let them in.
		return p.fail(w, r, errInvalidQuery, false)
	}
	ctx := r.Context()
	var cancel context.CancelFunc
	if c.Bounded {
		ctx, cancel = context.WithTimeout(ctx, c.Deadline)
		defer cancel()
	} else if !c.Buffer {
		// A stream's call is cancelled once relayed (see below), so it needs a cancel of its own.
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
	}
	// Everything but gRPC and full-duplex streams goes upstream over HTTP/1.1, as it would from
	// nginx: it is cheaper for both ends than Go's HTTP/2 for one call per connection at a time.
	ctx = rpcclient.WithCallOptions(ctx, rpcclient.CallOptions{
		Idempotent: c.Idempotent,
		HTTP1:      !c.FullDuplex && !isGRPC(r.Header.Get("Content-Type")),
	})
	// The outgoing request starts as a shallow copy of the incoming one (one allocation), with
	// every field a client request must not carry reset.
	out := r.WithContext(ctx)
	out.URL = upstreamURL(c.BaseURL, r)
	// The client's Host goes upstream, whichever instance the call reaches, as Envoy keeps it;
	// the balancer keeps a Host that is not its placeholder URL's.
	out.Host, out.RequestURI, out.RemoteAddr, out.TLS = r.Host, "", "", nil
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.Header = c.Header
	out.Trailer, out.TransferEncoding, out.Close = nil, nil, false
	out.Form, out.PostForm, out.MultipartForm = nil, nil, nil
	out.ContentLength, out.GetBody = 0, nil

	switch {
	case r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet:
		out.Body = http.NoBody
		if r.Method == http.MethodGet {
			if err := p.checkQuery(r); err != nil {
				return p.fail(w, r, err, false)
			}
		}
	case c.Buffer:
		// The body is not pooled: the transport may read it until it closes it, which can be
		// after the call returned.
		body, err := p.readBody(w, r)
		if err == nil {
			err = p.checkBody(r, body)
		}
		if err != nil {
			return p.fail(w, r, err, false)
		}
		out.Body = &bytesBody{b: body}
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return &bytesBody{b: body}, nil }
	default:
		if r.ProtoMajor == 1 {
			// Streams over HTTP/1.1 are half duplex, but the upstream may answer before it has
			// read everything, and net/http would close the body once the answer starts.
			rc := http.NewResponseController(w)
			_ = rc.EnableFullDuplex()
			// A stream's body comes for as long as the call lasts, which its deadline bounds,
			// not the body timeout.
			_ = rc.SetReadDeadline(time.Time{})
		}
		sb := newStreamBody(r.Body, r.Header, p.maxBody)
		out.Body = sb
		out.ContentLength = r.ContentLength
		// A stream can be sent to another instance only while none of it has been read.
		out.GetBody = sb.again
	}

	resp, err := c.Upstream.Do(out)
	if err != nil {
		var sbErr error
		if sb, ok := out.Body.(*streamBody); ok {
			sbErr = sb.err
		}
		if sbErr != nil {
			return p.fail(w, r, sbErr, false)
		}
		return p.fail(w, r, p.callError(ctx, r, err), true)
	}
	defer func() {
		// Once the answer is relayed, the call is over even if the client has not finished
		// sending: an upstream may end a stream without reading it all. Cancelling first lets
		// the transport stop writing the client's body at once; otherwise closing the response
		// would wait for that body's next read, and the client waits for the end of the
		// response before it sends more. A buffered call's body is all sent, and its
		// connection goes back to the pool only when closed before the call is cancelled.
		if !c.Buffer && cancel != nil {
			cancel()
		}
		resp.Body.Close()
	}()
	return p.relay(w, r, resp, c.UnaryAnswer)
}

// relay copies the upstream's answer to the client, its headers by the gateway's answer rules
// (headers.Answer): a header the gateway has already set (CORS, the request id) is its own and
// stays, except Vary, whose values are joined. unary says the method answers with one message.
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, unary bool) Result {
	ct := resp.Header.Get("Content-Type")
	grpc := isGRPC(ct)
	// framed answers are sequences of messages, whose boundaries the relay follows. A stream's
	// go out as they come, each flushed; a unary method's single message needs no flush of its
	// own, and on HTTP/2 each flush costs a frame written and a system call apart, and two
	// hand-offs to the connection's serving goroutine for the write deadline around it.
	framed := isStream(ct)
	stream := framed && !unary
	bufp := p.buffers.Get().(*[]byte)
	defer p.buffers.Put(bufp)
	buf := *bufp
	// A unary answer that fits the buffer is read whole before anything is written, so that
	// an upstream that breaks off (or a deadline that passes) while sending it still gets the
	// client a proper error in its protocol rather than a torn response.
	var head []byte
	whole := false
	if !stream {
		n, rerr := readFull(resp.Body, buf)
		switch {
		case rerr == io.EOF:
			head, whole = buf[:n], true
		case rerr != nil:
			return p.fail(w, r, p.callError(resp.Request.Context(), r, rerr), true)
		default:
			head = buf[:n]
		}
	}
	h := w.Header()
	for k, vv := range resp.Header {
		own, set := h[k]
		switch headers.Answer(k, set) {
		case headers.Copy:
			h[k] = vv
		case headers.Join:
			h[k] = append(own[:len(own):len(own)], vv...)
		}
	}
	if _, set := resp.Header["Content-Length"]; framed && !set {
		// net/http would give a framed answer written whole a length its upstream did not
		// send; a nil value leaves it out, as a stream's answer has none.
		h["Content-Length"] = nil
	}
	res := Result{Status: resp.StatusCode, Code: codeOf(resp.StatusCode, resp.Header)}
	w.WriteHeader(resp.StatusCode)
	if len(head) > 0 {
		if _, werr := w.Write(head); werr != nil {
			res.Code, res.Err = connect.CodeCanceled, werr
			return res
		}
	}
	if whole {
		return p.trailers(h, resp, res, grpc)
	}
	rc := http.NewResponseController(w)
	if stream {
		// Headers go out now: a stream's client may act on them before the first message,
		// and net/http sends gRPC's trailers reliably only once the headers are out.
		_ = rc.Flush()
	}
	var framing envelopes
	if framed {
		framing.feed(head)
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				// The client is gone; returning cancels the upstream call.
				res.Code, res.Err = connect.CodeCanceled, werr
				return res
			}
			if framed {
				framing.feed(buf[:n])
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return p.broken(w, r, resp, res, rerr, framed && framing.boundary())
		}
	}
	return p.trailers(h, resp, res, grpc)
}

// trailers passes the upstream's trailers on and reads a gRPC call's outcome from them.
func (p *Proxy) trailers(h http.Header, resp *http.Response, res Result, grpc bool) Result {
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	if grpc {
		res.Code = codeOf(resp.StatusCode, resp.Trailer)
		if v := resp.Header.Get("Grpc-Status"); v != "" {
			res.Code = codeOf(resp.StatusCode, resp.Header)
		}
	}
	return res
}

// readFull reads into buf until it is full (nil), the body ends (io.EOF) or fails.
func readFull(body io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := body.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// broken ends a response whose upstream broke off (or outlived the call's deadline) after
// its headers went out. A stream cut between two messages ends in the client's protocol:
// gRPC's trailers, gRPC-Web's trailer message or Connect's end-of-stream message, so the
// client reads deadline_exceeded or unavailable. Anything else is torn down, so that the client
// sees the response fail rather than end early.
func (p *Proxy) broken(w http.ResponseWriter, r *http.Request, resp *http.Response, res Result, rerr error, boundary bool) Result {
	res.Err, res.UpstreamFailed, res.Code = errUpstreamAborted, true, connect.CodeUnavailable
	message := "upstream response interrupted"
	switch {
	case r.Context().Err() != nil:
		res.Code, res.UpstreamFailed = connect.CodeCanceled, false
	case errors.Is(rerr, context.DeadlineExceeded) || errors.Is(resp.Request.Context().Err(), context.DeadlineExceeded):
		res.Code, res.UpstreamFailed = connect.CodeDeadlineExceeded, false
		message = "the call's deadline passed"
	}
	ct := resp.Header.Get("Content-Type")
	switch {
	case isGRPC(ct) && r.ProtoMajor == 2:
		// A gRPC client learns why its stream ended from the trailers.
		h := w.Header()
		h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(int(res.Code)))
		h.Set(http.TrailerPrefix+"Grpc-Message", message)
		return res
	case boundary:
		if frame := endFrame(ct, res.Code, message); frame != nil {
			if _, err := w.Write(frame); err == nil {
				_ = http.NewResponseController(w).Flush()
				return res
			}
		}
	}
	panic(http.ErrAbortHandler)
}

// fail answers the client with err in its protocol.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error, upstream bool) Result {
	_ = WriteError(p.errors, w, r, err)
	return Result{Code: connect.CodeOf(err), Status: StatusOf(connect.CodeOf(err)), Err: err, UpstreamFailed: upstream}
}

// callError turns a failure to get an answer into what the client is told: the details stay
// in the gateway's log.
func (p *Proxy) callError(ctx context.Context, r *http.Request, err error) error {
	switch {
	case r.Context().Err() != nil:
		return wrap(ErrCanceled, err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return wrap(ErrDeadline, err)
	default:
		return UpstreamError(err)
	}
}

// UpstreamError is what a client is told when its call got no (whole) answer for err:
// deadline_exceeded when the call ran out of time, unavailable otherwise. The details stay in
// the gateway's log.
func UpstreamError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return wrap(ErrDeadline, err)
	}
	return wrap(ErrUnavailable, err)
}

// wrap keeps public's code and message for the client and cause for the log.
func wrap(public *connect.Error, cause error) error {
	return &Error{public: public, cause: cause}
}

// Error is a proxy error: the client sees Public, the log sees Cause too.
type Error struct {
	public *connect.Error
	cause  error
}

func (e *Error) Error() string { return e.public.Message() + ": " + e.cause.Error() }

// As lets connect.CodeOf and the error writer see the public error.
func (e *Error) As(target any) bool {
	if t, ok := target.(**connect.Error); ok {
		*t = e.public
		return true
	}
	return false
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.cause }

// readBody reads a unary body within the body timeout and the size limit.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > p.maxBody {
		return nil, ErrTooLarge
	}
	rc := http.NewResponseController(w)
	// http1 is whether the body's deadline is the connection's read deadline. An HTTP/2
	// stream's deadline is set, and lifted, by a message to the connection's serving goroutine
	// and a timer there, a hand-off each way for every call; a timer here sets an expired one
	// only when the body is late, and stops when it is read.
	http1 := r.ProtoMajor == 1
	if p.bodyTimeout > 0 {
		if http1 {
			_ = rc.SetReadDeadline(time.Now().Add(p.bodyTimeout))
		} else {
			late := time.AfterFunc(p.bodyTimeout, func() { _ = rc.SetReadDeadline(expired) })
			defer late.Stop()
		}
	}
	size := r.ContentLength
	if size < 0 {
		size = 512
	}
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > p.maxBody {
				return nil, ErrTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > p.maxBody {
			return nil, ErrTooLarge
		}
		if err == io.EOF {
			if p.bodyTimeout > 0 && http1 {
				// Read whole, the body no longer needs a deadline; net/http's read that watches
				// for the client going away must not fail by it. A body that failed keeps it, so
				// that net/http's discard of the rest of it fails by it too.
				_ = rc.SetReadDeadline(time.Time{})
			}
			return buf, nil
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				// A body the gateway bounds itself (see Limited) ran past the limit.
				return nil, ErrTooLarge
			}
			return nil, BodyError(err, r.Context().Err() != nil)
		}
	}
}

// BodyError is what a client whose request body could not be read is told: deadline_exceeded
// when it did not arrive within the body timeout, canceled when the client went away, and
// invalid_argument otherwise.
func BodyError(err error, canceled bool) error {
	switch {
	case isTimeout(err):
		return wrap(ErrBodyTimeout, err)
	case canceled:
		return wrap(ErrCanceled, err)
	default:
		return wrap(errUnreadableBody, err)
	}
}

// expired is a deadline that has passed.
var expired = time.Unix(1, 0)

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// Deadline is the call's bound, whether the client set one, and whether there is one at all:
// the route's timeout (0: none) or the client's protocol timeout (Connect-Timeout-Ms or
// grpc-timeout), whichever is shorter. A client timeout of 0 is a deadline that has already
// passed, as in gRPC, not a request for no bound: it never lifts the route's.
func Deadline(route time.Duration, connectTimeoutMs, grpcTimeout string) (d time.Duration, fromClient, ok bool) {
	client, ok := ParseClientTimeout(connectTimeoutMs, grpcTimeout)
	switch {
	case !ok:
		return route, false, route > 0
	case route <= 0:
		return client, true, true
	default:
		return min(route, client), true, true
	}
}

// UpstreamGrace is how long after a client's deadline the gateway gives up on the upstream's
// own answer to it.
const UpstreamGrace = 100 * time.Millisecond

// TimeoutHeader is the header that tells the upstream the call's deadline d in the protocol
// of contentType: grpc-timeout for gRPC and gRPC-Web, Connect-Timeout-Ms otherwise.
func TimeoutHeader(contentType string, d time.Duration) (name, value string) {
	if strings.HasPrefix(contentType, "application/grpc") {
		return headers.GRPCTimeout, grpcTimeout(d)
	}
	return headers.ConnectTimeout, ConnectTimeout(d)
}

// ConnectTimeout encodes d as Connect-Timeout-Ms, rounded up: a positive deadline under a
// millisecond must not read as an expired one.
func ConnectTimeout(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

// grpcTimeout encodes d as gRPC's Timeout: at most eight digits, in the finest unit that
// holds it, rounded up.
func grpcTimeout(d time.Duration) string {
	const most = 99_999_999
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if n := (d + u.unit - 1) / u.unit; n <= most {
			return strconv.FormatInt(int64(n), 10) + u.name
		}
	}
	// A Duration holds about 2.5 million hours, so hours always fit.
	return strconv.FormatInt(int64((d+time.Hour-1)/time.Hour), 10) + "H"
}

// ParseClientTimeout reads a deadline from the values of Connect-Timeout-Ms and grpc-timeout;
// Connect's wins when both are set.
func ParseClientTimeout(connectTimeoutMs, grpcTimeout string) (time.Duration, bool) {
	if v := connectTimeoutMs; v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 || len(v) > 10 {
			return 0, false
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	v := grpcTimeout
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(time.Duration(1<<63-1)/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

func upstreamURL(base string, r *http.Request) *urlValue {
	return newURL(base, r.URL.Path, r.URL.RawPath, r.URL.RawQuery)
}

// isGRPC reports gRPC's content types (application/grpc, application/grpc+proto), which need
// HTTP/2 end to end; gRPC-Web's do not.
func isGRPC(ct string) bool {
	return strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/grpc-web")
}

// isStream reports response content types whose bodies are sequences of messages.
func isStream(ct string) bool {
	return strings.HasPrefix(ct, "application/connect+") || strings.HasPrefix(ct, "application/grpc")
}

// enveloped reports request content types framed as length-prefixed messages, whose sizes
// can be checked as they pass (gRPC-Web's text variant is base64 and is left to the service).
func enveloped(h http.Header) bool {
	ct := h.Get("Content-Type")
	return (strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/grpc-web-text")) ||
		strings.HasPrefix(ct, "application/connect+")
}

// codeOf reads the outcome of an upstream answer: grpc-status when present, else the HTTP
// status as Connect maps it.
func codeOf(status int, h http.Header) connect.Code {
	return CodeOf(status, h.Get("Grpc-Status"))
}

// CodeOf reads the outcome of an upstream answer from its status and its grpc-status value
// ("" when absent).
func CodeOf(status int, grpcStatus string) connect.Code {
	if v := grpcStatus; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 16 {
			return connect.CodeUnknown
		}
		return connect.Code(n)
	}
	switch status {
	case http.StatusOK:
		return 0
	case http.StatusBadRequest:
		return connect.CodeInvalidArgument
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeNotFound
	case http.StatusConflict:
		return connect.CodeAlreadyExists
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return connect.CodeDeadlineExceeded
	case http.StatusTooManyRequests:
		return connect.CodeResourceExhausted
	case http.StatusNotImplemented:
		return connect.CodeUnimplemented
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return connect.CodeUnavailable
	case http.StatusPreconditionFailed:
		return connect.CodeFailedPrecondition
	case 499:
		return connect.CodeCanceled
	default:
		return connect.CodeUnknown
	}
}

// StatusOf is the HTTP status Connect's unary protocol uses for code. REST answers use it too:
// it is the mapping google.rpc.Code documents and grpc-gateway follows.
func StatusOf(code connect.Code) int {
	switch code {
	case 0:
		return http.StatusOK
	case connect.CodeCanceled:
		return 499
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnimplemented:
		return http.StatusNotImplemented
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	default:
		return http.StatusInternalServerError
	}
}

// bytesBody is a buffered request body that can be read again from the start.
type bytesBody struct {
	b   []byte
	off int
}

func (b *bytesBody) Read(p []byte) (int, error) {
	if b.off >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

func (b *bytesBody) Close() error { return nil }

// streamBody passes a client's stream on, checking that no message is larger than the limit.
// A compressed message, when the gateway can inflate the stream's encoding, is held back until
// it has arrived whole and its inflated size is known to be within the limit (see
// CheckCompressed); every other byte goes on as it arrives.
type streamBody struct {
	r              io.ReadCloser
	checkEnvelopes bool
	framing        envelopes
	// encoding is the encoding of the stream's compressed messages when the gateway inflates
	// it, or "".
	encoding string
	limit    int64
	// held is the compressed message being held back, its prefix included, while holding.
	held    []byte
	holding bool
	// out is what goes upstream before anything else: a checked message, or bytes that followed
	// one. rest is what the client sent after the bytes looked at so far, and readErr what
	// ended the client's last read, both for after out.
	out, rest, restBuf []byte
	readErr            error

	mu      sync.Mutex
	started bool
	err     error
}

func newStreamBody(body io.ReadCloser, h http.Header, limit int64) *streamBody {
	s := &streamBody{r: body, checkEnvelopes: enveloped(h), framing: envelopes{limit: uint64(limit)}, limit: limit}
	if e := messageEncoding(h); s.checkEnvelopes && e == gzipEncoding {
		s.encoding = e
	}
	return s
}

func (s *streamBody) Read(p []byte) (int, error) {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	if !s.checkEnvelopes {
		return s.r.Read(p)
	}
	for {
		if len(s.out) > 0 {
			n := copy(p, s.out)
			s.out = s.out[n:]
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		b, fromClient := s.rest, false
		s.rest = nil
		if len(b) == 0 {
			if s.readErr != nil {
				if s.holding {
					// A message cut short goes on as it came, for the service to refuse.
					s.out, s.holding = s.held, false
					continue
				}
				return 0, s.readErr
			}
			n, err := s.r.Read(p)
			b, fromClient, s.readErr = p[:n], true, err
		}
		// The first k bytes of b go on now (passing) or into the held message; the rest are
		// looked at next, after what goes out before them.
		var k int
		passing := !s.holding
		if passing {
			var ok bool
			k, ok = s.framing.pass(b, s.encoding != "")
			switch {
			case !ok:
				s.err = ErrTooLarge
			case k < len(b):
				s.holding, s.held = true, s.held[:0]
			}
		} else {
			k = s.hold(b)
		}
		if s.err != nil {
			return 0, s.err
		}
		if fromClient {
			// p is the caller's: what follows its first k bytes is kept here.
			s.restBuf = append(s.restBuf[:0], b[k:]...)
			s.rest = s.restBuf
			if passing && k > 0 {
				return k, nil
			}
		} else {
			s.rest = b[k:]
			if passing {
				s.out = b[:k]
			}
		}
	}
}

// hold adds the bytes of b that belong to the held message to it and returns how many. Once
// the message is whole, it goes out next when it inflates within the limit; otherwise the
// stream fails with ErrTooLarge.
func (s *streamBody) hold(b []byte) int {
	k := 0
	if len(s.held) < 5 {
		k = min(5-len(s.held), len(b))
		s.held = append(s.held, b[:k]...)
		if len(s.held) < 5 {
			return k
		}
	}
	whole := 5 + int64(binary.BigEndian.Uint32(s.held[1:5]))
	if whole-5 > s.limit {
		s.err = ErrTooLarge
		return k
	}
	n := int(min(int64(len(b)-k), whole-int64(len(s.held))))
	s.held = append(s.held, b[k:k+n]...)
	k += n
	if int64(len(s.held)) == whole {
		s.holding = false
		if err := CheckCompressed(s.encoding, s.held[5:], s.limit); err != nil {
			s.err = err
			return k
		}
		s.out = s.held
	}
	return k
}

// Close leaves the client's body to net/http, which closes it when the handler returns: the
// transport closes a request body when a call fails, and a retry needs it open.
func (s *streamBody) Close() error { return nil }

func (s *streamBody) again() (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil, fmt.Errorf("proxy: the stream was partly sent; it cannot be sent again")
	}
	return s, nil
}
