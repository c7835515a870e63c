package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/listen"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

const (
	testIssuer   = "https://basalt.test"
	testAudience = "basalt"
	testKid      = "gateway-test-key"
)

// upstream stands in for the services behind the gateway: a real kernel server on a loopback
// port serving the generated handlers of a few methods, so that the gateway is tested
// against the same server code the services run. It records what reached it.
type upstream struct {
	authv1connect.UnimplementedAuthServiceHandler
	identityv1connect.UnimplementedIdentityServiceHandler
	auditv1connect.UnimplementedAuditServiceHandler

	name string
	url  string
	jwks []byte
	stop func() error

	hits atomic.Int64
	// jwksFetches counts the requests for jwks.
	jwksFetches atomic.Int64
	mu          sync.Mutex
	last        http.Header
	// release unblocks calls of GetUser("block").
	release chan struct{}
}

// seen returns the headers of the last call that reached the upstream.
func (u *upstream) seen() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// publish makes the upstream publish jwks as its key set (nil: fail with 503).
func (u *upstream) publish(jwks []byte) {
	u.mu.Lock()
	u.jwks = jwks
	u.mu.Unlock()
}

func (u *upstream) record(h http.Header) {
	u.hits.Add(1)
	u.mu.Lock()
	u.last = h.Clone()
	u.mu.Unlock()
}

// Login signs in with the password "right"; "block" waits for release or the call's end.
func (u *upstream) Login(ctx context.Context, req *connect.Request[authv1.LoginRequest]) (*connect.Response[authv1.LoginResponse], error) {
	u.record(req.Header())
	if req.Msg.GetPassword() == "block" {
		select {
		case <-u.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if req.Msg.GetPassword() != "right" {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("wrong email or password"))
	}
	res := connect.NewResponse(&authv1.LoginResponse{Tokens: &authv1.Tokens{AccessToken: "from-" + u.name, TokenType: "Bearer"}})
	res.Header().Set("Served-By", u.name)
	return res, nil
}

func (u *upstream) GetCurrentUser(_ context.Context, req *connect.Request[identityv1.GetCurrentUserRequest]) (*connect.Response[identityv1.GetCurrentUserResponse], error) {
	u.record(req.Header())
	res := connect.NewResponse(&identityv1.GetCurrentUserResponse{User: &identityv1.User{
		Id:          req.Header().Get("X-Basalt-Subject"),
		DisplayName: u.name,
	}})
	res.Header().Set("Served-By", u.name)
	res.Trailer().Set("Upstream-Trailer", "kept")
	return res, nil
}

// GetUser answers by user id: "block" waits for release or the call's end, "missing" fails
// with not_found and a detail, "forbidden" with permission_denied, anything else is found.
func (u *upstream) GetUser(ctx context.Context, req *connect.Request[identityv1.GetUserRequest]) (*connect.Response[identityv1.GetUserResponse], error) {
	u.record(req.Header())
	switch req.Msg.GetUserId() {
	case "block":
		select {
		case <-u.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "forbidden":
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("not yours to read"))
	case "missing":
		err := connect.NewError(connect.CodeNotFound, errors.New("no user missing"))
		if d, derr := connect.NewErrorDetail(&identityv1.User{Id: "missing"}); derr == nil {
			err.AddDetail(d)
		}
		return nil, err
	}
	return connect.NewResponse(&identityv1.GetUserResponse{User: &identityv1.User{Id: req.Msg.GetUserId(), DisplayName: u.name}}), nil
}

// ExportEvents streams after_sequence events; a negative after_sequence streams two events
// and then fails with failed_precondition.
func (u *upstream) ExportEvents(_ context.Context, req *connect.Request[auditv1.ExportEventsRequest], stream *connect.ServerStream[auditv1.ExportEventsResponse]) error {
	u.record(req.Header())
	n := req.Msg.GetAfterSequence()
	fail := n < 0
	if fail {
		n = 2
	}
	for i := range n {
		if err := stream.Send(&auditv1.ExportEventsResponse{Item: &auditv1.ExportEventsResponse_Event{Event: &auditv1.Event{Sequence: i + 1}}}); err != nil {
			return err
		}
	}
	if fail {
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("export broke off"))
	}
	stream.ResponseTrailer().Set("Exported", "done")
	return nil
}

// startUpstream serves an upstream named name publishing jwks.
func startUpstream(t testing.TB, name string, jwks []byte) *upstream {
	t.Helper()
	u := &upstream{name: name, jwks: jwks, release: make(chan struct{})}
	srv, err := server.New(name, testkit.HTTPConfig(), server.WithLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(authv1connect.NewAuthServiceHandler(u, srv.HandlerOptions()...))
	srv.Mount(identityv1connect.NewIdentityServiceHandler(u, srv.HandlerOptions()...))
	srv.Mount(auditv1connect.NewAuditServiceHandler(u, srv.HandlerOptions()...))
	srv.Handle("GET "+authn.JWKSPath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		u.jwksFetches.Add(1)
		u.mu.Lock()
		jwks := u.jwks
		u.mu.Unlock()
		if jwks == nil {
			http.Error(w, "no keys", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	u.stop = testkit.Serve(t, srv)
	u.url = srv.URL()
	return u
}

// keys is the signing key of the fixture's tokens and its published set.
type keys struct {
	priv ed25519.PrivateKey
	key  jwk.Key
	jwks []byte
}

func newKeys(t testing.TB) keys {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, testKid)
	_ = key.Set(jwk.AlgorithmKey, jwa.EdDSA)
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return keys{priv: priv, key: key, jwks: b}
}

// token issues a valid access token for subject.
func (k keys) token(t testing.TB, subject string) string {
	t.Helper()
	now := time.Now()
	tok, err := authn.Issue(k.key, authn.AccessClaims{
		Issuer: testIssuer, Audience: testAudience, Subject: subject, SessionID: uuid.NewString(),
		TokenID: uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// raw signs header and claims as a compact JWS with sign, for forged tokens.
func raw(t *testing.T, header, claims map[string]any, sign func([]byte) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// claims returns valid claims for subject, changed by edit.
func claims(subject string, edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": testIssuer, "aud": []string{testAudience}, "sub": subject, "sid": uuid.NewString(),
		"jti": uuid.NewString(), "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// fixture is a gateway in front of upstreams.
type fixture struct {
	keys      keys
	gw        *Gateway
	url       string
	adminURL  string
	upstreams []*upstream
	logs      *testkit.Buffer
	h1        *http.Client
	h2        *http.Client
	stop      func() error
}

// newFixture starts n upstreams (serving every service) and a gateway in front of them;
// edit adjusts the configuration first.
func newFixture(t testing.TB, n int, edit func(*config.Config)) *fixture {
	t.Helper()
	return newFixtureWithKeys(t, newKeys(t), n, edit)
}

// newFixtureWithKeys is newFixture with the upstreams publishing k, so that two fixtures can
// take the same tokens, and with the gateway built with opts too.
func newFixtureWithKeys(t testing.TB, k keys, n int, edit func(*config.Config), opts ...Option) *fixture {
	t.Helper()
	f := &fixture{keys: k, logs: &testkit.Buffer{}, h1: testkit.HTTP1Client(t), h2: testkit.H2CClient(t)}
	var urls []string
	for i := range n {
		u := startUpstream(t, "upstream-"+string(rune('a'+i)), f.keys.jwks)
		f.upstreams = append(f.upstreams, u)
		urls = append(urls, u.url)
	}
	cfg := config.Defaults()
	cfg.Auth.Issuer, cfg.Auth.Audience = testIssuer, testAudience
	cfg.Upstreams = map[string][]string{"auth": urls, "identity": urls, "audit": urls, "authz": urls, "blog": urls}
	// The gateway serves on sockets handed down as a parent process would, the way the
	// launcher starts it.
	var admin listen.Inherited
	cfg.Listen, cfg.Inherited = testkit.InheritedSocket(t)
	cfg.AdminListen, admin = testkit.InheritedSocket(t)
	maps.Copy(cfg.Inherited, admin)
	if edit != nil {
		edit(&cfg)
	}
	log := testkit.Logger(t)
	g, err := New(cfg, append([]Option{WithLogger(newTeeLogger(log, f.logs))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	f.gw = g
	f.stop = testkit.Serve(t, g)
	f.url = "http://" + g.Addr().String()
	f.adminURL = "http://" + g.AdminAddr().String()
	return f
}

// get sends a plain HTTP request through the gateway.
func (f *fixture) do(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.String()
}
