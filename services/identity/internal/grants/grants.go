// Package grants delivers the roles the identity service queued for new users to the authz
// service: member for a registration, admin for the bootstrap administrator.
package grants

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/services/identity/ent"
)

// Granter gives a subject a role; the generated AuthzService client has it.
type Granter interface {
	GrantRole(context.Context, *connect.Request[authzv1.GrantRoleRequest]) (*connect.Response[authzv1.GrantRoleResponse], error)
}

// Queue is where grants wait; the store has it.
type Queue interface {
	DueGrants(ctx context.Context, now time.Time, limit int) ([]*ent.PendingGrant, error)
	GrantDelivered(ctx context.Context, id string) error
	GrantFailed(ctx context.Context, id string, next time.Time) error
}

// Relay delivers queued grants until ctx ends, looking every interval. GrantRole is
// idempotent, so a grant delivered twice (the relay stopped before removing it) does no harm.
func Relay(ctx context.Context, q Queue, authz Granter, interval time.Duration, log *slog.Logger) {
	for {
		if err := DeliverDue(ctx, q, authz, log); err != nil && ctx.Err() == nil {
			log.Warn("grant delivery failed; grants stay queued", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// DeliverDue delivers every grant due now once.
func DeliverDue(ctx context.Context, q Queue, authz Granter, log *slog.Logger) error {
	due, err := q.DueGrants(ctx, time.Now(), 100)
	if err != nil {
		return err
	}
	for _, g := range due {
		_, err := authz.GrantRole(ctx, connect.NewRequest(&authzv1.GrantRoleRequest{Subject: g.Subject, Role: g.Role}))
		if err != nil {
			backoff := min(time.Duration(1<<min(g.Attempts, 8))*250*time.Millisecond, time.Minute)
			log.Warn("could not grant a role yet; retrying", "subject", g.Subject, "role", g.Role, "error", err, "retry_in", backoff)
			if ferr := q.GrantFailed(ctx, g.ID, time.Now().Add(backoff)); ferr != nil {
				return ferr
			}
			continue
		}
		if err := q.GrantDelivered(ctx, g.ID); err != nil {
			return err
		}
		log.Info("role granted", "subject", g.Subject, "role", g.Role)
	}
	return nil
}
