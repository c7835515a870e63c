// Package store keeps users and login throttles in the identity service's own schema through
// Ent, with every change's audit events in the same transaction.
package store

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/services/identity/ent"
	"github.com/basaltplatform/basalt/services/identity/ent/user"
	"github.com/basaltplatform/basalt/services/identity/migrations"
)

// Store is the identity service's storage.
type Store struct {
	db     *database.DB
	client *ent.Client
	outbox *outbox.Outbox
}

// New returns a store over db writing audit events to ob.
func New(db *database.DB, ob *outbox.Outbox) *Store {
	return &Store{db: db, client: ent.NewClient(ent.Driver(db.Driver())), outbox: ob}
}

// Migrate brings the schema up to date with the service's versioned migrations.
func (s *Store) Migrate(ctx context.Context, opts ...migrate.Option) error {
	return migrate.Apply(ctx, s.db, "identity", migrations.Files, opts...)
}

// Change is what comes with a write besides the row: the audit events that describe it,
// stored in the same transaction, and a step that must succeed before it commits (ending the
// user's sessions when they are disabled, say), so the write never lands without it.
type Change struct {
	Events       func(*ent.User) []*auditv1.Event
	BeforeCommit func(context.Context, *ent.User) error
	// Roles are roles the authz service must give the user; they are queued with the change
	// and delivered by the grant relay.
	Roles []string
	// Administrators, when set, marks a change that may end a user's being active (disabling
	// or deleting them); it returns the users who hold the admin role everywhere. The store
	// serialises such changes and refuses one that would leave no active administrator.
	Administrators func(context.Context) ([]string, error)
}

// administratorsLock is the key of the lock every change with Administrators takes before it
// reads anything, so that two such changes cannot both count the other's user as active.
const administratorsLock = "administrators"

// keepAnAdministrator refuses, with a message naming what (disabled, deleted), to take the
// user id out of the active users when they hold the admin role and no other holder is active.
// It runs under the administrators lock, before anything else the change does outside the
// database (ending sessions), so a refusal leaves no trace.
func (s *Store) keepAnAdministrator(ctx context.Context, tx *ent.Tx, id, what string, c Change) error {
	admins, err := c.Administrators(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(admins, id) {
		return nil
	}
	others := slices.DeleteFunc(slices.Clone(admins), func(a string) bool { return a == id })
	active, err := activeAmong(ctx, tx.User, others)
	if err != nil {
		return err
	}
	if len(active) == 0 {
		return errs.FailedPrecondition("the last active administrator cannot be %s; give the admin role to another active user first", what)
	}
	return nil
}

// activeAmong returns those of ids that are active users, each once, sorted.
func activeAmong(ctx context.Context, c *ent.UserClient, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return c.Query().Where(user.IDIn(ids...), user.StatusEQ(user.StatusActive)).
		Order(ent.Asc(user.FieldID)).Select(user.FieldID).Strings(ctx)
}

// ActiveAmong returns those of ids that are active users, each once, sorted.
func (s *Store) ActiveAmong(ctx context.Context, ids []string) ([]string, error) {
	active, err := activeAmong(ctx, s.client.User, ids)
	return active, translate(err)
}

// Profiles returns the users among ids that exist, with only their id and display name
// loaded: the rest of the row (the email, the password hash) is never read, so it cannot reach
// a public answer by mistake.
func (s *Store) Profiles(ctx context.Context, ids []string) ([]*ent.User, error) {
	users, err := s.client.User.Query().Where(user.IDIn(ids...)).
		Select(user.FieldID, user.FieldDisplayName).All(ctx)
	return users, translate(err)
}

// lockAdministrators takes the administrators lock when the change may take an administrator.
func (s *Store) lockAdministrators(ctx context.Context, tx *ent.Tx, c Change) error {
	if c.Administrators == nil {
		return nil
	}
	return s.db.LockTx(ctx, tx, administratorsLock)
}

func (s *Store) finish(ctx context.Context, tx *ent.Tx, u *ent.User, c Change) error {
	if c.Events != nil {
		if err := s.outbox.Add(ctx, tx, c.Events(u)...); err != nil {
			return err
		}
	}
	for _, role := range c.Roles {
		if err := tx.PendingGrant.Create().
			SetID(uuid.Must(uuid.NewV7()).String()).
			SetSubject(u.ID).
			SetRole(role).
			SetNextAttemptAt(time.Now()).
			Exec(ctx); err != nil {
			return err
		}
	}
	if c.BeforeCommit != nil {
		return c.BeforeCommit(ctx, u)
	}
	return nil
}

// NewUser is a user to create.
type NewUser struct {
	ID            string
	Email         string
	DisplayName   string
	PasswordHash  string
	EmailVerified bool
}

// ErrEmailTaken is returned when another user has the email.
var ErrEmailTaken = errs.AlreadyExists("a user with this email already exists")

// ErrNotFound is returned for a user that does not exist.
var ErrNotFound = errs.NotFound("the user does not exist")

// Create stores a new user.
func (s *Store) Create(ctx context.Context, n NewUser, c Change) (*ent.User, error) {
	var out *ent.User
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		u, err := tx.User.Create().
			SetID(n.ID).
			SetEmail(n.Email).
			SetDisplayName(n.DisplayName).
			SetPasswordHash(n.PasswordHash).
			SetEmailVerified(n.EmailVerified).
			Save(ctx)
		if err != nil {
			return translate(err)
		}
		out = u
		return s.finish(ctx, tx, u, c)
	})
	return out, err
}

// Get returns the user with id.
func (s *Store) Get(ctx context.Context, id string) (*ent.User, error) {
	u, err := s.client.User.Get(ctx, id)
	return u, translate(err)
}

// ByEmail returns the user with the normalised email.
func (s *Store) ByEmail(ctx context.Context, email string) (*ent.User, error) {
	u, err := s.client.User.Query().Where(user.Email(email)).Only(ctx)
	return u, translate(err)
}

// Update changes the user with id as apply says. apply sees the user as it is now, inside the
// transaction, with the row locked on PostgreSQL, and may refuse the change by returning an
// error.
func (s *Store) Update(ctx context.Context, id string, apply func(*ent.User, *ent.UserUpdateOne) error, c Change) (*ent.User, error) {
	var out *ent.User
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		if err := s.lockAdministrators(ctx, tx, c); err != nil {
			return err
		}
		q := tx.User.Query().Where(user.ID(id))
		if s.db.Dialect() == "postgres" {
			q = q.ForUpdate()
		}
		cur, err := q.Only(ctx)
		if err != nil {
			return translate(err)
		}
		upd := tx.User.UpdateOne(cur)
		if err := apply(cur, upd); err != nil {
			return err
		}
		u, err := upd.Save(ctx)
		if err != nil {
			return translate(err)
		}
		if c.Administrators != nil && cur.Status == user.StatusActive && u.Status != user.StatusActive {
			if err := s.keepAnAdministrator(ctx, tx, u.ID, "disabled", c); err != nil {
				return err
			}
		}
		out = u
		return s.finish(ctx, tx, u, c)
	})
	return out, err
}

// Delete removes the user with id.
func (s *Store) Delete(ctx context.Context, id string, c Change) error {
	return database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		if err := s.lockAdministrators(ctx, tx, c); err != nil {
			return err
		}
		u, err := tx.User.Get(ctx, id)
		if err != nil {
			return translate(err)
		}
		if c.Administrators != nil && u.Status == user.StatusActive {
			if err := s.keepAnAdministrator(ctx, tx, u.ID, "deleted", c); err != nil {
				return err
			}
		}
		if err := tx.User.DeleteOne(u).Exec(ctx); err != nil {
			return translate(err)
		}
		return s.finish(ctx, tx, u, c)
	})
}

// Filter selects users.
type Filter struct {
	EmailPrefix string
	Status      string
}

// List returns up to limit users matching f with ids after afterID (in creation order, since
// ids are UUIDv7), and whether more follow. Because the order is by id and new users get
// larger ids, a listing never skips or repeats a user while users are added.
func (s *Store) List(ctx context.Context, f Filter, afterID string, limit int) ([]*ent.User, bool, error) {
	q := s.client.User.Query()
	if f.EmailPrefix != "" {
		q = q.Where(user.EmailHasPrefix(f.EmailPrefix))
	}
	if f.Status != "" {
		q = q.Where(user.StatusEQ(user.Status(f.Status)))
	}
	if afterID != "" {
		q = q.Where(user.IDGT(afterID))
	}
	users, err := q.Order(ent.Asc(user.FieldID)).Limit(limit + 1).All(ctx)
	if err != nil {
		return nil, false, translate(err)
	}
	more := len(users) > limit
	if more {
		users = users[:limit]
	}
	return users, more, nil
}

// SetPasswordHash replaces a user's hash without an event: for rehashing with stronger
// parameters after a successful login, which changes nothing a user or auditor cares about.
func (s *Store) SetPasswordHash(ctx context.Context, id, hash string) error {
	return translate(s.client.User.UpdateOneID(id).SetPasswordHash(hash).Exec(ctx))
}

// translate maps Ent's errors to the identity service's domain errors.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case ent.IsNotFound(err):
		return ErrNotFound
	case ent.IsConstraintError(err) && strings.Contains(strings.ToLower(err.Error()), "email"):
		return ErrEmailTaken
	}
	err = database.Translate(err)
	if errs.Is(err, errs.KindAlreadyExists) {
		return ErrEmailTaken
	}
	return err
}
