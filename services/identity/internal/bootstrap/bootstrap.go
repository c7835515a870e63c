// Package bootstrap gives the platform its first administrator.
package bootstrap

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
)

// Granter gives a subject a role; the generated AuthzService client has it.
type Granter interface {
	GrantRole(context.Context, *connect.Request[authzv1.GrantRoleRequest]) (*connect.Response[authzv1.GrantRoleResponse], error)
}

// GrantAdmin gives userID the admin role, retrying with backoff until the authz service takes
// it or ctx ends: services start in any order, so authz may not be up yet. GrantRole is
// idempotent, so a retry after a lost answer does no harm.
func GrantAdmin(ctx context.Context, authz Granter, userID string, log *slog.Logger) {
	backoff := 250 * time.Millisecond
	for {
		_, err := authz.GrantRole(ctx, connect.NewRequest(&authzv1.GrantRoleRequest{Subject: userID, Role: "admin"}))
		if err == nil {
			log.Info("the bootstrap administrator holds the admin role", "user_id", userID)
			return
		}
		log.Warn("could not grant the admin role yet; retrying", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
