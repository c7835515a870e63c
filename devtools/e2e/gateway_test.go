package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// gatewayConfig is the YAML the platform's gateway runs with in these tests: it trusts
// X-Forwarded-For from loopback, so each scenario can act as its own client address (and so
// have its own rate-limit buckets), and lets authenticated callers send bursts.
const gatewayConfig = `
trusted_proxies: ["127.0.0.1/32"]
rate_limits:
  authenticated: {rate: 1000, burst: 1000}
`

// clientIPs hands each scenario a distinct documentation address (RFC 5737).
var clientIPs atomic.Int32

func nextClientIP() string { return fmt.Sprintf("198.51.100.%d", clientIPs.Add(1)) }

// asClient sends every call from the given client address, as a proxy in front of the gateway
// would report it.
func asClient(ip string) connect.ClientOption {
	return connect.WithInterceptors(headerInterceptor{"X-Forwarded-For": ip})
}

type headerInterceptor map[string]string

func (h headerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		for k, v := range h {
			req.Header().Set(k, v)
		}
		return next(ctx, req)
	}
}

func (h headerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		for k, v := range h {
			conn.RequestHeader().Set(k, v)
		}
		return conn
	}
}

func (h headerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// wire is one way clients reach the gateway.
type wire struct {
	name  string
	http2 bool
	opts  []connect.ClientOption
}

var wires = []wire{
	{name: "connect-json", opts: []connect.ClientOption{connect.WithProtoJSON()}},
	{name: "connect-proto", http2: true},
	{name: "grpc", http2: true, opts: []connect.ClientOption{connect.WithGRPC()}},
	{name: "grpc-web", opts: []connect.ClientOption{connect.WithGRPCWeb()}},
}

func (w wire) client(t *testing.T) *http.Client {
	if w.http2 {
		return testkit.H2CClient(t)
	}
	return testkit.HTTP1Client(t)
}

// gatewayScenarios runs the scenarios that go through the gateway.
func gatewayScenarios(t *testing.T, p *platform, admin string) {
	gw := p.url("gateway")
	ctx := context.Background()

	t.Run("every protocol reaches the services through the gateway", func(t *testing.T) {
		for _, w := range wires {
			opts := append([]connect.ClientOption{asClient(nextClientIP())}, w.opts...)
			auth := authv1connect.NewAuthServiceClient(w.client(t), gw, opts...)
			email := "gw-" + w.name + "@example.com"
			reg, err := auth.Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: email, Password: "through the gateway", DisplayName: w.name}))
			if err != nil {
				t.Fatalf("%s: Register: %v", w.name, err)
			}
			login, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: email, Password: "through the gateway"}))
			if err != nil {
				t.Fatalf("%s: Login: %v", w.name, err)
			}
			token := login.Msg.GetTokens().GetAccessToken()
			identity := identityv1connect.NewIdentityServiceClient(w.client(t), gw, append(opts, connect.WithInterceptors(authn.Bearer(token)))...)
			me, err := identity.GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
			if err != nil || me.Msg.GetUser().GetId() != reg.Msg.GetUser().GetId() {
				t.Fatalf("%s: GetCurrentUser = %v, %v", w.name, me, err)
			}
			if me.Header().Get("X-Request-Id") == "" {
				t.Errorf("%s: no request id in the response", w.name)
			}
			// A server stream: the administrator exports the audit log.
			audit := auditv1connect.NewAuditServiceClient(w.client(t), gw, append(opts, connect.WithInterceptors(authn.Bearer(admin)))...)
			stream, err := audit.ExportEvents(ctx, connect.NewRequest(&auditv1.ExportEventsRequest{}))
			if err != nil {
				t.Fatalf("%s: ExportEvents: %v", w.name, err)
			}
			events, checkpoints := 0, 0
			for stream.Receive() {
				if stream.Msg().GetEvent() != nil {
					events++
				} else if stream.Msg().GetCheckpoint() != nil {
					checkpoints++
				}
			}
			if err := stream.Err(); err != nil || events == 0 || checkpoints != 1 {
				t.Errorf("%s: export gave %d events and %d checkpoints, error %v", w.name, events, checkpoints, err)
			}
			_ = stream.Close()
			// A member may not export: the service's denial comes back through the gateway.
			memberAudit := auditv1connect.NewAuditServiceClient(w.client(t), gw, append(opts, connect.WithInterceptors(authn.Bearer(token)))...)
			denied, err := memberAudit.ExportEvents(ctx, connect.NewRequest(&auditv1.ExportEventsRequest{}))
			if err == nil {
				for denied.Receive() {
				}
				err = denied.Err()
				_ = denied.Close()
			}
			if connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Errorf("%s: a member's export = %v, want permission_denied", w.name, err)
			}
		}

		// REST, as a browser's fetch or curl sends it.
		ip := nextClientIP()
		status, body := rest(t, "POST", gw+"/v1/auth/register", `{"email":"gw-rest@example.com","password":"through the gateway","displayName":"REST"}`, map[string]string{"X-Forwarded-For": ip})
		if status != 200 || !strings.Contains(body, `"accessToken"`) {
			t.Fatalf("REST register = %d %s", status, body)
		}
		var reg struct {
			Tokens struct {
				AccessToken string `json:"accessToken"`
			} `json:"tokens"`
		}
		if err := json.Unmarshal([]byte(body), &reg); err != nil {
			t.Fatal(err)
		}
		status, body = rest(t, "GET", gw+"/v1/me", "", map[string]string{"Authorization": "Bearer " + reg.Tokens.AccessToken, "X-Forwarded-For": ip})
		if status != 200 || !strings.Contains(body, "gw-rest@example.com") {
			t.Errorf("REST /v1/me = %d %s", status, body)
		}
		status, body = rest(t, "GET", gw+"/v1/users", "", map[string]string{"Authorization": "Bearer " + reg.Tokens.AccessToken, "X-Forwarded-For": ip})
		if status != http.StatusForbidden {
			t.Errorf("a member listing users over REST = %d %s, want 403", status, body)
		}
	})

	t.Run("internal methods cannot be reached through the gateway", func(t *testing.T) {
		for _, w := range wires[:3] {
			for _, proc := range []string{
				auditv1connect.AuditServiceRecordProcedure,
				authv1connect.AuthServiceCheckSessionProcedure,
				identityv1connect.IdentityServiceVerifyCredentialsProcedure,
				identityv1connect.IdentityServiceRegisterUserProcedure,
			} {
				client := connect.NewClient[identityv1.VerifyCredentialsRequest, identityv1.VerifyCredentialsResponse](w.client(t), gw+proc, w.opts...)
				req := connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: launcher.DefaultAdminEmail, Password: "guess"})
				req.Header().Set("Authorization", "Bearer "+admin)
				// A forged service credential changes nothing: the gateway drops the header.
				req.Header().Set(authn.ServiceHeader, "forged")
				if _, err := client.CallUnary(ctx, req); connect.CodeOf(err) != connect.CodeNotFound {
					t.Errorf("%s %s = %v, want not_found", w.name, proc, err)
				}
			}
		}
	})

	t.Run("forged tokens are refused", func(t *testing.T) {
		kid, pub := authKey(t, p)
		_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
		valid := loginToken(t, gw, launcher.DefaultAdminEmail, p.secret(t, "BASALT_ADMIN_PASSWORD"))
		claims := map[string]any{
			"iss": "basalt", "aud": []string{"basalt"}, "sub": "01a20c7f-0000-7000-8000-000000000000",
			"sid": uuid.NewString(), "jti": uuid.NewString(), "iat": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix(),
		}
		tokens := map[string]string{
			"alg none":                        compact(map[string]any{"alg": "none", "kid": kid, "typ": "at+jwt"}, claims, nil),
			"HS256 keyed with the public key": compact(map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"}, claims, func(b []byte) []byte { return mac(pub, b) }),
			"another key under the real kid":  compact(map[string]any{"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, claims, func(b []byte) []byte { return ed25519.Sign(otherKey, b) }),
			"unknown kid":                     compact(map[string]any{"alg": "EdDSA", "kid": "forged-kid", "typ": "at+jwt"}, claims, func(b []byte) []byte { return ed25519.Sign(otherKey, b) }),
			"a real token, payload changed":   tamper(valid),
		}
		for name, token := range tokens {
			for _, w := range wires[:3] {
				identity := identityv1connect.NewIdentityServiceClient(w.client(t), gw, append(w.opts, connect.WithInterceptors(authn.Bearer(token)))...)
				if _, err := identity.GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Errorf("%s over %s = %v, want unauthenticated", name, w.name, err)
				}
			}
		}
	})

	t.Run("logins beyond the limit get resource_exhausted with Retry-After", func(t *testing.T) {
		for _, w := range []wire{wires[0], wires[2]} {
			auth := authv1connect.NewAuthServiceClient(w.client(t), gw, append(w.opts, asClient(nextClientIP()))...)
			var refused error
			allowed := 0
			for range 7 {
				// Each attempt names another account, so identity's own lockout of an email
				// under attack does not mix with the gateway's limit.
				_, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: uuid.NewString() + "@example.com", Password: "wrong password"}))
				switch connect.CodeOf(err) {
				case connect.CodeResourceExhausted:
					refused = err
				case connect.CodeUnauthenticated:
					allowed++
				default:
					t.Fatalf("%s: Login = %v", w.name, err)
				}
			}
			var cerr *connect.Error
			if allowed != 5 || refused == nil || !errors.As(refused, &cerr) || cerr.Meta().Get("Retry-After") == "" {
				t.Errorf("%s: %d logins let through, refusal %v", w.name, allowed, refused)
			}
		}
		// Another client is not affected.
		auth := authv1connect.NewAuthServiceClient(testkit.HTTP1Client(t), gw, asClient(nextClientIP()))
		if _, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: uuid.NewString() + "@example.com", Password: "wrong password"})); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("another client's login = %v, want unauthenticated (a wrong password)", err)
		}
	})

	t.Run("CORS preflights are answered for allowed origins only", func(t *testing.T) {
		preflight := func(origin string) *http.Response {
			req, _ := http.NewRequest("OPTIONS", gw+authv1connect.AuthServiceLoginProcedure, nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type,connect-protocol-version,connect-timeout-ms")
			resp, err := testkit.HTTP1Client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		if resp := preflight("http://localhost:5173"); resp.StatusCode != http.StatusNoContent ||
			resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" ||
			resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("allowed origin: %d %v", resp.StatusCode, resp.Header)
		}
		if resp := preflight("https://attacker.example"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("refused origin: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("killing one of two instances under traffic loses no idempotent call", func(t *testing.T) {
		killInstanceUnderTraffic(t, p, gw)
	})

	t.Run("two gateways share one exact limit through Redis", func(t *testing.T) {
		sharedLimitAcrossGateways(t, p)
	})
}

// killInstanceUnderTraffic starts a second identity instance, sends steady traffic through the
// gateway, and kills the instance mid-way.
func killInstanceUnderTraffic(t *testing.T, p *platform, gw string) {
	ctx := context.Background()
	second := &launcher.Process{Name: "identity"}
	if err := launcher.AssignPorts([]*launcher.Process{second}, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	if err := second.Start(p.binDir, p.env, p.logs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Stop(10 * time.Second) })
	consul, err := discovery.NewConsul(testkit.Consul(t))
	if err != nil {
		t.Fatal(err)
	}
	defer consul.Close()
	testkit.Eventually(t, 30*time.Second, "two identity instances pass their checks", func() bool {
		eps, err := consul.Endpoints(ctx, "identity")
		return err == nil && len(eps) == 2
	})

	ip := nextClientIP()
	auth := authv1connect.NewAuthServiceClient(testkit.HTTP1Client(t), gw, asClient(ip))
	reg, err := auth.Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "steady@example.com", Password: "steady traffic", DisplayName: "Steady"}))
	if err != nil {
		t.Fatal(err)
	}
	token, userID := reg.Msg.GetTokens().GetAccessToken(), reg.Msg.GetUser().GetId()

	var (
		mu                sync.Mutex
		idempotentFailed  []error
		otherErrs         []error
		idempotentOK, ops atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		w := wires[i%2] // HTTP/1.1 and h2c callers
		identity := identityv1connect.NewIdentityServiceClient(w.client(t), gw, append(w.opts, asClient(ip), connect.WithInterceptors(authn.Bearer(token)))...)
		wg.Go(func() {
			// Each caller is paced, so the four together stay under the subject's rate limit
			// (1000 a second) however fast the machine: the scenario is about a dying instance,
			// not about the limiter.
			pace := time.NewTicker(5 * time.Millisecond)
			defer pace.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				if i < 2 {
					// GetCurrentUser declares no side effects: the gateway may resend it.
					_, err := identity.GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
					mu.Lock()
					if err != nil {
						idempotentFailed = append(idempotentFailed, err)
					} else {
						idempotentOK.Add(1)
					}
					mu.Unlock()
					continue
				}
				// UpdateUser declares nothing: a call that may have reached the instance is not resent.
				name := fmt.Sprintf("Steady %d-%d", i, n)
				_, err := identity.UpdateUser(ctx, connect.NewRequest(&identityv1.UpdateUserRequest{UserId: userID, DisplayName: &name}))
				ops.Add(1)
				if err != nil {
					mu.Lock()
					otherErrs = append(otherErrs, err)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := kill(second.PID()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	if len(idempotentFailed) > 0 {
		t.Errorf("%d of %d idempotent calls failed; first: %v", len(idempotentFailed), int(idempotentOK.Load())+len(idempotentFailed), idempotentFailed[0])
	}
	for _, err := range otherErrs {
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("a non-idempotent call failed with %v; only unavailable is acceptable", err)
			break
		}
	}
	t.Logf("%d idempotent calls succeeded; %d of %d non-idempotent calls answered unavailable", idempotentOK.Load(), len(otherErrs), ops.Load())
	// The gateway was sending calls to the killed instance: it ejected it when they failed.
	if !strings.Contains(p.output.String(), "instance ejected") || !strings.Contains(p.output.String(), strings.TrimPrefix(second.URL, "http://")) {
		t.Error("the gateway never ejected the killed instance, so no traffic reached it")
	}
	if idempotentOK.Load() < 50 {
		t.Errorf("only %d idempotent calls ran; the traffic was not steady", idempotentOK.Load())
	}
}

// sharedLimitAcrossGateways runs two more gateway processes on one Redis and sends one
// client's calls to both alternately: together they let through no more than one bucket
// allows.
func sharedLimitAcrossGateways(t *testing.T, p *platform) {
	ctx := context.Background()
	redisURL := os.Getenv("BASALT_TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opts)
	defer rc.Close()
	testkit.Require(t, "Redis", rc.Ping(ctx).Err())

	conf := filepath.Join(t.TempDir(), "gateway.yaml")
	prefix := "basalt-e2e-" + uuid.NewString() + ":"
	if err := os.WriteFile(conf, []byte("rate_limits:\n  redis_prefix: "+strconv.Quote(prefix)+"\n  public: {rate: 1, burst: 5}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gateways := []*launcher.Process{{Name: "gateway"}, {Name: "gateway"}}
	if err := launcher.AssignPorts(gateways, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = launcher.StopAll(gateways, 10*time.Second) })
	env := append(append([]string{}, p.env...), "BASALT_GATEWAY_CONFIG="+conf, "BASALT_GATEWAY_REDIS_URL="+redisURL)
	for _, gw := range gateways {
		if err := gw.Start(p.binDir, env, p.logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := launcher.WaitReady(ctx, gateways, time.Minute); err != nil {
		t.Fatal(err)
	}
	urls := []string{gateways[0].URL, gateways[1].URL}

	clients := []authv1connect.AuthServiceClient{
		authv1connect.NewAuthServiceClient(testkit.HTTP1Client(t), urls[0]),
		authv1connect.NewAuthServiceClient(testkit.H2CClient(t), urls[1], connect.WithGRPC()),
	}
	start := time.Now()
	allowed := 0
	for i := range 30 {
		// Refresh with a token that does not exist: cheap for the auth service, and public.
		_, err := clients[i%2].Refresh(ctx, connect.NewRequest(&authv1.RefreshRequest{RefreshToken: "brt_not-a-real-token"}))
		switch connect.CodeOf(err) {
		case connect.CodeResourceExhausted:
		case connect.CodeUnauthenticated, connect.CodeInvalidArgument:
			allowed++
		default:
			t.Fatalf("Refresh = %v", err)
		}
	}
	elapsed := time.Since(start)
	// One bucket of 5 refilling at 1/s: each gateway alone would let 5 through at once.
	if most := 5 + int(elapsed.Seconds()) + 1; allowed < 5 || allowed > most {
		t.Errorf("the two gateways let %d of 30 calls through in %s, want 5 to %d", allowed, elapsed, most)
	}
}

// rest calls the gateway's REST route at url, as curl or a browser's fetch would, and checks
// the exchange against the OpenAPI document (checkREST).
func rest(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	sent := req.Header.Clone()
	status, respHeader, b := send(t, req)
	checkREST(t, method, url, sent, []byte(body), status, respHeader, b)
	return status, string(b)
}

// send sends req over HTTP/1.1 and returns the answer.
func send(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := testkit.HTTP1Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// authKey returns the kid and public key bytes of the auth service's current signing key.
func authKey(t *testing.T, p *platform) (string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.url("auth")+authn.JWKSPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := send(t, req)
	if status != 200 {
		t.Fatalf("JWKS: %d %s", status, body)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			X   string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	x, err := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	if err != nil {
		t.Fatal(err)
	}
	return set.Keys[0].Kid, x
}

func loginToken(t *testing.T, gw, email, password string) string {
	t.Helper()
	auth := authv1connect.NewAuthServiceClient(testkit.HTTP1Client(t), gw, asClient(nextClientIP()))
	res, err := auth.Login(context.Background(), connect.NewRequest(&authv1.LoginRequest{Email: email, Password: password}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetTokens().GetAccessToken()
}

func compact(header, claims map[string]any, sign func([]byte) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// tamper flips a character of a token's payload and keeps its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	b := []byte(parts[1])
	b[10] ^= 1
	if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", rune(b[10])) {
		b[10] = 'A'
	}
	return parts[0] + "." + string(b) + "." + parts[2]
}

// kill ends the process with pid at once, as a crash would.
func kill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
