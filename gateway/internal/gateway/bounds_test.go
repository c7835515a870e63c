package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/proxy"
)

// gzipBomb returns a gzip body of about a thousandth of size that inflates to size zero
// bytes: a member holding a mebibyte of zeros, repeated, as a client may send it (gzip readers
// read every member of a body, connect-go's among them).
func gzipBomb(t testing.TB, size int64) []byte {
	t.Helper()
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(member.Bytes(), int(size>>20))
}

// envelope frames msg as one length-prefixed message of the streaming protocols.
func envelope(flags byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// outcome is what a client reads from an answer: its HTTP status, and the code and message in
// its protocol's place for them (the body of a Connect unary or REST answer, a stream's last
// message, gRPC's trailers).
type outcome struct {
	status  int
	code    string
	message string
}

// refused is the outcome of a request the gateway refused as too large itself: the status, the
// code, and the gateway's message (the services say it in their own words).
func refused(status int, code string) outcome {
	return outcome{status, code, proxy.ErrTooLarge.Message()}
}

// protocolOutcome reads resp whole and returns its outcome as the client's protocol says.
func protocolOutcome(t *testing.T, resp *http.Response) outcome {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	o := outcome{status: resp.StatusCode}
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		if v := resp.Header.Get("Grpc-Status"); v != "" {
			// A trailers-only answer.
			o.code = "grpc-status " + v
			o.message, _ = url.PathUnescape(resp.Header.Get("Grpc-Message"))
		}
		for len(body) >= 5 {
			n := binary.BigEndian.Uint32(body[1:5])
			if body[0]&0x80 != 0 {
				for line := range strings.Lines(string(body[5 : 5+n])) {
					name, v, _ := strings.Cut(strings.TrimSpace(line), ":")
					switch strings.ToLower(name) {
					case "grpc-status":
						o.code = "grpc-status " + strings.TrimSpace(v)
					case "grpc-message":
						o.message, _ = url.PathUnescape(strings.TrimSpace(v))
					}
				}
			}
			body = body[5+n:]
		}
	case strings.HasPrefix(ct, "application/grpc"):
		h := resp.Trailer
		if resp.Header.Get("Grpc-Status") != "" {
			h = resp.Header
		}
		o.code = "grpc-status " + h.Get("Grpc-Status")
		o.message, _ = url.PathUnescape(h.Get("Grpc-Message"))
	case strings.HasPrefix(ct, "application/connect+"):
		var end struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		for len(body) >= 5 {
			n := binary.BigEndian.Uint32(body[1:5])
			if body[0]&0x02 != 0 {
				_ = json.Unmarshal(body[5:5+n], &end)
			}
			body = body[5+n:]
		}
		o.code, o.message = end.Error.Code, end.Error.Message
	default:
		// Connect's unary errors name the code; REST's (google.rpc.Status) number it.
		var e struct {
			Code    any    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("the answer %d %q is not a JSON error", resp.StatusCode, body)
		}
		o.message = e.Message
		switch c := e.Code.(type) {
		case string:
			o.code = c
		case float64:
			o.code = map[float64]string{8: "resource_exhausted"}[c]
			if o.code == "" {
				o.code = "code " + string(rune('0'+int(c)))
			}
		}
	}
	return o
}

// boundedRequest is one request through the gateway whose body is too large for it.
type boundedRequest struct {
	name   string
	http2  bool
	method string
	path   string
	header map[string]string
	body   []byte
	want   outcome
}

const (
	loginPath      = "/basalt.auth.v1.AuthService/Login"
	getUserPath    = "/basalt.identity.v1.IdentityService/GetUser"
	exportPath     = "/basalt.audit.v1.AuditService/ExportEvents"
	restLoginPath  = "/v1/auth/login"
	tooLarge       = "resource_exhausted"
	grpcTooLarge   = "grpc-status 8"
	statusTooLarge = http.StatusRequestEntityTooLarge
)

// send sends r through f and returns its outcome; the upstreams must not have been reached.
func (f *fixture) send(t *testing.T, r boundedRequest) outcome {
	t.Helper()
	var body io.Reader = http.NoBody
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, f.url+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	client := f.h1
	if r.http2 {
		client = f.h2
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return protocolOutcome(t, resp)
}

// compressedCalls are calls of every protocol whose one message is bomb, compressed as the
// protocol says, but for Connect's GET, whose message is the smaller getBomb, as it must fit
// the header limit; token authenticates them.
func compressedCalls(bomb, getBomb []byte, token string) []boundedRequest {
	auth := "Bearer " + token
	query := url.Values{
		"connect": {"v1"}, "encoding": {"json"}, "compression": {"gzip"}, "base64": {"1"},
		"message": {base64.RawURLEncoding.EncodeToString(getBomb)},
	}
	return []boundedRequest{
		{name: "REST", method: http.MethodPost, path: restLoginPath, body: bomb,
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"},
			want:   refused(statusTooLarge, tooLarge)},
		{name: "Connect unary, HTTP/1.1", method: http.MethodPost, path: loginPath, body: bomb,
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"},
			want:   refused(statusTooLarge, tooLarge)},
		{name: "Connect unary, h2c", http2: true, method: http.MethodPost, path: loginPath, body: bomb,
			header: map[string]string{"Content-Type": "application/proto", "Content-Encoding": "gzip"},
			want:   refused(statusTooLarge, tooLarge)},
		{name: "Connect GET", method: http.MethodGet, path: getUserPath + "?" + query.Encode(),
			header: map[string]string{"Authorization": auth},
			want:   refused(statusTooLarge, tooLarge)},
		{name: "Connect server stream", method: http.MethodPost, path: exportPath, body: envelope(1, bomb),
			header: map[string]string{"Content-Type": "application/connect+proto", "Connect-Content-Encoding": "gzip", "Authorization": auth},
			want:   refused(http.StatusOK, tooLarge)},
		{name: "gRPC", http2: true, method: http.MethodPost, path: loginPath, body: envelope(1, bomb),
			header: map[string]string{"Content-Type": "application/grpc", "Grpc-Encoding": "gzip", "Te": "trailers"},
			want:   refused(http.StatusOK, grpcTooLarge)},
		{name: "gRPC-Web", method: http.MethodPost, path: loginPath, body: envelope(1, bomb),
			header: map[string]string{"Content-Type": "application/grpc-web+proto", "Grpc-Encoding": "gzip"},
			want:   refused(http.StatusOK, grpcTooLarge)},
		{name: "gRPC-Web server stream", method: http.MethodPost, path: exportPath, body: envelope(1, bomb),
			header: map[string]string{"Content-Type": "application/grpc-web+proto", "Grpc-Encoding": "gzip", "Authorization": auth},
			want:   refused(http.StatusOK, grpcTooLarge)},
	}
}

// TestCompressedBodiesAreBoundedWhileInflating sends, in every protocol, a message that a
// mebibyte of gzip inflates to a gibibyte: the gateway answers that it is too large without
// forwarding it, and what it allocates meanwhile is far below what the message inflates to, so
// it counted while inflating. The test does not run in parallel, so that the allocations
// counted are this request's.
func TestCompressedBodiesAreBoundedWhileInflating(t *testing.T) {
	const inflated, getInflated = 1 << 30, 32 << 20
	// The default limit, 4 MiB, is more than the bomb: it is refused for what it inflates to.
	f := newFixture(t, 1, unlimited)
	bomb, getBomb := gzipBomb(t, inflated), gzipBomb(t, getInflated)
	if len(bomb) > 2<<20 {
		t.Fatalf("the bomb is %d bytes", len(bomb))
	}
	for _, r := range compressedCalls(bomb, getBomb, f.keys.token(t, "user-1")) {
		t.Run(r.name, func(t *testing.T) {
			inflated := int64(inflated)
			if r.method == http.MethodGet {
				inflated = getInflated
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got := f.send(t, r)
			runtime.ReadMemStats(&after)
			if got != r.want {
				t.Errorf("got %+v, want %+v", got, r.want)
			}
			// The gateway reads the mebibyte (and the client and the test hold copies); what
			// it inflates to count is dropped as it goes.
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > uint64(inflated/16) {
				t.Errorf("the process allocated %d MiB serving a message that inflates to %d MiB", allocated>>20, inflated>>20)
			}
		})
	}
	if n := f.upstreams[0].hits.Load(); n != 0 {
		t.Errorf("%d calls reached the upstream", n)
	}
}

// TestBodiesOverTheLimitAreTooLarge sends a body over limits.max_request_bytes in every
// protocol, with and without a length, compressed or not: the answer is 413 where the protocol
// answers with an HTTP status (REST, Connect's unary calls), and resource_exhausted in the
// protocol's trailers otherwise; never 429, which invites a retry that would fail the same way.
func TestBodiesOverTheLimitAreTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 16 << 10
	f := newFixture(t, 1, func(c *config.Config) {
		c.Limits.MaxRequestBytes = limit
		unlimited(c)
	})
	token := "Bearer " + f.keys.token(t, "user-1")
	json := []byte(`{"email":"` + strings.Repeat("a", limit) + `@example.com","password":"right"}`)
	msg := make([]byte, limit+1)
	// A body that compresses below the limit and inflates past it.
	var small bytes.Buffer
	zw := gzip.NewWriter(&small)
	_, _ = zw.Write(json)
	_ = zw.Close()
	tests := []boundedRequest{
		{name: "REST", method: http.MethodPost, path: restLoginPath, body: json,
			header: map[string]string{"Content-Type": "application/json"}, want: refused(statusTooLarge, tooLarge)},
		{name: "REST, h2c", http2: true, method: http.MethodPost, path: restLoginPath, body: json,
			header: map[string]string{"Content-Type": "application/json"}, want: refused(statusTooLarge, tooLarge)},
		{name: "REST, gzip", method: http.MethodPost, path: restLoginPath, body: small.Bytes(),
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, want: refused(statusTooLarge, tooLarge)},
		{name: "Connect unary, HTTP/1.1", method: http.MethodPost, path: loginPath, body: json,
			header: map[string]string{"Content-Type": "application/json"}, want: refused(statusTooLarge, tooLarge)},
		{name: "Connect unary, gzip, HTTP/1.1", method: http.MethodPost, path: loginPath, body: small.Bytes(),
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, want: refused(statusTooLarge, tooLarge)},
		{name: "Connect unary, h2c", http2: true, method: http.MethodPost, path: loginPath, body: json,
			header: map[string]string{"Content-Type": "application/json"}, want: refused(statusTooLarge, tooLarge)},
		{name: "Connect unary, authenticated", method: http.MethodPost, path: getUserPath, body: json,
			header: map[string]string{"Content-Type": "application/json", "Authorization": token}, want: refused(statusTooLarge, tooLarge)},
		{name: "Connect server stream", method: http.MethodPost, path: exportPath, body: envelope(0, msg),
			header: map[string]string{"Content-Type": "application/connect+proto", "Authorization": token}, want: refused(http.StatusOK, tooLarge)},
		{name: "gRPC", http2: true, method: http.MethodPost, path: loginPath, body: envelope(0, msg),
			header: map[string]string{"Content-Type": "application/grpc", "Te": "trailers"}, want: refused(http.StatusOK, grpcTooLarge)},
		{name: "gRPC-Web", method: http.MethodPost, path: loginPath, body: envelope(0, msg),
			header: map[string]string{"Content-Type": "application/grpc-web+proto"}, want: refused(http.StatusOK, grpcTooLarge)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.send(t, tt); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
		// Without a length: the client streams the body (chunked over HTTP/1.1).
		tt.name += ", no length"
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body
			tt.body = nil
			var req *http.Request
			req, err := http.NewRequest(tt.method, f.url+tt.path, io.MultiReader(bytes.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			client := f.h1
			if tt.http2 {
				client = f.h2
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if got := protocolOutcome(t, resp); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if n := f.upstreams[0].hits.Load(); n != 0 {
		t.Errorf("%d calls reached the upstream", n)
	}
}

// unlimited lifts the rate limits of c, so that a test can call a public method many times.
func unlimited(c *config.Config) {
	c.RateLimits.Public = config.Rate{Rate: 1e6, Burst: 1e6}
	c.Routes = nil
}
