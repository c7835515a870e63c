package authn_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	_ "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
)

const (
	public        = "/basalt.auth.v1.AuthService/Login"
	authenticated = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	internalAuth  = "/basalt.identity.v1.IdentityService/VerifyCredentials" // callers: auth
	internalAny   = "/basalt.auth.v1.AuthService/CheckSession"              // any service
)

var secret = []byte(strings.Repeat("s", 32))

func services(t *testing.T, name string) *authn.ServiceTokens {
	t.Helper()
	s, err := authn.NewServiceTokens(name, secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type sessionsFunc func(ctx context.Context, sid string) (bool, error)

func (f sessionsFunc) Active(ctx context.Context, sid string) (bool, error) { return f(ctx, sid) }

func TestServiceTokensRoundTrip(t *testing.T) {
	t.Parallel()
	auth := services(t, "auth")
	tok, err := auth.Token()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := auth.Token()
	if again != tok {
		t.Fatal("a fresh credential was signed for every call")
	}
	name, err := services(t, "identity").Verify(tok)
	if err != nil || name != "auth" {
		t.Fatalf("Verify = %q, %v", name, err)
	}
	other, err := authn.NewServiceTokens("identity", []byte(strings.Repeat("x", 32)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(tok); err == nil {
		t.Fatal("a credential signed with another secret verified")
	}
	if _, err := authn.NewServiceTokens("x", []byte("short")); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

// TestServiceCredentialsNeedEveryClaim signs credentials with the shared secret itself, as only a
// platform service could, and checks that the signature alone does not make them valid.
func TestServiceCredentialsNeedEveryClaim(t *testing.T) {
	t.Parallel()
	identity := services(t, "identity")
	at := time.Now()
	credential := func(mut func(map[string]any)) map[string]any {
		p := map[string]any{
			"iss": "basalt-internal", "aud": []string{"basalt-internal"}, "sub": "service:auth",
			"iat": at.Unix(), "exp": at.Add(5 * time.Minute).Unix(),
		}
		if mut != nil {
			mut(p)
		}
		return p
	}
	tests := []struct {
		name  string
		claim map[string]any
		ok    bool
	}{
		{"every claim right", credential(nil), true},
		{"expired beyond the skew", credential(func(p map[string]any) { p["exp"] = at.Add(-2 * time.Minute).Unix() }), false},
		{"no expiry", credential(func(p map[string]any) { delete(p, "exp") }), false},
		{"a user token's issuer", credential(func(p map[string]any) { p["iss"] = issuer }), false},
		{"a user token's audience", credential(func(p map[string]any) { p["aud"] = []string{audience} }), false},
		{"a subject that names no service", credential(func(p map[string]any) { p["sub"] = "u-1" }), false},
		{"no subject", credential(func(p map[string]any) { delete(p, "sub") }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name, err := identity.Verify(signRaw(t, nil, tt.claim, jwa.HS256, secret))
			switch {
			case tt.ok && (err != nil || name != "auth"):
				t.Fatalf("Verify = %q, %v", name, err)
			case !tt.ok && errs.KindOf(err) != errs.KindUnauthenticated:
				t.Fatalf("Verify = %q, %v; want unauthenticated", name, err)
			}
		})
	}
}

// TestServiceSecretRotatesInRollingSteps follows a change of the shared secret through its three
// steps. During each step, instances that took it and instances that did not yet run side by side;
// every credential each of them signs must verify at every other.
func TestServiceSecretRotatesInRollingSteps(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := []byte(strings.Repeat("o", 32)), []byte(strings.Repeat("n", 32))
	type setup struct {
		sign, accept []byte
	}
	var (
		before = setup{sign: oldSecret}
		step1  = setup{sign: oldSecret, accept: newSecret}
		step2  = setup{sign: newSecret, accept: oldSecret}
		after  = setup{sign: newSecret}
	)
	tokens := func(t *testing.T, name string, s setup) *authn.ServiceTokens {
		t.Helper()
		var opts []authn.ServiceTokensOption
		if s.accept != nil {
			opts = append(opts, authn.WithAcceptedSecret(s.accept))
		}
		st, err := authn.NewServiceTokens(name, s.sign, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	steps := []struct {
		name          string
		behind, ahead setup
	}{
		{"accept the new secret", before, step1},
		{"sign with the new secret, accept the old", step1, step2},
		{"stop accepting the old secret", step2, after},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			a, b := tokens(t, "auth", st.behind), tokens(t, "identity", st.ahead)
			for _, pair := range [][2]*authn.ServiceTokens{{a, b}, {b, a}} {
				tok, err := pair[0].Token()
				if err != nil {
					t.Fatal(err)
				}
				if name, err := pair[1].Verify(tok); err != nil || name != pair[0].Name() {
					t.Fatalf("%s's credential at %s: %q, %v", pair[0].Name(), pair[1].Name(), name, err)
				}
			}
		})
	}

	// Once the old secret is no longer accepted, what it signs is refused.
	oldTok, err := tokens(t, "auth", before).Token()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens(t, "identity", after).Verify(oldTok); errs.KindOf(err) != errs.KindUnauthenticated {
		t.Fatalf("a credential of the old secret after the rotation: %v", err)
	}
	// Skipping the first step splits the services: one signing with the new secret meets one
	// that knows only the old.
	newTok, err := tokens(t, "identity", step2).Token()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens(t, "auth", before).Verify(newTok); errs.KindOf(err) != errs.KindUnauthenticated {
		t.Fatalf("a credential of the new secret where only the old is known: %v", err)
	}
	// An accepted secret verifies only what it signed: a third secret stays refused.
	other, err := tokens(t, "blog", setup{sign: []byte(strings.Repeat("x", 32))}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens(t, "identity", step2).Verify(other); errs.KindOf(err) != errs.KindUnauthenticated {
		t.Fatalf("a credential of an unknown secret with two accepted: %v", err)
	}
	if _, err := authn.NewServiceTokens("x", oldSecret, authn.WithAcceptedSecret([]byte("short"))); err == nil {
		t.Fatal("a short accepted secret was taken")
	}
}

func TestInterceptorAppliesEachMethodsRule(t *testing.T) {
	t.Parallel()
	key, set := signingKey(t, "k1")
	userToken := issue(t, key, claims())
	c := claims()
	c.SessionID = "ended"
	endedToken := issue(t, key, c)
	c = claims()
	c.ExpiresAt = now.Add(-time.Hour)
	c.IssuedAt = now.Add(-2 * time.Hour)
	expiredToken := issue(t, key, c)
	authToken, _ := services(t, "auth").Token()
	blogToken, _ := services(t, "blog").Token()
	forgedService, _ := func() (string, error) {
		s, _ := authn.NewServiceTokens("auth", []byte(strings.Repeat("f", 32)))
		return s.Token()
	}()

	i := authn.NewInterceptor(
		authn.NewVerifier(authn.NewStaticKeys(set), issuer, audience, authn.WithVerifierClock(func() time.Time { return now })),
		services(t, "identity"),
		authn.WithSessions(sessionsFunc(func(_ context.Context, sid string) (bool, error) { return sid != "ended", nil })),
	)

	tests := []struct {
		name      string
		procedure string
		user      string
		service   string
		want      errs.Kind // KindInternal stands for "no error"
		subject   string
	}{
		{"public without credentials", public, "", "", errs.KindInternal, ""},
		{"public ignores an expired token", public, expiredToken, "", errs.KindInternal, ""},
		{"public with a valid token knows the user", public, userToken, "", errs.KindInternal, claims().Subject},
		{"authenticated without credentials", authenticated, "", "", errs.KindUnauthenticated, ""},
		{"authenticated with a user token", authenticated, userToken, "", errs.KindInternal, claims().Subject},
		{"authenticated with an expired token", authenticated, expiredToken, "", errs.KindUnauthenticated, ""},
		{"authenticated with a token of an ended session", authenticated, endedToken, "", errs.KindUnauthenticated, ""},
		{"authenticated with a garbage token", authenticated, "garbage", "", errs.KindUnauthenticated, ""},
		{"authenticated by a service", authenticated, "", blogToken, errs.KindInternal, "service:blog"},
		{"internal without credentials", internalAuth, "", "", errs.KindUnauthenticated, ""},
		{"internal with a user token only", internalAuth, userToken, "", errs.KindUnauthenticated, ""},
		{"internal with a forwarded token of an ended session", internalAny, endedToken, blogToken, errs.KindInternal, claims().Subject},
		{"internal from an allowed service", internalAuth, "", authToken, errs.KindInternal, "service:auth"},
		{"internal from a service the contract does not name", internalAuth, "", blogToken, errs.KindPermissionDenied, ""},
		{"internal with a forged service credential", internalAuth, "", forgedService, errs.KindUnauthenticated, ""},
		{"internal open to any service", internalAny, "", blogToken, errs.KindInternal, "service:blog"},
		{"user and service together: the user acts", authenticated, userToken, blogToken, errs.KindInternal, claims().Subject},
		{"unknown basalt procedure is internal", "/basalt.nope.v1.Nope/Nope", userToken, "", errs.KindUnauthenticated, ""},
		{"gRPC reflection is public", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", "", errs.KindInternal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tt.user != "" {
				ctx = authn.WithToken(ctx, tt.user)
			}
			h := http.Header{}
			if tt.service != "" {
				h.Set(authn.ServiceHeader, tt.service)
			}
			ctx, err := i.Authenticate(ctx, tt.procedure, h)
			if tt.want == errs.KindInternal {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := authn.Subject(ctx); got != tt.subject {
					t.Fatalf("subject = %q, want %q", got, tt.subject)
				}
				return
			}
			if errs.KindOf(err) != tt.want {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}
