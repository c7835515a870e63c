package authn

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/basaltplatform/basalt/kernel/errs"
)

// ServiceHeader carries a service credential. It is separate from Authorization so that a call
// can carry both the user it acts for and the service that makes it.
const ServiceHeader = "X-Basalt-Service-Token"

// serviceIssuer and serviceAudience mark service credentials; user tokens never carry them.
const (
	serviceIssuer   = "basalt-internal"
	serviceAudience = "basalt-internal"
	servicePrefix   = "service:"
	serviceTokenTTL = 5 * time.Minute
)

// MinServiceSecretBytes is the shortest shared secret accepted.
const MinServiceSecretBytes = 32

// ServiceTokens signs this service's credentials and verifies other services'. Every service of
// a deployment shares one secret (BASALT_INTERNAL_SECRET): the credential proves that the
// caller is a platform service and names which one, so that internal methods can refuse
// callers outside the network and the services their contract does not name. It is not a
// defence against a compromised service, which holds the secret; see docs/architecture/security.md.
type ServiceTokens struct {
	name   string
	secret []byte
	// parse verifies credentials: a key for the secret, then one for each accepted secret,
	// then the claims every credential must carry. It is the same for every call.
	parse []jwt.ParseOption
	now   func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// ServiceTokensOption configures NewServiceTokens.
type ServiceTokensOption func(*serviceTokensOptions)

type serviceTokensOptions struct {
	accepted [][]byte
}

// WithAcceptedSecret makes the credentials signed with secret verify too, beside those signed
// with the service's own secret, which alone signs. Changing a secret that every service shares
// takes three rolling steps, none of which needs the services to restart together: accept the
// new secret everywhere; sign with the new and accept the old everywhere; stop accepting the old.
// At every moment of each step, every credential in use verifies everywhere.
func WithAcceptedSecret(secret []byte) ServiceTokensOption {
	return func(o *serviceTokensOptions) { o.accepted = append(o.accepted, secret) }
}

// NewServiceTokens returns the credentials of the named service, signed with secret.
func NewServiceTokens(name string, secret []byte, opts ...ServiceTokensOption) (*ServiceTokens, error) {
	var o serviceTokensOptions
	for _, opt := range opts {
		opt(&o)
	}
	s := &ServiceTokens{name: name, secret: append([]byte(nil), secret...), now: time.Now}
	for i, k := range append([][]byte{secret}, o.accepted...) {
		if len(k) < MinServiceSecretBytes {
			if i == 0 {
				return nil, fmt.Errorf("authn: the internal secret must be at least %d bytes", MinServiceSecretBytes)
			}
			return nil, fmt.Errorf("authn: an accepted internal secret must be at least %d bytes", MinServiceSecretBytes)
		}
		// Each key is its own copy: the caller's slice may change after this returns.
		s.parse = append(s.parse, jwt.WithKey(jwa.HS256, append([]byte(nil), k...)))
	}
	s.parse = append(s.parse,
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(s.now)),
		jwt.WithAcceptableSkew(MaxClockSkew),
		jwt.WithIssuer(serviceIssuer),
		jwt.WithAudience(serviceAudience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
	)
	return s, nil
}

// Name returns the service's name.
func (s *ServiceTokens) Name() string { return s.name }

// Token returns a credential for this service, signing a new one when the last is past the
// first minute of its five.
func (s *ServiceTokens) Token() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token != "" && now.Before(s.renewAt) {
		return s.token, nil
	}
	tok, err := jwt.NewBuilder().
		Issuer(serviceIssuer).
		Audience([]string{serviceAudience}).
		Subject(servicePrefix + s.name).
		IssuedAt(now).
		Expiration(now.Add(serviceTokenTTL)).
		JwtID(uuid.NewString()).
		Build()
	if err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, s.secret))
	if err != nil {
		return "", err
	}
	s.token, s.renewAt = string(signed), now.Add(time.Minute)
	return s.token, nil
}

// ErrInvalidServiceToken is returned for a service credential that does not verify.
var ErrInvalidServiceToken = errs.Unauthenticated("the service credential is invalid")

// Verify checks a service credential and returns the calling service's name.
func (s *ServiceTokens) Verify(token string) (string, error) {
	if token == "" || len(token) > MaxTokenBytes {
		return "", ErrInvalidServiceToken
	}
	h, err := parseHeader(token)
	if err != nil || h.Alg != string(jwa.HS256) || len(h.Jku) > 0 || len(h.Jwk) > 0 || len(h.X5u) > 0 || len(h.X5c) > 0 || len(h.Crit) > 0 {
		return "", ErrInvalidServiceToken
	}
	// The signature is checked with each key in turn until one matches.
	tok, err := jwt.Parse([]byte(token), s.parse...)
	if err != nil {
		return "", errs.Wrap(errs.KindUnauthenticated, err, "%s", ErrInvalidServiceToken.Message)
	}
	name, ok := strings.CutPrefix(tok.Subject(), servicePrefix)
	if !ok || name == "" {
		return "", ErrInvalidServiceToken
	}
	return name, nil
}

// errNoServiceTokens is returned when a service credential is needed but none are configured.
var errNoServiceTokens = errors.New("authn: no internal secret is configured")
