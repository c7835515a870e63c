package store

import (
	"context"
	"time"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/services/identity/ent"
	"github.com/basaltplatform/basalt/services/identity/ent/pendinggrant"
)

// DueGrants returns up to limit pending grants due at now, oldest first.
func (s *Store) DueGrants(ctx context.Context, now time.Time, limit int) ([]*ent.PendingGrant, error) {
	gs, err := s.client.PendingGrant.Query().
		Where(pendinggrant.NextAttemptAtLTE(now)).
		Order(ent.Asc(pendinggrant.FieldID)).
		Limit(limit).
		All(ctx)
	return gs, database.Translate(err)
}

// GrantDelivered removes a grant the authz service took.
func (s *Store) GrantDelivered(ctx context.Context, id string) error {
	return database.Translate(s.client.PendingGrant.DeleteOneID(id).Exec(ctx))
}

// GrantFailed schedules another attempt at next.
func (s *Store) GrantFailed(ctx context.Context, id string, next time.Time) error {
	return database.Translate(s.client.PendingGrant.UpdateOneID(id).AddAttempts(1).SetNextAttemptAt(next).Exec(ctx))
}

// PendingGrants returns how many grants wait for delivery.
func (s *Store) PendingGrants(ctx context.Context) (int, error) {
	n, err := s.client.PendingGrant.Query().Count(ctx)
	return n, database.Translate(err)
}
