package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/basaltplatform/basalt/kernel/errs"
)

// AccessTokenType is the typ header of access tokens (RFC 9068), which keeps any other JWT the
// platform might sign from being accepted as one.
const AccessTokenType = "at+jwt"

// MaxTokenBytes bounds a token before any parsing, so a huge header cannot make the verifier
// allocate much.
const MaxTokenBytes = 8 << 10

// maxHeaderBytes bounds the decoded JOSE header.
const maxHeaderBytes = 1 << 10

// MaxClockSkew is the most clock difference the verifier tolerates.
const MaxClockSkew = 60 * time.Second

// Keys finds the public key a token names. Implementations may fetch keys they do not know.
type Keys interface {
	Key(ctx context.Context, kid string) (jwk.Key, error)
}

// Verifier checks access tokens.
type Verifier struct {
	keys     Keys
	issuer   string
	audience string
	skew     time.Duration
	now      func() time.Time
}

// VerifierOption configures NewVerifier.
type VerifierOption func(*Verifier)

// WithSkew sets the tolerated clock skew (default and maximum 60s).
func WithSkew(d time.Duration) VerifierOption {
	return func(v *Verifier) { v.skew = min(d, MaxClockSkew) }
}

// WithVerifierClock replaces the clock, for tests.
func WithVerifierClock(now func() time.Time) VerifierOption { return func(v *Verifier) { v.now = now } }

// NewVerifier returns a verifier of tokens issued by issuer for audience, signed by keys.
func NewVerifier(keys Keys, issuer, audience string, opts ...VerifierOption) *Verifier {
	v := &Verifier{keys: keys, issuer: issuer, audience: audience, skew: MaxClockSkew, now: time.Now}
	for _, opt := range opts {
		opt(v)
	}
	return v
}

// Errors a verification can end with; each is an errs.KindUnauthenticated error.
var (
	ErrExpired = errs.Unauthenticated("the access token has expired")
	ErrInvalid = errs.Unauthenticated("the access token is invalid")
)

type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Jku  json.RawMessage `json:"jku"`
	Jwk  json.RawMessage `json:"jwk"`
	X5u  json.RawMessage `json:"x5u"`
	X5c  json.RawMessage `json:"x5c"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks token and returns its principal. The signature is checked with the key the
// token's kid names, using that key's algorithm: a token cannot choose its algorithm (so "none"
// and HS256 signed with a public key fail), and headers that point at other keys (jwk, jku,
// x5u, x5c) are refused outright. The token must carry iss, aud, sub, exp, iat and jti, with
// the configured issuer and audience, be current within the clock skew, and be typed at+jwt.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" || len(token) > MaxTokenBytes {
		return Principal{}, ErrInvalid
	}
	h, err := parseHeader(token)
	if err != nil {
		return Principal{}, errs.Wrap(errs.KindUnauthenticated, err, "the access token is invalid")
	}
	if h.Kid == "" || len(h.Jku) > 0 || len(h.Jwk) > 0 || len(h.X5u) > 0 || len(h.X5c) > 0 || len(h.Crit) > 0 {
		return Principal{}, ErrInvalid
	}
	if typ := strings.ToLower(h.Typ); typ != AccessTokenType && typ != "application/"+AccessTokenType {
		return Principal{}, ErrInvalid
	}
	key, err := v.keys.Key(ctx, h.Kid)
	if err != nil {
		return Principal{}, errs.Wrap(errs.KindUnauthenticated, err, "the access token is invalid")
	}
	alg, ok := key.Algorithm().(jwa.SignatureAlgorithm)
	if !ok || (alg != jwa.EdDSA && alg != jwa.ES256) || string(alg) != h.Alg {
		return Principal{}, ErrInvalid
	}
	clock := jwt.ClockFunc(v.now)
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithClock(clock),
		jwt.WithAcceptableSkew(v.skew),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
		jwt.WithRequiredClaim(jwt.JwtIDKey),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired()) {
			return Principal{}, errs.Wrap(errs.KindUnauthenticated, err, "%s", ErrExpired.Message)
		}
		return Principal{}, errs.Wrap(errs.KindUnauthenticated, err, "the access token is invalid")
	}
	p := Principal{Subject: tok.Subject(), TokenID: tok.JwtID(), ExpiresAt: tok.Expiration()}
	if sid, ok := tok.Get("sid"); ok {
		p.SessionID, _ = sid.(string)
	}
	return p, nil
}

// parseHeader decodes a compact JWS's header without touching the rest.
func parseHeader(token string) (header, error) {
	var h header
	first, rest, ok := strings.Cut(token, ".")
	if !ok || strings.Count(rest, ".") != 1 || first == "" {
		return h, errors.New("authn: not a compact JWS")
	}
	if base64.RawURLEncoding.DecodedLen(len(first)) > maxHeaderBytes {
		return h, errors.New("authn: header too large")
	}
	raw, err := base64.RawURLEncoding.DecodeString(first)
	if err != nil {
		return h, errors.New("authn: header is not base64url")
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, errors.New("authn: header is not JSON")
	}
	return h, nil
}
