package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/telemetry"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

// TestFastPathRelaysAnswerHeaders has an upstream answer with header lines a proxy must not
// pass on, or must not take as they are, in the cases upstreams send them: the answer is framed
// anew, hop-by-hop headers stop at the gateway, the gateway's own headers win over the
// upstream's of the same name in any case, and Vary lines add up. The fast path and net/http
// must agree on all of it.
func TestFastPathRelaysAnswerHeaders(t *testing.T) {
	t.Parallel()
	raw := testkit.StartRawServer(t, testkit.AlwaysReply(testkit.RawReply{Data: "HTTP/1.1 200 OK\r\n" +
		"Content-Type: application/proto\r\n" +
		"content-length: 0\r\n" +
		"x-request-id: from-the-upstream\r\n" +
		"access-control-allow-origin: *\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"proxy-connection: keep-alive\r\n" +
		"Trailer: X-Never\r\n" +
		"Vary: Accept-Encoding\r\n" +
		"X-Custom: kept\r\n" +
		"x-lower-case: kept too\r\n" +
		"\r\n"}))
	useRaw := func(disable bool) func(*config.Config) {
		return func(c *config.Config) {
			c.Upstreams["identity"] = []string{raw.URL}
			c.Limits.DisableFastPath = disable
		}
	}
	k := newKeys(t)
	fast := newFixtureWithKeys(t, k, 1, useRaw(false))
	slow := newFixtureWithKeys(t, k, 1, useRaw(true))
	header := map[string]string{
		"Content-Type": "application/proto", "Authorization": "Bearer " + k.token(t, "user-1"),
		"Origin": "http://localhost:5173",
	}
	const path = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	for range 3 {
		// Later calls reuse the upstream connection and what was parsed of its answers.
		before := fastServed(t, fast)
		fr, fb := fast.do(t, http.MethodPost, path, "", header)
		sr, sb := slow.do(t, http.MethodPost, path, "", header)
		if got := fastServed(t, fast); got != before+1 {
			t.Fatalf("the fast path served %d requests, want 1", got-before)
		}
		if fr.StatusCode != http.StatusOK || fr.StatusCode != sr.StatusCode || fb != sb {
			t.Fatalf("fast path answered %d %q, net/http %d %q", fr.StatusCode, fb, sr.StatusCode, sb)
		}
		if diff := headerDiff(fr.Header, sr.Header, "Date", "X-Request-Id"); diff != "" {
			t.Errorf("response headers differ:\n%s", diff)
		}
		for _, name := range []string{"Keep-Alive", "Proxy-Connection", "Trailer"} {
			if v, ok := fr.Header[name]; ok {
				t.Errorf("the client got the hop-by-hop header %s: %q", name, v)
			}
		}
		if id := fr.Header.Values("X-Request-Id"); len(id) != 1 || id[0] == "from-the-upstream" {
			t.Errorf("X-Request-Id = %q, want the gateway's own, once", id)
		}
		if got := fr.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{"http://localhost:5173"}) {
			t.Errorf("Access-Control-Allow-Origin = %q, want the gateway's only", got)
		}
		if got := strings.Join(fr.Header.Values("Vary"), ","); !strings.Contains(got, "Origin") || !strings.Contains(got, "Accept-Encoding") {
			t.Errorf("Vary = %q, want the gateway's and the upstream's", got)
		}
		if fr.Header.Get("X-Custom") != "kept" || fr.Header.Get("X-Lower-Case") != "kept too" || fr.ContentLength != 0 {
			t.Errorf("X-Custom %q, X-Lower-Case %q, length %d: want kept, kept too, 0",
				fr.Header.Get("X-Custom"), fr.Header.Get("X-Lower-Case"), fr.ContentLength)
		}
	}
}

// TestAnAnswerCutShortBecomesAnError has an upstream hang up in the middle of its answer's
// body: nothing of it has reached the client, so both of the gateway's paths answer with an
// unavailable error instead, which carries the request id the client sent.
func TestAnAnswerCutShortBecomesAnError(t *testing.T) {
	t.Parallel()
	cut := testkit.StartRawServer(t, testkit.AlwaysReply(testkit.RawReply{
		Data:  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: upstream\r\nContent-Length: 100\r\n\r\n{\"user\"",
		Close: true,
	}))
	k := newKeys(t)
	for _, disable := range []bool{false, true} {
		f := newFixtureWithKeys(t, k, 1, func(c *config.Config) {
			c.Upstreams["identity"] = []string{cut.URL}
			c.Limits.DisableFastPath = disable
		})
		resp, body := f.do(t, http.MethodPost, "/basalt.identity.v1.IdentityService/GetCurrentUser", "{}", map[string]string{
			"Content-Type": "application/json", "Authorization": "Bearer " + k.token(t, "user-1"), "X-Request-Id": "cut-1",
		})
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"unavailable"`) {
			t.Errorf("net/http only %t: %d %q, want 503 and unavailable", disable, resp.StatusCode, body)
		}
		if got := resp.Header.Values("X-Request-Id"); !slices.Equal(got, []string{"cut-1"}) {
			t.Errorf("net/http only %t: X-Request-Id %q, want the client's, once", disable, got)
		}
	}
}

// TestUpstreamsSeeTheClientsHost sends calls with several Hosts on one connection through both
// of the gateway's paths: each reaches the upstream with the client's Host, as Envoy forwards
// it, and with no X-Forwarded-Host, even when the client sends one.
func TestUpstreamsSeeTheClientsHost(t *testing.T) {
	t.Parallel()
	up := testkit.StartRawServer(t, testkit.AlwaysReply(testkit.RawReply{Data: "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 0\r\n\r\n"}))
	k := newKeys(t)
	token := "Bearer " + k.token(t, "user-1")
	for _, disable := range []bool{false, true} {
		f := newFixtureWithKeys(t, k, 1, func(c *config.Config) {
			c.Upstreams["identity"] = []string{up.URL}
			c.Limits.DisableFastPath = disable
		})
		gatewayHost := strings.TrimPrefix(f.url, "http://")
		for _, host := range []string{"", "api.example", "api.example", "api.example:8443", ""} {
			req, err := http.NewRequest(http.MethodPost, f.url+"/basalt.identity.v1.IdentityService/GetCurrentUser", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/proto")
			req.Header.Set("Authorization", token)
			req.Header.Set("X-Forwarded-Host", "evil.example")
			want := gatewayHost
			if host != "" {
				req.Host, want = host, host
			}
			resp, err := f.h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			seen := up.Last()
			if resp.StatusCode != http.StatusOK || seen == nil {
				t.Fatalf("net/http only %t: %d", disable, resp.StatusCode)
			}
			if seen.Host != want || seen.Header.Get("X-Forwarded-Host") != "" {
				t.Errorf("net/http only %t: the upstream saw Host %q, X-Forwarded-Host %q; want %q and none",
					disable, seen.Host, seen.Header.Get("X-Forwarded-Host"), want)
			}
		}
	}
}

// TestTracingGatewaySendsItsTraceUpstream has a gateway that traces (telemetry without an
// exporter still samples and propagates) answer calls on both of its paths, one with a client's
// trace context: the upstream must see the gateway's own trace, whose id the access log names,
// and never the client's.
func TestTracingGatewaySendsItsTraceUpstream(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(t.Context(), "gateway", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	k := newKeys(t)
	const clientTrace = "0af7651916cd43dd8448eb211c80319c"
	for _, disable := range []bool{false, true} {
		f := newFixtureWithKeys(t, k, 1, func(c *config.Config) { c.Limits.DisableFastPath = disable }, WithTelemetry(tel))
		for _, clientContext := range []string{"", "00-" + clientTrace + "-b7ad6b7169203331-01"} {
			header := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + k.token(t, "user-1")}
			if clientContext != "" {
				header["Traceparent"] = clientContext
			}
			resp, body := f.do(t, http.MethodPost, "/basalt.identity.v1.IdentityService/GetCurrentUser", "{}", header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("net/http only %t: %d %q", disable, resp.StatusCode, body)
			}
			sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
				propagation.HeaderCarrier(f.upstreams[0].seen())))
			if !sc.IsValid() || sc.TraceID().String() == clientTrace {
				t.Fatalf("net/http only %t, client context %q: the upstream saw trace context %+v", disable, clientContext, sc)
			}
			want := `"request_id":"` + resp.Header.Get("X-Request-Id") + `"`
			testkitEventually(t, func() bool {
				for line := range strings.SplitSeq(f.logs.String(), "\n") {
					if strings.Contains(line, want) && strings.Contains(line, `"trace_id":"`+sc.TraceID().String()+`"`) {
						return true
					}
				}
				return false
			})
		}
	}
}

// TestFastPathLeavesTheRestToNetHTTP checks that requests the fast path does not take still
// work on a gateway that has it: they are served by net/http, and the fast path's counter does
// not move.
func TestFastPathLeavesTheRestToNetHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := f.keys.token(t, "user-1")
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
	}{
		{"an internal method", http.MethodPost, "/basalt.identity.v1.IdentityService/VerifyCredentials", "{}",
			map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}, http.StatusNotFound},
		{"a REST route", http.MethodGet, "/v1/me", "", map[string]string{"Authorization": "Bearer " + token}, http.StatusOK},
		{"a charset parameter", http.MethodPost, "/basalt.identity.v1.IdentityService/GetCurrentUser", "{}",
			map[string]string{"Content-Type": "application/json; charset=utf-8", "Authorization": "Bearer " + token}, http.StatusOK},
		{"health", http.MethodGet, "/healthz", "", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fastServed(t, f)
			resp, body := f.do(t, tt.method, tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d %q, want %d", tt.method, tt.path, resp.StatusCode, body, tt.status)
			}
			if got := fastServed(t, f); got != before {
				t.Errorf("the fast path served %d of these requests, want none", got-before)
			}
		})
	}
}

// fastServed reads the gateway's count of requests served on the fast path.
func fastServed(t *testing.T, f *fixture) int {
	t.Helper()
	return metricValue(t, f, "basalt_gateway_fast_path_requests_total")
}

// headerDiff lists the differences between a and b, but for the keys in skip.
func headerDiff(a, b http.Header, skip ...string) string {
	var out []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for k := range keys {
		if slices.Contains(skip, k) || k == "Served-By" {
			continue
		}
		if !slices.Equal(a[k], b[k]) {
			out = append(out, k+": "+strings.Join(a[k], ", ")+" | "+strings.Join(b[k], ", "))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestClientAddressFollowsEachCallOfAConnection sends calls from different clients, as a
// trusted proxy in front of the gateway reports them, on one kept-alive connection: the fast
// path keeps the last address's text per connection, and each call must still name its own
// client upstream.
// TestFastPathForwardsEachCallsOwnHeaders sends calls on one connection whose headers repeat,
// change, repeat the change, and change back, with a refused call and a client deadline among
// them: the fast path keeps the forwarded header lines of a head that repeats the one before,
// and each call must still reach the upstream with its own.
func TestFastPathForwardsEachCallsOwnHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := "Bearer " + f.keys.token(t, "user-1")
	const current, byID = "/basalt.identity.v1.IdentityService/GetCurrentUser", "/basalt.identity.v1.IdentityService/GetUser"
	calls := []struct {
		path, host, custom, authorization, timeout string
		wantStatus                                 int
	}{
		{current, "", "a", token, "", http.StatusOK},
		{current, "", "a", token, "", http.StatusOK},
		{current, "", "b", token, "", http.StatusOK},
		{current, "", "b", token, "", http.StatusOK},
		{current, "", "c", "Bearer " + tamper(strings.TrimPrefix(token, "Bearer ")), "", http.StatusUnauthorized},
		{current, "", "c", token, "", http.StatusOK},
		{current, "", "c", token, "4000", http.StatusOK},
		{current, "", "c", token, "4000", http.StatusOK},
		{byID, "", "c", token, "4000", http.StatusOK},
		{current, "", "c", token, "4000", http.StatusOK},
		{current, "api.example", "c", token, "4000", http.StatusOK},
		{current, "", "c", token, "4000", http.StatusOK},
		{current, "", "a", token, "", http.StatusOK},
	}
	before := fastServed(t, f)
	for i, call := range calls {
		// Every call has the same body, so that only the request line tells a call to another
		// method from the one before.
		body := `{"userId":"u-2"}`
		req, err := http.NewRequest(http.MethodPost, f.url+call.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", call.authorization)
		req.Header.Set("X-Custom", call.custom)
		if call.timeout != "" {
			req.Header.Set("Connect-Timeout-Ms", call.timeout)
		}
		if call.host != "" {
			req.Host = call.host
		}
		resp, err := f.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != call.wantStatus {
			t.Fatalf("call %d: %d %q, want %d", i, resp.StatusCode, got, call.wantStatus)
		}
		if call.wantStatus != http.StatusOK {
			continue
		}
		// The answer tells which method the upstream ran: only GetUser answers with the id asked
		// for.
		if byIDAnswered := strings.Contains(string(got), "u-2"); byIDAnswered != (call.path == byID) {
			t.Errorf("call %d to %s was answered %q", i, call.path, got)
		}
		seen := f.upstreams[0].seen()
		if got := seen.Get("X-Custom"); got != call.custom {
			t.Errorf("call %d reached the upstream with X-Custom %q, want %q", i, got, call.custom)
		}
		// The gateway sends a client's deadline on as a header of its own, once, in place of
		// the client's; a call without one goes without.
		var want []string
		if call.timeout != "" {
			want = []string{call.timeout}
		}
		if got := seen.Values("Connect-Timeout-Ms"); !slices.Equal(got, want) {
			t.Errorf("call %d reached the upstream with Connect-Timeout-Ms %q, want %q", i, got, want)
		}
	}
	if served := fastServed(t, f) - before; served != len(calls) {
		t.Errorf("the fast path served %d of %d calls", served, len(calls))
	}
}

func TestClientAddressFollowsEachCallOfAConnection(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte("trusted_proxies: [\"127.0.0.1/32\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load([]string{"-config", path}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 1, func(c *config.Config) {
		// The loaded configuration carries the parsed trusted networks; the fixture's auth,
		// upstreams and sockets stay. The loaded one's listen addresses are the defaults' fixed
		// ports, which another gateway on the machine (go tool task up) may hold.
		loaded.Auth, loaded.Upstreams = c.Auth, c.Upstreams
		loaded.Listen, loaded.AdminListen, loaded.Inherited = c.Listen, c.AdminListen, c.Inherited
		*c = loaded
	})
	identity := identityv1connect.NewIdentityServiceClient(f.h1, f.url)
	token := f.keys.token(t, "user-1")
	for _, client := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.2", "2001:db8::7", "198.51.100.1"} {
		req := withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), token)
		req.Header().Set("X-Forwarded-For", client)
		if _, err := identity.GetCurrentUser(context.Background(), req); err != nil {
			t.Fatalf("call from %s: %v", client, err)
		}
		if got := f.upstreams[0].seen().Get("X-Forwarded-For"); got != client {
			t.Errorf("a call from %s reached the upstream as from %q", client, got)
		}
	}
}

// TestForwardedProtoNamesATLSClientsScheme calls one gateway over TLS and two over plain HTTP
// (with and without the fast path), each with a forged X-Forwarded-Proto: the upstream, which
// the gateways reach over plain HTTP, learns https from the first, and nothing from the others,
// whose scheme is its own.
func TestForwardedProtoNamesATLSClientsScheme(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	certFile, keyFile, pool := selfSignedFiles(t)
	secure := newFixtureWithKeys(t, k, 1, func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile })
	plain := newFixtureWithKeys(t, k, 1, nil)
	slow := newFixtureWithKeys(t, k, 1, func(c *config.Config) { c.Limits.DisableFastPath = true })
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(tlsClient.CloseIdleConnections)
	for _, tt := range []struct {
		f      *fixture
		url    string
		client *http.Client
		want   string
	}{
		{secure, strings.Replace(secure.url, "http://", "https://", 1), tlsClient, "https"},
		{plain, plain.url, plain.h1, ""},
		{slow, slow.url, slow.h1, ""},
	} {
		req, err := http.NewRequest(http.MethodPost, tt.url+"/basalt.identity.v1.IdentityService/GetCurrentUser", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+k.token(t, "user-1"))
		req.Header.Set("X-Forwarded-Proto", "gopher")
		resp, err := tt.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", tt.url, resp.StatusCode)
		}
		if got := tt.f.upstreams[0].seen().Values("X-Forwarded-Proto"); strings.Join(got, ",") != tt.want {
			t.Errorf("%s: the upstream saw X-Forwarded-Proto %q, want %q", tt.url, got, tt.want)
		}
	}
}

// selfSignedFiles writes a certificate for 127.0.0.1 and its key to files, and returns them
// with a pool that trusts the certificate.
func selfSignedFiles(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
