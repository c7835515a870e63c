package authn_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
)

const (
	issuer   = "https://basalt.test"
	audience = "basalt"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// signingKey returns a private Ed25519 JWK with a kid and alg, and its public key set.
func signingKey(t testing.TB, kid string) (jwk.Key, jwk.Set) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, kid)
	_ = key.Set(jwk.AlgorithmKey, jwa.EdDSA)
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	return key, set
}

func claims() authn.AccessClaims {
	return authn.AccessClaims{
		Issuer: issuer, Audience: audience, Subject: "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b",
		SessionID: "s-1", TokenID: uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute),
	}
}

func issue(t testing.TB, key jwk.Key, c authn.AccessClaims) string {
	t.Helper()
	tok, err := authn.Issue(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func verifier(set jwk.Set, at time.Time) *authn.Verifier {
	return authn.NewVerifier(authn.NewStaticKeys(set), issuer, audience, authn.WithVerifierClock(func() time.Time { return at }))
}

// signRaw signs arbitrary header and payload JSON with alg and key, for forgeries the jwx
// builder would refuse to make.
func signRaw(t *testing.T, header map[string]any, payload map[string]any, alg jwa.SignatureAlgorithm, key any) string {
	t.Helper()
	hdr := jws.NewHeaders()
	for k, v := range header {
		if err := hdr.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := json.Marshal(payload)
	out, err := jws.Sign(body, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func payload(mut func(map[string]any)) map[string]any {
	p := map[string]any{
		"iss": issuer, "aud": []string{audience}, "sub": "u-1", "jti": "j-1", "sid": "s-1",
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
	}
	if mut != nil {
		mut(p)
	}
	return p
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifierAcceptsAValidToken(t *testing.T) {
	t.Parallel()
	key, set := signingKey(t, "k1")
	c := claims()
	p, err := verifier(set, now.Add(time.Minute)).Verify(context.Background(), issue(t, key, c))
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != c.Subject || p.SessionID != c.SessionID || p.TokenID != c.TokenID || !p.ExpiresAt.Equal(c.ExpiresAt) {
		t.Fatalf("principal = %+v", p)
	}
}

func TestVerifierRejectsForgeries(t *testing.T) {
	t.Parallel()
	key, set := signingKey(t, "k1")
	otherKey, _ := signingKey(t, "k1") // same kid, different key
	pub, _ := key.PublicKey()
	var rawPub ed25519.PublicKey
	if err := pub.Raw(&rawPub); err != nil {
		t.Fatal(err)
	}
	good := issue(t, key, claims())
	parts := strings.Split(good, ".")
	hdrOK := map[string]any{"kid": "k1", "typ": "at+jwt"}
	withHdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"kid": "k1", "typ": "at+jwt"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	jwkHeader, _ := jwk.FromRaw(rawPub)
	// Signing with the raw key keeps jws from filling in the kid from the JWK.
	var rawPriv ed25519.PrivateKey
	if err := key.Raw(&rawPriv); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		at    time.Time
	}{
		{"alg none", b64(map[string]any{"alg": "none", "kid": "k1", "typ": "at+jwt"}) + "." + parts[1] + ".", now},
		{"HS256 signed with the public key", signRaw(t, hdrOK, payload(nil), jwa.HS256, []byte(rawPub)), now},
		{"alg header says ES256 over an EdDSA key", b64(map[string]any{"alg": "ES256", "kid": "k1", "typ": "at+jwt"}) + "." + parts[1] + "." + parts[2], now},
		{"signed by another key with the same kid", issue(t, otherKey, claims()), now},
		{"unknown kid", signRaw(t, withHdr(map[string]any{"kid": "nope"}), payload(nil), jwa.EdDSA, rawPriv), now},
		{"no kid", signRaw(t, map[string]any{"typ": "at+jwt"}, payload(nil), jwa.EdDSA, rawPriv), now},
		{"embedded jwk header", signRaw(t, withHdr(map[string]any{"jwk": jwkHeader}), payload(nil), jwa.EdDSA, key), now},
		{"jku header", signRaw(t, withHdr(map[string]any{"jku": "https://evil.example/jwks.json"}), payload(nil), jwa.EdDSA, key), now},
		{"x5u header", signRaw(t, withHdr(map[string]any{"x5u": "https://evil.example/cert.pem"}), payload(nil), jwa.EdDSA, key), now},
		{"expired beyond the skew", good, now.Add(15*time.Minute + 61*time.Second)},
		{"not yet valid (nbf) beyond the skew", signRaw(t, hdrOK, payload(func(p map[string]any) { p["nbf"] = now.Add(5 * time.Minute).Unix() }), jwa.EdDSA, key), now},
		{"issued in the future beyond the skew", signRaw(t, hdrOK, payload(func(p map[string]any) { p["iat"] = now.Add(5 * time.Minute).Unix() }), jwa.EdDSA, key), now},
		{"wrong audience", signRaw(t, hdrOK, payload(func(p map[string]any) { p["aud"] = []string{"someone-else"} }), jwa.EdDSA, key), now},
		{"wrong issuer", signRaw(t, hdrOK, payload(func(p map[string]any) { p["iss"] = "https://evil.example" }), jwa.EdDSA, key), now},
		{"no exp", signRaw(t, hdrOK, payload(func(p map[string]any) { delete(p, "exp") }), jwa.EdDSA, key), now},
		{"no sub", signRaw(t, hdrOK, payload(func(p map[string]any) { delete(p, "sub") }), jwa.EdDSA, key), now},
		{"typ JWT instead of at+jwt", signRaw(t, map[string]any{"kid": "k1", "typ": "JWT"}, payload(nil), jwa.EdDSA, key), now},
		{"no typ", signRaw(t, map[string]any{"kid": "k1"}, payload(nil), jwa.EdDSA, key), now},
		{"tampered payload", parts[0] + "." + b64(payload(func(p map[string]any) { p["sub"] = "admin" })) + "." + parts[2], now},
		{"a refresh token", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), now},
		{"empty", "", now},
		{"garbage", "not.a.jwt", now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := verifier(set, tt.at).Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatal("accepted")
			}
			if errs.KindOf(err) != errs.KindUnauthenticated {
				t.Fatalf("error %v is %v, want unauthenticated", err, errs.KindOf(err))
			}
		})
	}
}

// TestForgeryFixturesAreOtherwiseValid makes sure the forgeries above fail for the reason
// their names give: the same construction with nothing forged verifies.
func TestForgeryFixturesAreOtherwiseValid(t *testing.T) {
	t.Parallel()
	key, set := signingKey(t, "k1")
	var rawPriv ed25519.PrivateKey
	if err := key.Raw(&rawPriv); err != nil {
		t.Fatal(err)
	}
	tok := signRaw(t, map[string]any{"kid": "k1", "typ": "at+jwt"}, payload(nil), jwa.EdDSA, rawPriv)
	if _, err := verifier(set, now).Verify(context.Background(), tok); err != nil {
		t.Fatalf("the unforged fixture does not verify: %v", err)
	}
}

func TestVerifierToleratesSixtySecondsOfSkewAndNoMore(t *testing.T) {
	t.Parallel()
	key, set := signingKey(t, "k1")
	c := claims()
	tok := issue(t, key, c)
	if _, err := verifier(set, c.ExpiresAt.Add(59*time.Second)).Verify(context.Background(), tok); err != nil {
		t.Fatalf("59s after expiry: %v", err)
	}
	_, err := verifier(set, c.ExpiresAt.Add(61*time.Second)).Verify(context.Background(), tok)
	if !errs.Is(err, errs.KindUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("61s after expiry: %v, want an expired error", err)
	}
	// A verifier cannot be configured more lenient than the platform's limit.
	lenient := authn.NewVerifier(authn.NewStaticKeys(set), issuer, audience, authn.WithSkew(time.Hour),
		authn.WithVerifierClock(func() time.Time { return c.ExpiresAt.Add(2 * time.Minute) }))
	if _, err := lenient.Verify(context.Background(), tok); err == nil {
		t.Fatal("skew above 60s was honoured")
	}
}

// TestHugeTokenIsRejectedWithoutAllocating checks that a megabyte of garbage is turned away
// before anything proportional to it is allocated. It runs alone (not parallel), so the
// process-wide allocation counter reflects only the call.
func TestHugeTokenIsRejectedWithoutAllocating(t *testing.T) {
	_, set := signingKey(t, "k1")
	v := verifier(set, now)
	huge := strings.Repeat("A", 1<<20) + "." + strings.Repeat("B", 10) + "." + strings.Repeat("C", 10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := v.Verify(context.Background(), huge)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("accepted")
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 64<<10 {
		t.Fatalf("rejecting a 1 MiB token allocated %d bytes", allocated)
	}
	// A token just under the size limit with a huge header is also refused cheaply.
	bigHeader := strings.Repeat("A", authn.MaxTokenBytes-100) + ".e30.sig"
	runtime.ReadMemStats(&before)
	_, err = v.Verify(context.Background(), bigHeader)
	runtime.ReadMemStats(&after)
	if err == nil || after.TotalAlloc-before.TotalAlloc > 16<<10 {
		t.Fatalf("big header: err %v, allocated %d", err, after.TotalAlloc-before.TotalAlloc)
	}
}

func FuzzVerify(f *testing.F) {
	key, set := signingKey(f, "k1")
	c := claims()
	good := issue(f, key, c)
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(b64(map[string]any{"alg": "none", "kid": "k1", "typ": "at+jwt"}) + ".e30.")
	v := verifier(set, now)
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err != nil {
			if errs.KindOf(err) != errs.KindUnauthenticated {
				t.Fatalf("error of kind %v: %v", errs.KindOf(err), err)
			}
			return
		}
		// Whatever the fuzzer finds that verifies must say exactly what the signed token says.
		if p.Subject != c.Subject || p.TokenID != c.TokenID || p.SessionID != c.SessionID {
			t.Fatalf("a mutated token verified with different claims: %+v", p)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	key, set := signingKey(b, "k1")
	c := claims()
	tok := issue(b, key, c)
	v := verifier(set, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}
