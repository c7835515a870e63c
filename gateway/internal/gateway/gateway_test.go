package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

// protocol is one way a client reaches the gateway.
type protocol struct {
	name   string
	http2  bool
	option []connect.ClientOption
}

var protocols = []protocol{
	{name: "connect-json-http1", option: []connect.ClientOption{connect.WithProtoJSON()}},
	{name: "connect-proto-h2c", http2: true},
	{name: "connect-get-http1", option: []connect.ClientOption{connect.WithHTTPGet()}},
	{name: "grpc-h2c", http2: true, option: []connect.ClientOption{connect.WithGRPC()}},
	{name: "grpc-web-http1", option: []connect.ClientOption{connect.WithGRPCWeb()}},
	{name: "grpc-web-json-h2c", http2: true, option: []connect.ClientOption{connect.WithGRPCWeb(), connect.WithProtoJSON()}},
	{name: "connect-gzip-h2c", http2: true, option: []connect.ClientOption{connect.WithSendGzip()}},
	{name: "connect-proto-http1"},
}

func (f *fixture) client(p protocol) connect.HTTPClient {
	if p.http2 {
		return f.h2
	}
	return f.h1
}

func withToken[T any](req *connect.Request[T], token string) *connect.Request[T] {
	req.Header().Set("Authorization", "Bearer "+token)
	return req
}

func TestProtocolsCarryUnaryCallsWhole(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := f.keys.token(t, "user-1")
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			identity := identityv1connect.NewIdentityServiceClient(f.client(p), f.url, p.option...)
			ctx := context.Background()

			res, err := identity.GetCurrentUser(ctx, withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), token))
			if err != nil {
				t.Fatalf("GetCurrentUser: %v", err)
			}
			if got := res.Msg.GetUser().GetId(); got != "user-1" {
				t.Errorf("the upstream saw subject %q, want user-1", got)
			}
			if got := res.Header().Get("Served-By"); got != "upstream-a" {
				t.Errorf("response header Served-By = %q, want upstream-a", got)
			}
			if got := res.Trailer().Get("Upstream-Trailer"); got != "kept" {
				t.Errorf("response trailer Upstream-Trailer = %q, want kept", got)
			}
			if res.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id in the response")
			}

			_, err = identity.GetUser(ctx, withToken(connect.NewRequest(&identityv1.GetUserRequest{UserId: "missing"}), token))
			if connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("GetUser(missing) = %v, want not_found", err)
			}
			var cerr *connect.Error
			if !errors.As(err, &cerr) || !strings.Contains(cerr.Message(), "no user missing") || len(cerr.Details()) != 1 {
				t.Errorf("the upstream's message and detail did not come through: %v", err)
			}
		})
	}
}

func TestProtocolsCarryServerStreams(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := f.keys.token(t, "user-1")
	for _, p := range protocols {
		if strings.HasPrefix(p.name, "connect-get") {
			continue // GET is for unary calls only.
		}
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			audit := auditv1connect.NewAuditServiceClient(f.client(p), f.url, p.option...)
			stream, err := audit.ExportEvents(context.Background(), withToken(connect.NewRequest(&auditv1.ExportEventsRequest{AfterSequence: 5}), token))
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for stream.Receive() {
				seqs = append(seqs, stream.Msg().GetEvent().GetSequence())
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream ended with %v", err)
			}
			if len(seqs) != 5 || seqs[0] != 1 || seqs[4] != 5 {
				t.Errorf("received %v, want 1..5", seqs)
			}
			if got := stream.ResponseTrailer().Get("Exported"); got != "done" {
				t.Errorf("trailer Exported = %q, want done", got)
			}
			_ = stream.Close()

			// An error after some messages arrives after them, with its code.
			stream, err = audit.ExportEvents(context.Background(), withToken(connect.NewRequest(&auditv1.ExportEventsRequest{AfterSequence: -1}), token))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for stream.Receive() {
				n++
			}
			if n != 2 || connect.CodeOf(stream.Err()) != connect.CodeFailedPrecondition || !strings.Contains(stream.Err().Error(), "export broke off") {
				t.Errorf("got %d messages and %v, want 2 and failed_precondition", n, stream.Err())
			}
			_ = stream.Close()
		})
	}
}

// TestGRPCGoClient calls through the gateway with grpc-go, the client most backends use.
func TestGRPCGoClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	conn, err := grpc.NewClient(f.gw.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+f.keys.token(t, "user-2"))

	var res identityv1.GetCurrentUserResponse
	var header, trailer metadata.MD
	if err := conn.Invoke(ctx, identityv1connect.IdentityServiceGetCurrentUserProcedure, &identityv1.GetCurrentUserRequest{}, &res, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("GetCurrentUser: %v", err)
	}
	if res.GetUser().GetId() != "user-2" || header.Get("served-by")[0] != "upstream-a" || trailer.Get("upstream-trailer")[0] != "kept" {
		t.Errorf("got %v, header %v, trailer %v", &res, header, trailer)
	}

	err = conn.Invoke(ctx, identityv1connect.IdentityServiceGetUserProcedure, &identityv1.GetUserRequest{UserId: "missing"}, &res)
	if status.Code(err) != codes.NotFound || len(status.Convert(err).Details()) != 1 {
		t.Errorf("GetUser(missing) = %v, want NotFound with one detail", err)
	}

	desc := &grpc.StreamDesc{StreamName: "ExportEvents", ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, auditv1connect.AuditServiceExportEventsProcedure)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&auditv1.ExportEventsRequest{AfterSequence: 3}); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	n := 0
	for {
		var msg auditv1.ExportEventsResponse
		if err := stream.RecvMsg(&msg); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream: %v", err)
			}
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("received %d messages, want 3", n)
	}

	// Unauthenticated, and a method that is not routed, answer with gRPC codes.
	err = conn.Invoke(context.Background(), identityv1connect.IdentityServiceGetCurrentUserProcedure, &identityv1.GetCurrentUserRequest{}, &res)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v, want Unauthenticated", err)
	}
	err = conn.Invoke(ctx, authv1connect.AuthServiceCheckSessionProcedure, &authv1.CheckSessionRequest{}, &authv1.CheckSessionResponse{})
	if status.Code(err) != codes.NotFound {
		t.Errorf("internal method: %v, want NotFound", err)
	}
}

func TestREST(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := f.keys.token(t, "user-3")
	auth := map[string]string{"Authorization": "Bearer " + token}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		contains                 string
	}{
		{"public POST with a body", "POST", "/v1/auth/login", `{"email":"a@example.com","password":"right"}`, jsonCT, 200, `"accessToken":"from-upstream-a"`},
		{"upstream error keeps its code", "POST", "/v1/auth/login", `{"email":"a@example.com","password":"wrong"}`, jsonCT, 401, "wrong email or password"},
		{"authenticated GET", "GET", "/v1/me", "", auth, 200, `"id":"user-3"`},
		{"path parameter", "GET", "/v1/users/u-42", "", auth, 200, `"id":"u-42"`},
		{"upstream not_found", "GET", "/v1/users/missing", "", auth, 404, "no user missing"},
		{"no token", "GET", "/v1/me", "", nil, 401, "needs an access token"},
		{"unknown path", "GET", "/v1/nothing-here", "", auth, 404, "no such route"},
		{"malformed JSON", "POST", "/v1/auth/login", `{"email":`, jsonCT, 400, "the request body is not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := f.do(t, tt.method, tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.contains) {
				t.Errorf("%s %s = %d %s, want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.status, tt.contains)
			}
		})
	}
}

func TestInternalMethodsAreNotRouted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := f.keys.token(t, "user-1")
	procedures := []string{
		"/basalt.audit.v1.AuditService/Record",
		"/basalt.auth.v1.AuthService/CheckSession",
		"/basalt.auth.v1.AuthService/RevokeUserSessions",
		"/basalt.identity.v1.IdentityService/VerifyCredentials",
		"/basalt.identity.v1.IdentityService/RegisterUser",
		"/basalt.authz.v1.AuthzService/GrantRole",
		"/basalt.authz.v1.AuthzService/Sync",
		"/basalt.identity.v1.IdentityService/NoSuchMethod", // the same answer as a real one
	}
	for _, proc := range procedures {
		for _, p := range []protocol{protocols[0], protocols[3]} {
			t.Run(p.name+proc, func(t *testing.T) {
				t.Parallel()
				client := connect.NewClient[identityv1.GetUserRequest, identityv1.GetUserResponse](f.client(p), f.url+proc, p.option...)
				_, err := client.CallUnary(context.Background(), withToken(connect.NewRequest(&identityv1.GetUserRequest{}), token))
				if connect.CodeOf(err) != connect.CodeNotFound {
					t.Errorf("%s = %v, want not_found", proc, err)
				}
				var cerr *connect.Error
				if errors.As(err, &cerr) && cerr.Message() != "no such method" {
					t.Errorf("message %q reveals more than a missing method would", cerr.Message())
				}
			})
		}
	}
	if n := f.upstreams[0].hits.Load(); n != 0 {
		t.Errorf("%d calls reached the upstream", n)
	}
}

func TestForgedTokensAreRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	other := newKeys(t)
	edSign := func(k []byte) func([]byte) []byte {
		return func(b []byte) []byte { return ed25519Sign(k, b) }
	}
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"} }
	tests := []struct {
		name  string
		token string
	}{
		{"alg none", raw(t, hdr("none", testKid), claims("u", nil), func([]byte) []byte { return nil })},
		{"signed by another key with our kid", raw(t, hdr("EdDSA", testKid), claims("u", nil), edSign(other.priv))},
		{"HS256 keyed with the public key", raw(t, hdr("HS256", testKid), claims("u", nil), func(b []byte) []byte { return hmacSHA256(publicKeyBytes(f.keys.priv), b) })},
		{"HS256 keyed with the JWKS", raw(t, hdr("HS256", testKid), claims("u", nil), func(b []byte) []byte { return hmacSHA256(f.keys.jwks, b) })},
		{"expired beyond the skew", raw(t, hdr("EdDSA", testKid), claims("u", func(c map[string]any) {
			c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
			c["iat"] = time.Now().Add(-20 * time.Minute).Unix()
		}), edSign(f.keys.priv))},
		{"no exp", raw(t, hdr("EdDSA", testKid), claims("u", func(c map[string]any) { delete(c, "exp") }), edSign(f.keys.priv))},
		{"wrong audience", raw(t, hdr("EdDSA", testKid), claims("u", func(c map[string]any) { c["aud"] = []string{"elsewhere"} }), edSign(f.keys.priv))},
		{"wrong issuer", raw(t, hdr("EdDSA", testKid), claims("u", func(c map[string]any) { c["iss"] = "https://evil.test" }), edSign(f.keys.priv))},
		{"unknown kid", raw(t, hdr("EdDSA", "no-such-key"), claims("u", nil), edSign(f.keys.priv))},
		{"embedded jwk header", raw(t, map[string]any{"alg": "EdDSA", "kid": testKid, "typ": "at+jwt", "jwk": json.RawMessage(other.jwks)}, claims("u", nil), edSign(other.priv))},
		{"not a JWT", "not-a-token"},
		{"tampered payload", tamper(f.keys.token(t, "u"))},
	}
	for _, tt := range tests {
		for _, p := range []protocol{protocols[0], protocols[3]} {
			t.Run(tt.name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				identity := identityv1connect.NewIdentityServiceClient(f.client(p), f.url, p.option...)
				_, err := identity.GetCurrentUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), tt.token))
				if connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Errorf("GetCurrentUser = %v, want unauthenticated", err)
				}
			})
		}
	}
	t.Cleanup(func() {
		if n := f.upstreams[0].hits.Load(); n != 0 {
			t.Errorf("%d calls with forged tokens reached the upstream", n)
		}
	})
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *config.Config) {
		c.RateLimits.Authenticated = config.Rate{Rate: 0.01, Burst: 3}
	})
	ctx := context.Background()
	// Both protocols come from 127.0.0.1 and so share one login bucket: five at once, then one
	// every two seconds.
	allowed := 0
	var refusals []error
	start := time.Now()
	for _, p := range []protocol{protocols[0], protocols[3]} {
		auth := authv1connect.NewAuthServiceClient(f.client(p), f.url, p.option...)
		for range 8 {
			_, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "a@example.com", Password: "right"}))
			switch {
			case err == nil:
				allowed++
			case connect.CodeOf(err) == connect.CodeResourceExhausted:
				refusals = append(refusals, err)
			default:
				t.Fatalf("Login over %s: %v", p.name, err)
			}
		}
	}
	if most := 5 + int(time.Since(start).Seconds()*0.5) + 1; allowed < 5 || allowed > most {
		t.Errorf("allowed %d of 16 logins, want 5 to %d", allowed, most)
	}
	for _, err := range refusals {
		var cerr *connect.Error
		if !errors.As(err, &cerr) || cerr.Meta().Get("Retry-After") == "" {
			t.Errorf("refusal %v carries no Retry-After", err)
		}
	}

	// Authenticated methods are limited per subject: one user's burst does not touch another's.
	identity := identityv1connect.NewIdentityServiceClient(f.h1, f.url)
	call := func(token string) error {
		_, err := identity.GetCurrentUser(ctx, withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), token))
		return err
	}
	alice, bob := f.keys.token(t, "alice"), f.keys.token(t, "bob")
	for i := range 3 {
		if err := call(alice); err != nil {
			t.Fatalf("call %d of alice's burst: %v", i+1, err)
		}
	}
	if err := call(alice); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("alice's fourth call = %v, want resource_exhausted", err)
	}
	if err := call(bob); err != nil {
		t.Errorf("bob's first call = %v, want success", err)
	}

	// Plain HTTP clients see 429 and Retry-After.
	resp, _ := f.do(t, "GET", "/v1/me", "", map[string]string{"Authorization": "Bearer " + alice})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("REST over the limit = %d with Retry-After %q, want 429 with a value", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	preflight := func(origin string) *http.Response {
		resp, _ := f.do(t, "OPTIONS", identityv1connect.IdentityServiceGetCurrentUserProcedure, "", map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "content-type, connect-protocol-version, authorization, x-grpc-web, grpc-timeout",
		})
		return resp
	}
	resp := preflight("http://localhost:5173")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Connect-Protocol-Version") {
		t.Errorf("allowed preflight = %d %v", resp.StatusCode, resp.Header)
	}
	for _, origin := range []string{"https://evil.example", "http://localhost.evil.example", "null"} {
		resp = preflight(origin)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s = %d %v, want 403 without CORS headers", origin, resp.StatusCode, resp.Header)
		}
	}

	// The actual call from an allowed origin exposes the protocol headers to the page.
	resp, _ = f.do(t, "POST", "/v1/auth/login", `{"email":"a@example.com","password":"right"}`, map[string]string{
		"Origin": "http://127.0.0.1:3000", "Content-Type": "application/json",
	})
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:3000" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
		t.Errorf("actual request's CORS headers: %v", resp.Header)
	}
	if n := f.upstreams[0].hits.Load(); n != 1 {
		t.Errorf("%d calls reached the upstream, want only the actual request", n)
	}
}

// TestEveryAnswerVariesByOrigin sends requests with an allowed origin, a refused one and none,
// to both of the gateway's paths: calls that succeed and fail (the gateway's own errors, the
// upstream's, REST's), preflights, unknown paths and health: every answer says "Vary: Origin"
// once, since any of them could carry CORS headers for some request, and a cache must not hand
// one made for a request without Origin to a browser.
func TestEveryAnswerVariesByOrigin(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	token := "Bearer " + k.token(t, "user-1")
	const current = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	jsonCT := map[string]string{"Content-Type": "application/json"}
	requests := []struct {
		name, method, path, body string
		header                   map[string]string
	}{
		{"a call", http.MethodPost, current, "{}", merge(jsonCT, map[string]string{"Authorization": token})},
		{"a call without a token", http.MethodPost, current, "{}", jsonCT},
		{"an upstream's error", http.MethodPost, "/basalt.identity.v1.IdentityService/GetUser", `{"userId":"missing"}`, merge(jsonCT, map[string]string{"Authorization": token})},
		{"a body that is not a message", http.MethodPost, current, "not json", merge(jsonCT, map[string]string{"Authorization": token})},
		{"a method the gateway does not route", http.MethodPost, "/basalt.auth.v1.AuthService/CheckSession", "{}", jsonCT},
		{"a REST call", http.MethodGet, "/v1/me", "", map[string]string{"Authorization": token}},
		{"a REST error", http.MethodGet, "/v1/me", "", nil},
		{"an unknown path", http.MethodGet, "/nothing/here", "", nil},
		{"health", http.MethodGet, "/healthz", "", nil},
		{"a preflight", http.MethodOptions, current, "", map[string]string{"Access-Control-Request-Method": "POST"}},
	}
	for _, disable := range []bool{false, true} {
		f := newFixtureWithKeys(t, k, 1, func(c *config.Config) { c.Limits.DisableFastPath = disable })
		for _, r := range requests {
			for _, origin := range []string{"", "http://localhost:5173", "https://evil.example"} {
				t.Run(fmt.Sprintf("net/http only %t/%s/origin %q", disable, r.name, origin), func(t *testing.T) {
					t.Parallel()
					header := merge(r.header, nil)
					if origin != "" {
						header["Origin"] = origin
					}
					resp, _ := f.do(t, r.method, r.path, r.body, header)
					n := 0
					for _, v := range resp.Header.Values("Vary") {
						for token := range strings.SplitSeq(v, ",") {
							if strings.EqualFold(strings.TrimSpace(token), "Origin") {
								n++
							}
						}
					}
					if n != 1 {
						t.Errorf("%d answered with Vary %q, want Origin once", resp.StatusCode, resp.Header.Values("Vary"))
					}
				})
			}
		}
	}
}

func TestHeadersFromClientsAreNotTrusted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	identity := identityv1connect.NewIdentityServiceClient(f.h1, f.url)
	req := withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), f.keys.token(t, "real-user"))
	req.Header().Set("X-Basalt-Subject", "admin")
	req.Header().Set("X-Basalt-Service-Token", "forged")
	req.Header().Set("X-Forwarded-For", "10.9.8.7")
	req.Header().Set("X-Request-Id", "client-chosen-id")
	req.Header().Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	res, err := identity.GetCurrentUser(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	seen := f.upstreams[0].seen()
	checks := []struct{ header, want string }{
		{"X-Basalt-Subject", "real-user"},
		{"X-Basalt-Service-Token", ""},
		{"X-Forwarded-For", "127.0.0.1"},
		{"X-Request-Id", "client-chosen-id"},
		{"Authorization", "Bearer " + authnToken(req)},
	}
	for _, c := range checks {
		if got := strings.Join(seen.Values(c.header), ","); got != c.want {
			t.Errorf("upstream saw %s = %q, want %q", c.header, got, c.want)
		}
	}
	if tp := seen.Get("Traceparent"); strings.Contains(tp, "0af7651916cd43dd8448eb211c80319c") {
		t.Errorf("the client's trace became the platform's: %s", tp)
	}
	if res.Header().Get("X-Request-Id") != "client-chosen-id" {
		t.Errorf("response X-Request-Id = %q", res.Header().Get("X-Request-Id"))
	}
	// The access log names the request and never the token.
	testkitEventually(t, func() bool { return strings.Contains(f.logs.String(), "client-chosen-id") })
	if logs := f.logs.String(); strings.Contains(logs, authnToken(req)) {
		t.Error("the access log contains the access token")
	}
}

func authnToken[T any](req *connect.Request[T]) string {
	return strings.TrimPrefix(req.Header().Get("Authorization"), "Bearer ")
}

func TestLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *config.Config) {
		c.Limits.MaxRequestBytes = 4 << 10
		c.Limits.Timeout = config.Duration(300 * time.Millisecond)
	})
	token := f.keys.token(t, "user-1")
	ctx := context.Background()
	for _, p := range []protocol{protocols[0], protocols[3]} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			identity := identityv1connect.NewIdentityServiceClient(f.client(p), f.url, p.option...)
			_, err := identity.GetUser(ctx, withToken(connect.NewRequest(&identityv1.GetUserRequest{UserId: strings.Repeat("x", 8<<10)}), token))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("an 8 KiB request = %v, want resource_exhausted", err)
			}
			start := time.Now()
			_, err = identity.GetUser(ctx, withToken(connect.NewRequest(&identityv1.GetUserRequest{UserId: "block"}), token))
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
				t.Errorf("a call past the route timeout = %v, want deadline_exceeded", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the timed-out call took %s", d)
			}
			// The client's own shorter deadline is honoured too.
			cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err = identity.GetUser(cctx, withToken(connect.NewRequest(&identityv1.GetUserRequest{UserId: "block"}), token))
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
				t.Errorf("a call past the client's deadline = %v, want deadline_exceeded", err)
			}
		})
	}
	resp, _ := f.do(t, "POST", identityv1connect.IdentityServiceGetCurrentUserProcedure, "hello", map[string]string{"Content-Type": "text/plain"})
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain = %d, want 415", resp.StatusCode)
	}
	resp, _ = f.do(t, "DELETE", identityv1connect.IdentityServiceGetCurrentUserProcedure, "{}", map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, GET" {
		t.Errorf("DELETE = %d (Allow %q), want 405 allowing POST, GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestInFlightLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *config.Config) { c.Limits.MaxInFlight = 1 })
	token := f.keys.token(t, "user-1")
	identity := identityv1connect.NewIdentityServiceClient(f.h2, f.url)
	done := make(chan error, 1)
	go func() {
		_, err := identity.GetUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetUserRequest{UserId: "block"}), token))
		done <- err
	}()
	testkitEventually(t, func() bool { return f.upstreams[0].hits.Load() == 1 })
	_, err := identity.GetCurrentUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), token))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("a call past the in-flight limit = %v, want unavailable", err)
	}
	// A REST call is refused in REST's shape.
	resp, body := f.do(t, http.MethodGet, "/v1/me", "", map[string]string{"Authorization": "Bearer " + token})
	if st := decodeStatus(t, body); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/json" ||
		connect.Code(st.GetCode()) != connect.CodeUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("a REST call past the in-flight limit = %d %s (Retry-After %q), want 503 unavailable", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	close(f.upstreams[0].release)
	if err := <-done; err != nil {
		t.Errorf("the call in flight = %v", err)
	}
	if _, err := identity.GetCurrentUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), token)); err != nil {
		t.Errorf("after the call ended: %v", err)
	}
}

func TestFailedInstancesAreAvoided(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, nil)
	// The second instance goes away; its address stays in the static table, as a crashed
	// instance stays in discovery until its health check fails.
	if err := f.upstreams[1].stop(); err != nil {
		t.Fatal(err)
	}
	token := f.keys.token(t, "user-1")
	identity := identityv1connect.NewIdentityServiceClient(f.h2, f.url)
	auth := authv1connect.NewAuthServiceClient(f.h2, f.url)
	for i := range 20 {
		// GetUser is idempotent; Login is not, but a refused connection proves it was never
		// sent, so both are retried on the live instance.
		if _, err := identity.GetUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetUserRequest{UserId: "u"}), token)); err != nil {
			t.Fatalf("GetUser %d: %v", i, err)
		}
		if _, err := auth.Login(context.Background(), connect.NewRequest(&authv1.LoginRequest{Email: "a@example.com", Password: "right"})); err != nil && connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("Login %d: %v", i, err)
		}
	}
}

func TestReadinessMetricsAndReflection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	resp, body := f.do(t, "GET", "/readyz", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d %s", resp.StatusCode, body)
	}
	identity := identityv1connect.NewIdentityServiceClient(f.h1, f.url)
	token := f.keys.token(t, "user-1")
	for range 3 {
		if _, err := identity.GetCurrentUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), token)); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = identity.GetCurrentUser(context.Background(), connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
	mresp, err := f.h1.Get(f.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`basalt_gateway_requests_total{code="ok",route="/basalt.identity.v1.IdentityService/GetCurrentUser"} 3`,
		`basalt_gateway_requests_total{code="unauthenticated",route="/basalt.identity.v1.IdentityService/GetCurrentUser"} 1`,
		`basalt_gateway_request_duration_seconds_count{route="/basalt.identity.v1.IdentityService/GetCurrentUser"} 4`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	client := grpcreflect.NewClient(f.h2, f.url)
	stream := client.NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 4 {
		t.Errorf("reflection lists %v", names)
	}
	desc, err := stream.FileContainingSymbol("basalt.auth.v1.AuthService")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range desc {
		for _, svc := range fd.GetService() {
			for _, m := range svc.GetMethod() {
				if m.GetName() == "CheckSession" || m.GetName() == "RevokeUserSessions" {
					t.Errorf("reflection reveals the internal method %s", m.GetName())
				}
			}
		}
	}
	// grpcurl and buf curl decode an error's details with the file reflection gives them.
	if desc, err := stream.FileContainingSymbol("google.rpc.BadRequest"); err != nil || desc[0].GetName() != "google/rpc/error_details.proto" {
		t.Errorf("reflection for google.rpc.BadRequest = %v, %v", desc, err)
	}
}

func TestNotReadyWithoutKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *config.Config) {
		c.Upstreams["auth"] = []string{"http://127.0.0.1:1"}
	})
	resp, body := f.do(t, "GET", "/readyz", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "jwks") {
		t.Errorf("/readyz without the auth service = %d %s, want 503 naming jwks", resp.StatusCode, body)
	}
	// Without keys no token can be checked: authenticated calls fail closed.
	identity := identityv1connect.NewIdentityServiceClient(f.h1, f.url)
	_, err := identity.GetCurrentUser(context.Background(), withToken(connect.NewRequest(&identityv1.GetCurrentUserRequest{}), f.keys.token(t, "u")))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("GetCurrentUser without keys = %v, want unauthenticated", err)
	}
}
