package gateway

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/headers"
)

// codecUnderTest is one of the servers beneath the gateway's pipeline, reached as its clients
// reach it: each has a gateway (and an upstream) of its own, so that the in-flight bound and
// the rate-limit buckets of one do not touch another's.
type codecUnderTest struct {
	name   string
	f      *fixture
	url    string
	client *http.Client
	// proto is the HTTP major version the client must have spoken.
	proto int
	// fast is true for the gateway's own HTTP/1.1 server, whose calls the fast path's counter
	// counts; a request it cannot carry it hands to net/http, and the counter stays.
	fast bool
	tls  bool
}

const (
	parityGetCurrentUser = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	parityGetUser        = "/basalt.identity.v1.IdentityService/GetUser"
	parityListUsers      = "/basalt.identity.v1.IdentityService/ListUsers"
	parityLogin          = "/basalt.auth.v1.AuthService/Login"
	parityOrigin         = "http://localhost:5173"
)

// parityConfig sets bounds every outcome can be reached by: one call in flight, 64 KiB bodies,
// GetUser bounded by 300 ms with no client deadline (so that the gateway, not the upstream,
// answers deadline_exceeded), ListUsers limited to one call per 1,000 seconds, and a blog
// service nobody serves.
func parityConfig(c *config.Config) {
	c.Limits.MaxInFlight = 1
	c.Limits.MaxRequestBytes = 64 << 10
	timeout := config.Duration(300 * time.Millisecond)
	c.Routes = map[string]config.Route{
		parityGetUser:   {Timeout: &timeout},
		parityListUsers: {RateLimit: &config.Rate{Rate: 0.001, Burst: 1}},
	}
	c.Upstreams["blog"] = []string{"http://127.0.0.1:1"}
}

// startCodecs starts a gateway for every codec: the h1 fast path; HTTP/1.1 on net/http
// (limits.disable_fast_path); h2c, which the h1 server hands to net/http; and HTTP/2 over TLS.
func startCodecs(t *testing.T, k keys, edit func(*config.Config)) []codecUnderTest {
	t.Helper()
	certFile, keyFile, pool := selfSignedFiles(t)
	fast := newFixtureWithKeys(t, k, 1, edit)
	slow := newFixtureWithKeys(t, k, 1, func(c *config.Config) { edit(c); c.Limits.DisableFastPath = true })
	h2c := newFixtureWithKeys(t, k, 1, edit)
	secure := newFixtureWithKeys(t, k, 1, func(c *config.Config) { edit(c); c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return []codecUnderTest{
		{name: "h1 fast path", f: fast, url: fast.url, client: fast.h1, proto: 1, fast: true},
		{name: "HTTP/1.1 on net/http", f: slow, url: slow.url, client: slow.h1, proto: 1},
		{name: "h2c", f: h2c, url: h2c.url, client: h2c.h2, proto: 2},
		{name: "TLS h2", f: secure, url: strings.Replace(secure.url, "http://", "https://", 1), client: &http.Client{Transport: tr}, proto: 2, tls: true},
	}
}

func (cd codecUnderTest) do(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, cd.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := cd.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.ProtoMajor != cd.proto {
		t.Fatalf("%s answered over HTTP/%d, want HTTP/%d", cd.name, resp.ProtoMajor, cd.proto)
	}
	return resp, b.String()
}

// TestEveryCodecAnswersAlike sends every outcome of the gateway's policy through every codec
// beneath its pipeline and checks that each answers it the same: the status, the Connect code
// and message (the whole body, across codecs), and the headers the policy sets. An outcome the
// fast path cannot carry is handed to net/http, which the fast path's counter shows.
func TestEveryCodecAnswersAlike(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	codecs := startCodecs(t, k, parityConfig)
	token := "Bearer " + k.token(t, "user-1")
	jsonCall := map[string]string{"Content-Type": "application/json", "Authorization": token}
	big := `{"userId":"` + strings.Repeat("a", 100<<10) + `"}`
	type outcome struct {
		name               string
		method, path, body string
		header             map[string]string
		origin             string
		// around runs before the call, and what it returns after it.
		around func(t *testing.T, cd codecUnderTest) func()
		// What the answer must be: the status, the Connect code and message ("" for an
		// answer that is not an error), and the headers' values ("" for none).
		status                             int
		code, message                      string
		retryAfter, challenge, contentType string
		// handedOver is true for a request the fast path cannot carry and hands, with its
		// connection, to net/http: an OPTIONS, a procedure that is not routed, a body over the
		// limit.
		handedOver bool
	}
	outcomes := []outcome{
		{name: "ok", method: "POST", path: parityGetCurrentUser, body: "{}", header: jsonCall,
			status: 200, contentType: "application/json"},
		{name: "ok from a refused origin", method: "POST", path: parityGetCurrentUser, body: "{}", header: jsonCall, origin: "https://evil.example",
			status: 200, contentType: "application/json"},
		{name: "unauthenticated without a token", method: "POST", path: parityGetCurrentUser, body: "{}", header: map[string]string{"Content-Type": "application/json"},
			status: 401, code: "unauthenticated", message: errNoToken.Message(), challenge: "Bearer", contentType: "application/json"},
		{name: "unauthenticated with a forged token", method: "POST", path: parityGetCurrentUser, body: "{}",
			header: map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + tamper(strings.TrimPrefix(token, "Bearer "))},
			status: 401, code: "unauthenticated", message: errInvalidToken.Message(), challenge: `Bearer error="invalid_token"`, contentType: "application/json"},
		{name: "permission denied by the upstream", method: "POST", path: parityGetUser, body: `{"userId":"forbidden"}`, header: jsonCall,
			status: 403, code: "permission_denied", message: "not yours to read", contentType: "application/json"},
		{name: "an upstream's error with details", method: "POST", path: parityGetUser, body: `{"userId":"missing"}`, header: jsonCall,
			status: 404, code: "not_found", message: "no user missing", contentType: "application/json"},
		{name: "an upstream's refusal of the body", method: "POST", path: parityGetUser, body: "not json", header: jsonCall,
			status: 400, code: "invalid_argument", contentType: "application/json"},
		{name: "not found", method: "POST", path: "/basalt.identity.v1.IdentityService/VerifyCredentials", body: "{}", header: jsonCall,
			status: 404, code: "not_found", message: errNotFound.Message(), contentType: "application/json", handedOver: true},
		{name: "throttled", method: "POST", path: parityListUsers, body: "{}", header: jsonCall,
			around: func(t *testing.T, cd codecUnderTest) func() {
				// The route's bucket holds one call; this one takes it.
				cd.do(t, "POST", parityListUsers, "{}", jsonCall)
				return func() {}
			},
			status: 429, code: "resource_exhausted", message: "too many requests; retry after 1000s", retryAfter: "1000", contentType: "application/json"},
		{name: "overloaded", method: "POST", path: parityGetCurrentUser, body: "{}", header: jsonCall,
			around: func(t *testing.T, cd codecUnderTest) func() {
				// One call in flight, held by the upstream, fills the gateway.
				u := cd.f.upstreams[0]
				hits := u.hits.Load()
				done := make(chan struct{})
				go func() {
					defer close(done)
					req, _ := http.NewRequest("POST", cd.url+parityLogin, strings.NewReader(`{"email":"a@b.c","password":"block"}`))
					req.Header.Set("Content-Type", "application/json")
					if resp, err := cd.client.Do(req); err == nil {
						resp.Body.Close()
					}
				}()
				testkitEventually(t, func() bool { return u.hits.Load() == hits+1 })
				return func() {
					u.release <- struct{}{}
					<-done
				}
			},
			status: 503, code: "unavailable", message: errOverloaded.Message(), retryAfter: "1", contentType: "application/json"},
		{name: "too large", method: "POST", path: parityGetCurrentUser, body: big, header: jsonCall,
			status: 413, code: "resource_exhausted", message: "the request is larger than the gateway accepts", contentType: "application/json", handedOver: true},
		{name: "too large once inflated", method: "POST", path: parityGetCurrentUser, body: string(gzipBomb(t, 8<<20)),
			header: map[string]string{"Content-Type": "application/json", "Authorization": token, "Content-Encoding": "gzip"},
			status: 413, code: "resource_exhausted", message: "the request is larger than the gateway accepts", contentType: "application/json"},
		{name: "preflight", method: "OPTIONS", path: parityGetCurrentUser,
			header: map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"},
			status: 204, handedOver: true},
		{name: "deadline exceeded", method: "POST", path: parityGetUser, body: `{"userId":"block"}`, header: jsonCall,
			status: 504, code: "deadline_exceeded", message: "the call did not complete in time", contentType: "application/json"},
		{name: "upstream down", method: "POST", path: "/basalt.blog.v1.BlogService/GetPost", body: `{"postId":"p-1"}`, header: jsonCall,
			status: 503, code: "unavailable", message: "the service is unavailable", contentType: "application/json"},
	}
	var mu sync.Mutex
	bodies := map[string]map[string]string{} // by outcome, by codec
	t.Run("codecs", func(t *testing.T) {
		for _, cd := range codecs {
			t.Run(cd.name, func(t *testing.T) {
				t.Parallel()
				for i, o := range outcomes {
					// The outcomes run in order: overloaded and throttled change the gateway's
					// state only while they run.
					t.Run(o.name, func(t *testing.T) {
						origin := parityOrigin
						if o.origin != "" {
							origin = o.origin
						}
						id := "parity-" + strconv.Itoa(i)
						header := merge(o.header, map[string]string{"Origin": origin, "X-Request-Id": id})
						after := func() {}
						if o.around != nil {
							after = o.around(t, cd)
						}
						before := fastServed(t, cd.f)
						resp, body := cd.do(t, o.method, o.path, o.body, header)
						after()
						served := fastServed(t, cd.f) - before
						if o.handedOver {
							// net/http serves a connection handed to it for the rest of its life;
							// the next outcome starts on a new one.
							cd.client.CloseIdleConnections()
						}
						mu.Lock()
						if bodies[o.name] == nil {
							bodies[o.name] = map[string]string{}
						}
						bodies[o.name][cd.name] = body
						mu.Unlock()

						if want := 0; cd.fast && !o.handedOver {
							if served != 1 {
								t.Errorf("the fast path served %d calls, want 1", served)
							}
						} else if served != want {
							t.Errorf("the fast path served %d calls, want %d (handed over to net/http)", served, want)
						}
						if resp.StatusCode != o.status {
							t.Fatalf("status %d %q, want %d", resp.StatusCode, body, o.status)
						}
						var e struct{ Code, Message string }
						if o.code != "" {
							if err := json.Unmarshal([]byte(body), &e); err != nil {
								t.Fatalf("the error %q is not Connect's JSON: %v", body, err)
							}
						}
						if e.Code != o.code || (o.message != "" && e.Message != o.message) {
							t.Errorf("code %q message %q, want %q %q", e.Code, e.Message, o.code, o.message)
						}
						if got := resp.Header.Values("X-Request-Id"); !slices.Equal(got, []string{id}) {
							t.Errorf("X-Request-Id %q, want the client's, once", got)
						}
						if vary := strings.Join(resp.Header.Values("Vary"), ","); !strings.Contains(vary, "Origin") {
							t.Errorf("Vary %q, want Origin among it", vary)
						}
						wantOrigin := ""
						if origin == parityOrigin {
							wantOrigin = origin
						}
						for _, h := range []struct{ name, want string }{
							{"Access-Control-Allow-Origin", wantOrigin},
							{"Retry-After", o.retryAfter},
							{"Www-Authenticate", o.challenge},
							{"Content-Type", o.contentType},
						} {
							if got := strings.Join(resp.Header.Values(h.name), ","); got != h.want {
								t.Errorf("%s %q, want %q", h.name, got, h.want)
							}
						}
					})
				}
			})
		}
	})
	for _, o := range outcomes {
		want := bodies[o.name][codecs[0].name]
		for _, cd := range codecs[1:] {
			if got := bodies[o.name][cd.name]; got != want {
				t.Errorf("%s: %s answered %q, %s %q", o.name, cd.name, got, codecs[0].name, want)
			}
		}
	}
}

// TestEveryCodecAppliesTheUpstreamRules sends a call with headers of every kind the rule set
// (headers.Upstream) knows through every codec, and checks that the upstream, which records
// what reached it, saw each client header exactly when the rule lets it pass, and the
// gateway's own headers (headers.Added) as the rule set writes them. A header added to a rule
// is checked on every codec by adding its name here.
func TestEveryCodecAppliesTheUpstreamRules(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	codecs := startCodecs(t, k, func(*config.Config) {})
	token := "Bearer " + k.token(t, "user-1")
	sent := []string{
		"X-Basalt-Subject", "X-Basalt-Service-Token", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "Forwarded", "X-Real-Ip", "Traceparent", "Tracestate", "Baggage",
		"Proxy-Authorization", "X-Custom", "X-Another",
	}
	for _, cd := range codecs {
		t.Run(cd.name, func(t *testing.T) {
			t.Parallel()
			header := map[string]string{
				"Content-Type": "application/json", "Authorization": token, "X-Request-Id": "rules-1",
				"Connect-Timeout-Ms": "5000",
			}
			for _, name := range sent {
				header[name] = "from-the-client"
			}
			header["Traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			before := fastServed(t, cd.f)
			resp, body := cd.do(t, "POST", parityGetCurrentUser, "{}", header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if served := fastServed(t, cd.f) - before; served != map[bool]int{true: 1}[cd.fast] {
				t.Errorf("the fast path served %d calls", served)
			}
			seen := cd.f.upstreams[0].seen()
			for _, name := range sent {
				passes := headers.Upstream(name) == headers.Pass
				if got := slices.Contains(seen.Values(name), header[name]); got != passes {
					t.Errorf("the upstream saw the client's %s: %t, want %t (%q)", name, got, passes, seen.Values(name))
				}
			}
			wantProto := ""
			if cd.tls {
				wantProto = "https"
			}
			for _, h := range []struct{ name, want string }{
				{"X-Forwarded-For", "127.0.0.1"},
				{"X-Forwarded-Proto", wantProto},
				{"X-Basalt-Subject", "user-1"},
				{"X-Request-Id", "rules-1"},
				{"Traceparent", ""},
				{"Grpc-Timeout", ""},
			} {
				if got := strings.Join(seen.Values(h.name), ","); got != h.want {
					t.Errorf("the upstream saw %s %q, want %q", h.name, got, h.want)
				}
			}
			// The client's deadline goes on as the gateway's, once, shortened by the time spent.
			got := seen.Values("Connect-Timeout-Ms")
			if ms, err := strconv.Atoi(strings.Join(got, ",")); err != nil || ms <= 0 || ms > 5000 {
				t.Errorf("the upstream saw Connect-Timeout-Ms %q, want one value of at most 5000", got)
			}
		})
	}
}
