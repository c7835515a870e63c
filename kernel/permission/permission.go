// Package permission enforces the permissions the contracts name: an interceptor checks a
// method's permission before its handler runs, and handlers check resource-scoped permissions
// through a Guard. Both ask a Checker (the authz service through a bounded, short-lived
// cache, or the authz service's own index), and every denial is an audit event.
package permission

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/cache"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/policy"
)

// Checker answers whether subject holds permission (on resource, when given).
type Checker interface {
	Check(ctx context.Context, subject, permission, resource string) (bool, error)
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context, subject, permission, resource string) (bool, error)

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, subject, permission, resource string) (bool, error) {
	return f(ctx, subject, permission, resource)
}

// checkClient is what Remote needs of the generated AuthzService client.
type checkClient interface {
	Check(context.Context, *connect.Request[authzv1.CheckRequest]) (*connect.Response[authzv1.CheckResponse], error)
}

// Remote asks the authz service and remembers answers for a short time in a bounded cache.
// The cache is why a change of roles can take up to its ttl to reach a service; the authz
// service itself answers consistently the moment a change returns.
type Remote struct {
	client checkClient
	cache  *cache.Cache[key, bool]
}

type key struct{ subject, permission, resource string }

var _ Checker = (*Remote)(nil)

// NewRemote returns a checker over client caching up to size answers for ttl each.
func NewRemote(client checkClient, size int, ttl time.Duration) *Remote {
	return &Remote{client: client, cache: cache.New[key, bool](size, ttl)}
}

// Check asks the authz service, or the cache.
func (r *Remote) Check(ctx context.Context, subject, permission, resource string) (bool, error) {
	k := key{subject, permission, resource}
	if v, ok := r.cache.Get(k); ok {
		return v, nil
	}
	res, err := r.client.Check(ctx, connect.NewRequest(&authzv1.CheckRequest{Subject: subject, Permission: permission, Resource: resource}))
	if err != nil {
		return false, errs.Unavailable(err, "the permission check could not be made; retry later")
	}
	allowed := res.Msg.GetAllowed()
	r.cache.Set(k, allowed)
	return allowed, nil
}

// Guard checks permissions for a service and records denials.
type Guard struct {
	checker  Checker
	recorder outbox.Recorder
	service  string
	log      *slog.Logger
	now      func() time.Time
}

// NewGuard returns a guard of the named service. recorder may be nil (no audit of denials).
func NewGuard(service string, checker Checker, recorder outbox.Recorder, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{checker: checker, recorder: recorder, service: service, log: log, now: time.Now}
}

// SetChecker replaces the checker. Call it before the service serves.
func (g *Guard) SetChecker(c Checker) { g.checker = c }

// SetRecorder replaces the recorder of denials. Call it before the service serves.
func (g *Guard) SetRecorder(r outbox.Recorder) { g.recorder = r }

// Allowed reports whether the acting subject of ctx holds permission on resource, without
// recording anything: for decisions such as "the author, or anyone with blog.posts.manage".
func (g *Guard) Allowed(ctx context.Context, permission, resource string) (bool, error) {
	subject := authn.Subject(ctx)
	if subject == "" {
		return false, nil
	}
	return g.checker.Check(ctx, subject, permission, resource)
}

// Require returns nil when the acting subject of ctx holds permission on resource, and
// otherwise records an "authz.denied" audit event and returns a permission_denied error
// naming the permission (unauthenticated when nobody is acting).
func (g *Guard) Require(ctx context.Context, permission, resource string) error {
	subject := authn.Subject(ctx)
	if subject == "" {
		return errs.Unauthenticated("an access token is required")
	}
	allowed, err := g.checker.Check(ctx, subject, permission, resource)
	if err != nil {
		return err
	}
	if allowed {
		return nil
	}
	g.Deny(ctx, permission, resource)
	return errs.PermissionDenied("the permission %q is required", permission)
}

// Deny records that the acting subject was refused permission on resource.
func (g *Guard) Deny(ctx context.Context, permission, resource string) {
	if g.recorder == nil {
		return
	}
	md := map[string]string{"permission": permission}
	if resource != "" {
		md["resource"] = resource
	}
	if proc, ok := procedureFrom(ctx); ok {
		md["procedure"] = proc
	}
	ev := outbox.NewEvent(ctx, g.service, g.now(), "authz.denied", outbox.Denied, "permission", permission, md)
	if err := g.recorder.Record(context.WithoutCancel(ctx), ev); err != nil {
		g.log.ErrorContext(ctx, "could not record a permission denial", "error", err)
	}
}

type procedureKey struct{}

func procedureFrom(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(procedureKey{}).(string)
	return p, ok
}

// Interceptor enforces the permission each method's contract names.
type Interceptor struct {
	guard *Guard
}

var _ connect.Interceptor = Interceptor{}

// NewInterceptor returns the interceptor over guard.
func NewInterceptor(guard *Guard) Interceptor { return Interceptor{guard: guard} }

func (i Interceptor) check(ctx context.Context, procedure string) (context.Context, error) {
	ctx = context.WithValue(ctx, procedureKey{}, procedure)
	rule, ok := policy.Lookup(procedure)
	if !ok || rule.Permission == "" {
		return ctx, nil
	}
	return ctx, i.guard.Require(ctx, rule.Permission, "")
}

// WrapUnary checks unary calls to handlers.
func (i Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.check(ctx, req.Spec().Procedure)
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves clients alone.
func (i Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler checks streaming calls to handlers.
func (i Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.check(ctx, conn.Spec().Procedure)
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
