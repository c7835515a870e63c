package handler_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"

	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
	"github.com/basaltplatform/basalt/services/auth/internal/handler"
	"github.com/basaltplatform/basalt/services/auth/internal/keys"
	"github.com/basaltplatform/basalt/services/auth/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type env struct {
	auth   *authority.Authority
	url    string
	clock  *clock
	logs   *testkit.Buffer
	schema string
}

var lifetimes = handler.Lifetimes{Access: 15 * time.Minute, Session: 24 * time.Hour}

func start(t testing.TB) *env {
	t.Helper()
	a := authority.New(t)
	ctx := context.Background()
	logs := &testkit.Buffer{}
	cfg := a.ServiceConfig(t, "auth")
	cfg.Log.Level = -4 // debug: the no-secrets check reads everything that is logged
	svc, err := service.New(ctx, cfg, io.MultiWriter(logs, testkit.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(svc.DB, svc.Outbox)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	ring, err := keys.New(svc.DB, st.Client(), bytes.Repeat([]byte{1}, 32), keys.Policy{RotateEvery: 24 * time.Hour, Prepublish: time.Hour, AccessTTL: lifetimes.Access}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	api := handler.New(st, rpcclient.For(svc.RPC, "identity", identityv1connect.NewIdentityServiceClient), ring, svc.Outbox,
		authority.Issuer, authority.Audience, lifetimes, handler.WithClock(clk.now))
	svc.UseKeys(ring.VerificationKeys())
	svc.UseSessions(authn.SessionsFunc(api.Active))
	svc.Server.Mount(authv1connect.NewAuthServiceHandler(api, svc.Server.HandlerOptions()...))
	svc.Server.Handle("GET "+authn.JWKSPath, http.HandlerFunc(api.ServeJWKS))
	testkit.Serve(t, svc)
	return &env{auth: a, url: svc.Server.URL(), clock: clk, logs: logs, schema: cfg.Database.Schema}
}

var protocols = map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}

func (e *env) client(t testing.TB, opts ...connect.ClientOption) authv1connect.AuthServiceClient {
	return authv1connect.NewAuthServiceClient(testkit.H2CClient(t), e.url, opts...)
}

func (e *env) as(t testing.TB, access string, opts ...connect.ClientOption) authv1connect.AuthServiceClient {
	return e.client(t, append(opts, connect.WithInterceptors(authn.Bearer(access)))...)
}

func register(t testing.TB, c authv1connect.AuthServiceClient, email string) *authv1.RegisterResponse {
	t.Helper()
	res, err := c.Register(context.Background(), connect.NewRequest(&authv1.RegisterRequest{Email: email, Password: "a long password", DisplayName: "A"}))
	if err != nil {
		t.Fatalf("Register(%s): %v", email, err)
	}
	return res.Msg
}

func refresh(c authv1connect.AuthServiceClient, token string) (*authv1.Tokens, error) {
	res, err := c.Refresh(context.Background(), connect.NewRequest(&authv1.RefreshRequest{RefreshToken: token}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetTokens(), nil
}

func TestRegisterIssuesAWellFormedAccessToken(t *testing.T) {
	t.Parallel()
	e := start(t)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			res := register(t, e.client(t, opts...), name+"@example.com")
			tok := res.GetTokens()
			if tok.GetTokenType() != "Bearer" || tok.GetExpiresIn() != 900 || !strings.HasPrefix(tok.GetRefreshToken(), "brt_") || len(tok.GetRefreshToken()) != 47 {
				t.Fatalf("tokens = %v", tok)
			}
			// An independent verifier with only the published JWKS accepts the token.
			keys := authn.NewJWKS(authn.HTTPFetcher(http.DefaultClient, e.url+authn.JWKSPath))
			p, err := authn.NewVerifier(keys, authority.Issuer, authority.Audience).Verify(context.Background(), tok.GetAccessToken())
			if err != nil {
				t.Fatalf("the access token does not verify against the published JWKS: %v", err)
			}
			if p.Subject != res.GetUser().GetId() || p.SessionID == "" || p.TokenID == "" {
				t.Fatalf("principal = %+v", p)
			}
			msg, err := jws.Parse([]byte(tok.GetAccessToken()))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Signatures()[0].ProtectedHeaders()
			if h.Algorithm().String() != "EdDSA" || h.KeyID() == "" || h.Type() != "at+jwt" {
				t.Fatalf("header alg=%s kid=%q typ=%q", h.Algorithm(), h.KeyID(), h.Type())
			}
			claims, err := jwt.Parse([]byte(tok.GetAccessToken()), jwt.WithVerify(false), jwt.WithValidate(false))
			if err != nil {
				t.Fatal(err)
			}
			if claims.Expiration().Sub(claims.IssuedAt()) != 15*time.Minute || claims.Issuer() != authority.Issuer || claims.Audience()[0] != authority.Audience {
				t.Fatalf("claims iss=%s aud=%v lifetime=%s", claims.Issuer(), claims.Audience(), claims.Expiration().Sub(claims.IssuedAt()))
			}
		})
	}
	res, err := http.Get(e.url + authn.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.Header.Get("Cache-Control") != "public, max-age=300" || bytes.Contains(body, []byte(`"d"`)) {
		t.Fatalf("JWKS: cache-control %q, body %s; it must be cacheable and hold no private part", res.Header.Get("Cache-Control"), body)
	}
}

func TestLoginPassesOnTheVerdictOfIdentity(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	register(t, e.client(t), "lin@example.com")
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			c := e.client(t, opts...)
			if _, err := c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "LIN@example.com", Password: "a long password"})); err != nil {
				t.Fatalf("the right password: %v", err)
			}
			if _, err := c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "lin@example.com", Password: "wrong password"})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("a wrong password: %v", err)
			}
			e.auth.LockLogins(90 * time.Second)
			defer e.auth.LockLogins(0)
			_, err := c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "lin@example.com", Password: "a long password"}))
			var cerr *connect.Error
			if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted {
				t.Fatalf("a locked email: %v", err)
			}
			var retry time.Duration
			for _, d := range cerr.Details() {
				if v, err := d.Value(); err == nil {
					if ri, ok := v.(*errdetails.RetryInfo); ok {
						retry = ri.GetRetryDelay().AsDuration()
					}
				}
			}
			if retry != 90*time.Second {
				t.Fatalf("the retry delay did not reach the client: %s", retry)
			}
		})
	}
}

func TestRefreshRotatesAndReuseEndsTheWholeSession(t *testing.T) {
	t.Parallel()
	e := start(t)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			c := e.client(t, opts...)
			first := register(t, c, "rot-"+name+"@example.com").GetTokens()
			second, err := refresh(c, first.GetRefreshToken())
			if err != nil {
				t.Fatal(err)
			}
			if second.GetRefreshToken() == first.GetRefreshToken() {
				t.Fatal("the refresh token was not rotated")
			}
			third, err := refresh(c, second.GetRefreshToken())
			if err != nil {
				t.Fatal(err)
			}
			// The first token was spent: presenting it again means a copy exists.
			if _, err := refresh(c, first.GetRefreshToken()); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("reusing a spent token: %v", err)
			}
			// That ended the session: the newest refresh token and the access token fail too.
			if _, err := refresh(c, third.GetRefreshToken()); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("the newest token after reuse: %v, want unauthenticated", err)
			}
			if _, err := e.as(t, third.GetAccessToken(), opts...).ListSessions(context.Background(), connect.NewRequest(&authv1.ListSessionsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("an access token of the ended session: %v", err)
			}
		})
	}
	testkit.Eventually(t, 10*time.Second, "reuse is an audit event", func() bool {
		n := 0
		for _, a := range e.auth.Actions() {
			if a == "auth.refresh.reuse_detected" {
				n++
			}
		}
		return n == 2
	})
}

func TestFiftyConcurrentRefreshesWithOneTokenGiveOneSuccess(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.client(t)
	tok := register(t, c, "race@example.com").GetTokens()
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for range 50 {
		wg.Go(func() {
			_, err := refresh(c, tok.GetRefreshToken())
			switch {
			case err == nil:
				ok.Add(1)
			case connect.CodeOf(err) == connect.CodeUnauthenticated:
				refused.Add(1)
			default:
				t.Errorf("unexpected: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 49 {
		t.Fatalf("%d successes and %d refusals, want 1 and 49", ok.Load(), refused.Load())
	}
}

func TestRefreshTokensAreStoredOnlyAsHashesAndSessionsEnd(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.client(t)
	tok := register(t, c, "hash@example.com").GetTokens()
	sum := sha256.Sum256([]byte(tok.GetRefreshToken()))
	if n := testkit.QueryInt(t, `SELECT count(*) FROM `+e.schema+`.refresh_tokens WHERE id = $1`, hex.EncodeToString(sum[:])); n != 1 {
		t.Fatalf("%d rows hold the token's hash, want 1", n)
	}
	if n := testkit.QueryInt(t, `SELECT count(*) FROM `+e.schema+`.refresh_tokens t JOIN `+e.schema+`.sessions s ON s.id = t.session_id
		WHERE t.id = $1 OR t.session_id = $1 OR s.user_agent = $1 OR s.revoke_reason = $1`, tok.GetRefreshToken()); n != 0 {
		t.Fatal("the refresh token is stored in the clear")
	}
	// The session's absolute lifetime ends refreshing, however recent the token.
	e.clock.add(lifetimes.Session + time.Minute)
	if _, err := refresh(c, tok.GetRefreshToken()); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("refreshing past the session's lifetime: %v", err)
	}
	for _, bad := range []string{"", "brt_short", strings.Repeat("x", 47), "brt_" + strings.Repeat("A", 43)} {
		_, err := refresh(c, bad)
		if code := connect.CodeOf(err); code != connect.CodeInvalidArgument && code != connect.CodeUnauthenticated {
			t.Fatalf("refresh token %q: %v", bad, err)
		}
	}
}

func TestLogoutAndSessions(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			c := e.client(t, opts...)
			a := register(t, c, "sess-"+name+"@example.com")
			login, err := c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "sess-" + name + "@example.com", Password: "a long password"}))
			if err != nil {
				t.Fatal(err)
			}
			second := login.Msg.GetTokens()
			list, err := e.as(t, second.GetAccessToken(), opts...).ListSessions(ctx, connect.NewRequest(&authv1.ListSessionsRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			ss := list.Msg.GetSessions()
			if len(ss) != 2 || !ss[0].GetCurrent() || ss[1].GetCurrent() || ss[0].GetIp() == "" {
				t.Fatalf("sessions = %v; want two, the newest current", ss)
			}
			// Another user cannot end this user's session, nor learn that it exists.
			other := register(t, c, "other-"+name+"@example.com").GetTokens()
			if _, err := e.as(t, other.GetAccessToken(), opts...).RevokeSession(ctx, connect.NewRequest(&authv1.RevokeSessionRequest{SessionId: ss[1].GetId()})); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("revoking someone else's session: %v, want not_found", err)
			}
			if _, err := e.as(t, second.GetAccessToken(), opts...).RevokeSession(ctx, connect.NewRequest(&authv1.RevokeSessionRequest{SessionId: ss[1].GetId()})); err != nil {
				t.Fatal(err)
			}
			if _, err := refresh(c, a.GetTokens().GetRefreshToken()); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("the revoked session's refresh token: %v", err)
			}
			if _, err := c.Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{RefreshToken: second.GetRefreshToken()})); err != nil {
				t.Fatal(err)
			}
			if _, err := e.as(t, second.GetAccessToken(), opts...).ListSessions(ctx, connect.NewRequest(&authv1.ListSessionsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("an access token after logout: %v, want unauthenticated at once", err)
			}
			if _, err := c.Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{RefreshToken: second.GetRefreshToken()})); err != nil {
				t.Fatalf("logging out twice: %v", err)
			}
		})
	}
}

func TestRevokeUserSessionsIsForIdentityOnly(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	c := e.client(t)
	reg := register(t, c, "victim@example.com")
	if _, err := c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "victim@example.com", Password: "a long password"})); err != nil {
		t.Fatal(err)
	}
	caller := func(name string) authv1connect.AuthServiceClient {
		tokens, err := authn.NewServiceTokens(name, []byte(authority.InternalSecret))
		if err != nil {
			t.Fatal(err)
		}
		return e.client(t, connect.WithInterceptors(authn.NewClientCredentials(tokens)))
	}
	req := &authv1.RevokeUserSessionsRequest{UserId: reg.GetUser().GetId(), Reason: "password_changed"}
	if _, err := caller("blog").RevokeUserSessions(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("blog calling: %v", err)
	}
	res, err := caller("identity").RevokeUserSessions(ctx, connect.NewRequest(req))
	if err != nil || res.Msg.GetRevoked() != 2 {
		t.Fatalf("RevokeUserSessions = %v, %v; want both sessions", res, err)
	}
	if _, err := refresh(c, reg.GetTokens().GetRefreshToken()); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("refresh after revocation: %v", err)
	}
	check, err := caller("blog").CheckSession(ctx, connect.NewRequest(&authv1.CheckSessionRequest{SessionId: "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b"}))
	if err != nil || check.Msg.GetActive() {
		t.Fatalf("CheckSession of an unknown session = %v, %v", check, err)
	}
}

// TestNoSecretReachesLogsOrEvents runs every flow and then searches the service's logs and the
// audit events it sent for any password or token it handled.
func TestNoSecretReachesLogsOrEvents(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	c := e.client(t)
	reg := register(t, c, "secret@example.com")
	secrets := []string{"a long password", reg.GetTokens().GetAccessToken(), reg.GetTokens().GetRefreshToken()}
	login, err := c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "secret@example.com", Password: "a long password"}))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "secret@example.com", Password: "the wrong one!"}))
	secrets = append(secrets, "the wrong one!", login.Msg.GetTokens().GetRefreshToken(), login.Msg.GetTokens().GetAccessToken())
	next, err := refresh(c, login.Msg.GetTokens().GetRefreshToken())
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, next.GetRefreshToken(), next.GetAccessToken())
	_, _ = refresh(c, login.Msg.GetTokens().GetRefreshToken()) // reuse
	_, _ = c.Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{RefreshToken: reg.GetTokens().GetRefreshToken()}))
	testkit.Eventually(t, 10*time.Second, "events reach audit", func() bool { return len(e.auth.Events()) >= 6 })

	var events strings.Builder
	for _, ev := range e.auth.Events() {
		b, _ := protojson.Marshal(ev)
		events.Write(b)
	}
	logs := e.logs.String()
	for _, s := range secrets {
		// A token's signature is its secret part; any 24 characters of it are telling.
		probe := s
		if len(probe) > 24 {
			probe = probe[len(probe)-24:]
		}
		if strings.Contains(logs, probe) {
			t.Errorf("a secret reached the logs: %q", probe)
		}
		if strings.Contains(events.String(), probe) {
			t.Errorf("a secret reached an audit event: %q", probe)
		}
	}
	for _, want := range []string{"auth.register", "auth.login", "auth.refresh", "auth.refresh.reuse_detected", "auth.logout"} {
		if !strings.Contains(events.String(), want) {
			t.Errorf("no %s event", want)
		}
	}
}

// BenchmarkLogin measures a login through the service: a credential check with the identity
// stand-in, a session stored with its outbox event, and an access token signed.
func BenchmarkLogin(b *testing.B) {
	e := start(b)
	c := e.client(b)
	register(b, c, "bench@example.com")
	req := &authv1.LoginRequest{Email: "bench@example.com", Password: "a long password"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Login(context.Background(), connect.NewRequest(req)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefresh measures a refresh: spending one token and storing its successor in one
// transaction, and signing a new access token.
func BenchmarkRefresh(b *testing.B) {
	e := start(b)
	c := e.client(b)
	tok := register(b, c, "bench@example.com").GetTokens().GetRefreshToken()
	b.ReportAllocs()
	for b.Loop() {
		next, err := refresh(c, tok)
		if err != nil {
			b.Fatal(err)
		}
		tok = next.GetRefreshToken()
	}
}
