// Package authn authenticates callers: users by their access tokens (JWTs signed by the auth
// service and verified with its published keys) and services by their service credentials. It
// carries the verified identities through a request.
package authn

import (
	"context"
	"strings"
	"time"
)

// Principal is a verified user.
type Principal struct {
	// Subject is the user id.
	Subject string
	// SessionID is the auth session the token belongs to.
	SessionID string
	// TokenID is the token's jti.
	TokenID string
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
}

type principalKey struct{}

type callerKey struct{}

type tokenKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the verified user, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithCaller returns a context carrying the verified name of the calling service.
func WithCaller(ctx context.Context, service string) context.Context {
	return context.WithValue(ctx, callerKey{}, service)
}

// CallerFrom returns the verified name of the calling service, if a service called.
func CallerFrom(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(callerKey{}).(string)
	return s, ok && s != ""
}

// Subject returns who acts in ctx, for permission checks and audit events: the user when a
// user's token came with the request, otherwise "service:<name>" for a calling service, and
// "" for an anonymous caller.
func Subject(ctx context.Context) string {
	if p, ok := PrincipalFrom(ctx); ok {
		return p.Subject
	}
	if s, ok := CallerFrom(ctx); ok {
		return ServiceSubject(s)
	}
	return ""
}

// ServiceSubject is the subject of a service in role bindings and audit events.
func ServiceSubject(service string) string { return "service:" + service }

// WithToken returns a context carrying the caller's bearer token as received, so that calls to
// other services can forward it and those services can verify the caller themselves.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFrom returns the caller's bearer token, or "".
func TokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}

// BearerToken extracts the token from an Authorization header value ("Bearer <token>"; the
// scheme is case-insensitive). It returns "" for any other form.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
