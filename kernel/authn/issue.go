package authn

import (
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// AccessClaims are the claims of an access token.
type AccessClaims struct {
	Issuer    string
	Audience  string
	Subject   string
	SessionID string
	TokenID   string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Issue signs an access token with key, which must carry its key id and algorithm (EdDSA or
// ES256). The token format lives here beside Verify, so the two cannot drift apart; only the
// auth service holds private keys and calls it.
func Issue(key jwk.Key, c AccessClaims) (string, error) {
	alg, ok := key.Algorithm().(jwa.SignatureAlgorithm)
	if !ok || (alg != jwa.EdDSA && alg != jwa.ES256) || key.KeyID() == "" {
		return "", fmt.Errorf("authn: signing key needs a kid and the EdDSA or ES256 algorithm")
	}
	b := jwt.NewBuilder().
		Issuer(c.Issuer).
		Audience([]string{c.Audience}).
		Subject(c.Subject).
		JwtID(c.TokenID).
		IssuedAt(c.IssuedAt).
		Expiration(c.ExpiresAt)
	if c.SessionID != "" {
		b = b.Claim("sid", c.SessionID)
	}
	tok, err := b.Build()
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, AccessTokenType); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.KeyIDKey, key.KeyID()); err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	return string(signed), nil
}
