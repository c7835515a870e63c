// Package authn carries the caller's credentials and verified identity through a request.
package authn

import (
	"context"
	"strings"
)

// Principal is a verified caller.
type Principal struct {
	// Subject is the user id, or "service:<name>" for a service.
	Subject string
	// SessionID is the auth session the token belongs to, when the caller is a user.
	SessionID string
	// TokenID is the token's jti.
	TokenID string
}

type principalKey struct{}

type tokenKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the verified caller, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

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
