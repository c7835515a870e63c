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
	now    func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// NewServiceTokens returns the credentials of the named service.
func NewServiceTokens(name string, secret []byte) (*ServiceTokens, error) {
	if len(secret) < MinServiceSecretBytes {
		return nil, fmt.Errorf("authn: the internal secret must be at least %d bytes", MinServiceSecretBytes)
	}
	return &ServiceTokens{name: name, secret: append([]byte(nil), secret...), now: time.Now}, nil
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
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(jwa.HS256, s.secret),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(s.now)),
		jwt.WithAcceptableSkew(MaxClockSkew),
		jwt.WithIssuer(serviceIssuer),
		jwt.WithAudience(serviceAudience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
	)
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
