package authn

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/basaltplatform/basalt/kernel/cache"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/policy"
)

// Sessions says whether a session is still active, so that a token of an ended session stops
// working before it expires.
type Sessions interface {
	Active(ctx context.Context, sessionID string) (bool, error)
}

// SessionsFunc adapts a function to Sessions.
type SessionsFunc func(ctx context.Context, sessionID string) (bool, error)

// Active calls f.
func (f SessionsFunc) Active(ctx context.Context, sessionID string) (bool, error) {
	return f(ctx, sessionID)
}

// Interceptor authenticates every call to a handler according to its method's access rule:
// public methods need nothing (a token that comes along is used when valid and ignored when
// not); authenticated methods need a valid access token of an active session, or a valid
// service credential; internal methods need a service credential from a service their
// contract allows (a user's token forwarded with it is used when valid and ignored when not).
// The verified user and calling service go on the context.
type Interceptor struct {
	users    *Verifier
	services *ServiceTokens
	sessions Sessions
	log      *slog.Logger
}

var _ connect.Interceptor = (*Interceptor)(nil)

// InterceptorOption configures NewInterceptor.
type InterceptorOption func(*Interceptor)

// WithSessions rejects tokens whose session has ended (see CachedSessions).
func WithSessions(s Sessions) InterceptorOption { return func(i *Interceptor) { i.sessions = s } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) InterceptorOption { return func(i *Interceptor) { i.log = l } }

// NewInterceptor returns an interceptor verifying user tokens with users and service
// credentials with services. Either may be nil, and then such callers are never verified.
func NewInterceptor(users *Verifier, services *ServiceTokens, opts ...InterceptorOption) *Interceptor {
	i := &Interceptor{users: users, services: services, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(i)
	}
	return i
}

// SetVerifier replaces the verifier of user tokens. Call it before the server serves.
func (i *Interceptor) SetVerifier(v *Verifier) { i.users = v }

// SetSessions replaces the session check. Call it before the server serves.
func (i *Interceptor) SetSessions(s Sessions) { i.sessions = s }

// WrapUnary authenticates unary calls to handlers.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.Authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves client streams alone.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler authenticates streaming calls to handlers.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.Authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// Authenticate applies procedure's access rule to the credentials in header (and the bearer
// token the server middleware put on ctx) and returns ctx with the verified identities.
func (i *Interceptor) Authenticate(ctx context.Context, procedure string, header http.Header) (context.Context, error) {
	rule := policy.For(procedure)

	var caller string
	if raw := header.Get(ServiceHeader); raw != "" {
		if i.services == nil {
			return ctx, ErrInvalidServiceToken
		}
		name, err := i.services.Verify(raw)
		if err != nil {
			if rule.Audience == policy.Public {
				name = ""
			} else {
				return ctx, err
			}
		}
		caller = name
	}

	// A user's token decides only authenticated methods. Public methods need none, and internal
	// ones are decided by the service credential; there a forwarded token only tells who the
	// call is for, and is used when it verifies.
	var principal *Principal
	if tok := TokenFrom(ctx); tok != "" {
		p, err := i.verifyUser(ctx, tok, rule.Audience == policy.Authenticated)
		switch {
		case err == nil:
			principal = &p
		case rule.Audience == policy.Authenticated:
			return ctx, err
		}
	}

	switch rule.Audience {
	case policy.Authenticated:
		if principal == nil && caller == "" {
			return ctx, errs.Unauthenticated("an access token is required")
		}
	case policy.Internal:
		if caller == "" {
			return ctx, errs.Unauthenticated("service credentials are required")
		}
		if !rule.AllowsCaller(caller) {
			return ctx, errs.PermissionDenied("service %q may not call this method", caller)
		}
	}
	if principal != nil {
		ctx = WithPrincipal(ctx, *principal)
	}
	if caller != "" {
		ctx = WithCaller(ctx, caller)
	}
	return ctx, nil
}

// verifyUser checks a user's token and, when checkSession is set, that its session is active.
func (i *Interceptor) verifyUser(ctx context.Context, token string, checkSession bool) (Principal, error) {
	if i.users == nil {
		return Principal{}, ErrInvalid
	}
	p, err := i.users.Verify(ctx, token)
	if err != nil || !checkSession || i.sessions == nil || p.SessionID == "" {
		return p, err
	}
	active, err := i.sessions.Active(ctx, p.SessionID)
	if err != nil {
		// Soft-fail: the token's signature and lifetime hold, and an unreachable auth service
		// must not take every other service down with it.
		i.log.WarnContext(ctx, "session check failed; accepting the token", "error", err)
		return p, nil
	}
	if !active {
		return Principal{}, errs.Unauthenticated("the session has ended")
	}
	return p, nil
}

// ClientCredentials adds this service's credential to every outgoing call.
type ClientCredentials struct {
	tokens *ServiceTokens
}

var _ connect.Interceptor = ClientCredentials{}

// NewClientCredentials returns the client side of service authentication.
func NewClientCredentials(tokens *ServiceTokens) ClientCredentials {
	return ClientCredentials{tokens: tokens}
}

func (c ClientCredentials) set(h http.Header) error {
	if c.tokens == nil {
		return errNoServiceTokens
	}
	tok, err := c.tokens.Token()
	if err != nil {
		return err
	}
	h.Set(ServiceHeader, tok)
	return nil
}

// WrapUnary adds the credential to unary calls.
func (c ClientCredentials) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			if err := c.set(req.Header()); err != nil {
				return nil, err
			}
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient adds the credential to client streams.
func (c ClientCredentials) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		_ = c.set(conn.RequestHeader())
		return conn
	}
}

// WrapStreamingHandler leaves handlers alone.
func (c ClientCredentials) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// CachedSessions answers session checks from a bounded cache in front of check (the auth
// service's CheckSession), so a busy session costs one remote call per ttl per instance. A
// revoked session is therefore refused within ttl everywhere.
type CachedSessions struct {
	check func(ctx context.Context, sessionID string) (bool, error)
	cache *cache.Cache[string, bool]
}

var _ Sessions = (*CachedSessions)(nil)

// NewCachedSessions returns a cache of up to size sessions, each trusted for ttl.
func NewCachedSessions(check func(ctx context.Context, sessionID string) (bool, error), size int, ttl time.Duration) *CachedSessions {
	return &CachedSessions{check: check, cache: cache.New[string, bool](size, ttl)}
}

// Active says whether the session is active.
func (c *CachedSessions) Active(ctx context.Context, sessionID string) (bool, error) {
	if v, ok := c.cache.Get(sessionID); ok {
		return v, nil
	}
	active, err := c.check(ctx, sessionID)
	if err != nil {
		return false, err
	}
	c.cache.Set(sessionID, active)
	return active, nil
}

// Bearer sends a user's access token with every call of a client: how a backend calls the
// platform for a user it holds a token of.
type Bearer string

var _ connect.Interceptor = Bearer("")

// WrapUnary sets the Authorization header of unary calls.
func (b Bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient sets the Authorization header of client streams.
func (b Bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

// WrapStreamingHandler leaves handlers alone.
func (b Bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
