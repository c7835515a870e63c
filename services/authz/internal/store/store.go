// Package store keeps roles and bindings in the authz service's own schema through Ent. Every
// change increments the revision and sends a notification in its own transaction, so other
// instances learn of it exactly when it commits.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/services/authz/ent"
	"github.com/basaltplatform/basalt/services/authz/ent/revision"
	"github.com/basaltplatform/basalt/services/authz/ent/role"
	"github.com/basaltplatform/basalt/services/authz/ent/rolebinding"
	"github.com/basaltplatform/basalt/services/authz/internal/index"
	"github.com/basaltplatform/basalt/services/authz/migrations"
)

// Channel is the notification channel of changes; the payload is the new revision.
const Channel = "basalt_authz"

// AdminRole is the builtin role that grants everything.
const AdminRole = "admin"

// Builtin roles, seeded at start-up and never deleted.
var Builtin = []*ent.Role{
	{ID: AdminRole, Description: "Everything, everywhere.", Permissions: []string{"*"}, Builtin: true},
	{ID: "member", Description: "What every signed-up user may do for themselves.", Permissions: []string{"blog.posts.create"}, Builtin: true},
}

// Store is the authz service's storage.
type Store struct {
	db     *database.DB
	client *ent.Client
	outbox *outbox.Outbox
}

// New returns a store over db writing audit events to ob.
func New(db *database.DB, ob *outbox.Outbox) *Store {
	return &Store{db: db, client: ent.NewClient(ent.Driver(db.Driver())), outbox: ob}
}

// Migrate brings the schema up to date with the service's versioned migrations, then seeds
// the revision row and any missing builtin role under the database's migration lock. The
// seeds are code rather than migrations because they follow Builtin as it changes. A builtin
// role that exists is left as an administrator made it.
func (s *Store) Migrate(ctx context.Context, opts ...migrate.Option) error {
	if err := migrate.Apply(ctx, s.db, "authz", migrations.Files, opts...); err != nil {
		return err
	}
	// The seeds are rows, which the service's own sessions write; the owner's handle is not needed.
	return s.db.Migrate(ctx, func(ctx context.Context, _ *sql.DB) error {
		// The migration lock makes check-then-create safe across replicas.
		if ok, err := s.client.Revision.Query().Where(revision.ID(1)).Exist(ctx); err != nil {
			return fmt.Errorf("authz: migrate: %w", database.Translate(err))
		} else if !ok {
			if err := s.client.Revision.Create().SetID(1).SetValue(0).Exec(ctx); err != nil {
				return fmt.Errorf("authz: migrate: %w", database.Translate(err))
			}
		}
		for _, r := range Builtin {
			ok, err := s.client.Role.Query().Where(role.ID(r.ID)).Exist(ctx)
			if err != nil {
				return fmt.Errorf("authz: seed %s: %w", r.ID, database.Translate(err))
			}
			if ok {
				continue
			}
			if err := s.client.Role.Create().SetID(r.ID).SetDescription(r.Description).SetPermissions(r.Permissions).SetBuiltin(true).Exec(ctx); err != nil {
				return fmt.Errorf("authz: seed %s: %w", r.ID, database.Translate(err))
			}
		}
		return nil
	})
}

// Load reads every role and binding into a snapshot at the current revision. It reads in one
// transaction, so the snapshot is consistent with its revision.
func (s *Store) Load(ctx context.Context) (*index.Snapshot, error) {
	snap := &index.Snapshot{Roles: map[string][]string{}, Subjects: map[string][]index.Binding{}}
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		rev, err := tx.Revision.Get(ctx, 1)
		if err != nil {
			return err
		}
		snap.Revision = rev.Value
		roles, err := tx.Role.Query().All(ctx)
		if err != nil {
			return err
		}
		for _, r := range roles {
			snap.Roles[r.ID] = r.Permissions
		}
		bindings, err := tx.RoleBinding.Query().All(ctx)
		if err != nil {
			return err
		}
		for _, b := range bindings {
			snap.Subjects[b.Subject] = append(snap.Subjects[b.Subject], index.Binding{Role: b.Role, Resource: b.Resource})
		}
		return nil
	})
	return snap, err
}

// Errors of the store.
var (
	ErrRoleNotFound    = errs.NotFound("the role does not exist")
	ErrRoleExists      = errs.AlreadyExists("a role with this name exists")
	ErrBindingNotFound = errs.NotFound("the role binding does not exist")
)

// change runs fn in a transaction that then increments the revision, notifies listeners and
// stores fn's events. It returns the new revision.
func (s *Store) change(ctx context.Context, fn func(tx *ent.Tx) ([]*auditv1.Event, error)) (int64, error) {
	var rev int64
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		events, err := fn(tx)
		if err != nil {
			return err
		}
		if _, err := tx.Revision.UpdateOneID(1).AddValue(1).Save(ctx); err != nil {
			return err
		}
		r, err := tx.Revision.Get(ctx, 1)
		if err != nil {
			return err
		}
		rev = r.Value
		if err := s.db.Notify(ctx, tx, Channel, strconv.FormatInt(rev, 10)); err != nil {
			return err
		}
		return s.outbox.Add(ctx, tx, events...)
	})
	return rev, err
}

// CreateRole stores a new role.
func (s *Store) CreateRole(ctx context.Context, r *ent.Role, events func(*ent.Role) []*auditv1.Event) (*ent.Role, int64, error) {
	var out *ent.Role
	rev, err := s.change(ctx, func(tx *ent.Tx) ([]*auditv1.Event, error) {
		created, err := tx.Role.Create().SetID(r.ID).SetDescription(r.Description).SetPermissions(r.Permissions).Save(ctx)
		if ent.IsConstraintError(err) {
			return nil, ErrRoleExists
		}
		if err != nil {
			return nil, err
		}
		out = created
		return events(created), nil
	})
	if errs.Is(err, errs.KindAlreadyExists) {
		return nil, 0, ErrRoleExists
	}
	return out, rev, err
}

// Role returns a role.
func (s *Store) Role(ctx context.Context, name string) (*ent.Role, error) {
	r, err := s.client.Role.Get(ctx, name)
	if ent.IsNotFound(err) {
		return nil, ErrRoleNotFound
	}
	return r, database.Translate(err)
}

// Roles returns up to limit roles with names after after, by name, and whether more follow.
func (s *Store) Roles(ctx context.Context, after string, limit int) ([]*ent.Role, bool, error) {
	q := s.client.Role.Query()
	if after != "" {
		q = q.Where(role.IDGT(after))
	}
	rs, err := q.Order(ent.Asc(role.FieldID)).Limit(limit + 1).All(ctx)
	if err != nil {
		return nil, false, database.Translate(err)
	}
	more := len(rs) > limit
	if more {
		rs = rs[:limit]
	}
	return rs, more, nil
}

// UpdateRole changes a role as apply says; apply sees the current role and may refuse.
func (s *Store) UpdateRole(ctx context.Context, name string, apply func(*ent.Role, *ent.RoleUpdateOne) error, events func(*ent.Role) []*auditv1.Event) (*ent.Role, int64, error) {
	var out *ent.Role
	rev, err := s.change(ctx, func(tx *ent.Tx) ([]*auditv1.Event, error) {
		cur, err := tx.Role.Get(ctx, name)
		if ent.IsNotFound(err) {
			return nil, ErrRoleNotFound
		}
		if err != nil {
			return nil, err
		}
		upd := tx.Role.UpdateOne(cur)
		if err := apply(cur, upd); err != nil {
			return nil, err
		}
		if out, err = upd.Save(ctx); err != nil {
			return nil, err
		}
		return events(out), nil
	})
	return out, rev, err
}

// DeleteRole deletes a role that is neither builtin nor bound.
func (s *Store) DeleteRole(ctx context.Context, name string, events func(*ent.Role) []*auditv1.Event) (int64, error) {
	return s.change(ctx, func(tx *ent.Tx) ([]*auditv1.Event, error) {
		r, err := tx.Role.Get(ctx, name)
		if ent.IsNotFound(err) {
			return nil, ErrRoleNotFound
		}
		if err != nil {
			return nil, err
		}
		if r.Builtin {
			return nil, errs.FailedPrecondition("the %s role is built in and cannot be deleted", name)
		}
		n, err := tx.RoleBinding.Query().Where(rolebinding.Role(name)).Count(ctx)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, errs.FailedPrecondition("the role is bound to %d subjects; revoke the bindings first", n)
		}
		if err := tx.Role.DeleteOne(r).Exec(ctx); err != nil {
			return nil, err
		}
		return events(r), nil
	})
}

// Assign binds role to subject on resource, returning the binding, whether it was new, and the
// revision. Assigning an existing binding changes nothing and returns it.
func (s *Store) Assign(ctx context.Context, subject, roleName, resource string, now time.Time, events func(*ent.RoleBinding) []*auditv1.Event) (*ent.RoleBinding, bool, int64, error) {
	existing, err := s.binding(ctx, s.client, subject, roleName, resource)
	if err == nil {
		return existing, false, 0, nil
	}
	if !errs.Is(err, errs.KindNotFound) {
		return nil, false, 0, err
	}
	var out *ent.RoleBinding
	rev, err := s.change(ctx, func(tx *ent.Tx) ([]*auditv1.Event, error) {
		if _, err := tx.Role.Get(ctx, roleName); ent.IsNotFound(err) {
			return nil, ErrRoleNotFound
		} else if err != nil {
			return nil, err
		}
		b, err := tx.RoleBinding.Create().SetID(uuid.Must(uuid.NewV7()).String()).
			SetSubject(subject).SetRole(roleName).SetResource(resource).SetCreateTime(now).Save(ctx)
		if err != nil {
			return nil, err
		}
		out = b
		return events(b), nil
	})
	if errs.Is(err, errs.KindAlreadyExists) {
		// A concurrent assignment of the same binding won; return it.
		b, gerr := s.binding(ctx, s.client, subject, roleName, resource)
		return b, false, 0, gerr
	}
	return out, err == nil, rev, err
}

func (s *Store) binding(ctx context.Context, c *ent.Client, subject, roleName, resource string) (*ent.RoleBinding, error) {
	b, err := c.RoleBinding.Query().Where(rolebinding.Subject(subject), rolebinding.Role(roleName), rolebinding.Resource(resource)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrBindingNotFound
	}
	return b, database.Translate(err)
}

// Keep decides whether a binding everywhere may be revoked, given the other subjects bound to
// the same role everywhere; an error refuses the revocation.
type Keep func(ctx context.Context, others []string) error

// Revoke removes a binding. keep, when set, guards a binding everywhere: the revocation first
// takes a lock that every guarded revocation of the role takes, so that each sees the outcome
// of the one before it (two revocations cannot both count the other's subject as a holder),
// then keep sees the role's other holders and may refuse.
func (s *Store) Revoke(ctx context.Context, subject, roleName, resource string, keep Keep, events func(*ent.RoleBinding) []*auditv1.Event) (int64, error) {
	return s.change(ctx, func(tx *ent.Tx) ([]*auditv1.Event, error) {
		if keep != nil {
			if err := s.db.LockTx(ctx, tx, "revoke."+roleName); err != nil {
				return nil, err
			}
		}
		b, err := tx.RoleBinding.Query().Where(rolebinding.Subject(subject), rolebinding.Role(roleName), rolebinding.Resource(resource)).Only(ctx)
		if ent.IsNotFound(err) {
			return nil, ErrBindingNotFound
		}
		if err != nil {
			return nil, err
		}
		if keep != nil {
			others, err := holders(ctx, tx.RoleBinding, roleName, subject)
			if err != nil {
				return nil, err
			}
			if err := keep(ctx, others); err != nil {
				return nil, err
			}
		}
		if err := tx.RoleBinding.DeleteOne(b).Exec(ctx); err != nil {
			return nil, err
		}
		return events(b), nil
	})
}

// Holders returns the subjects bound to roleName everywhere, sorted. It reads the stored
// bindings rather than the index, so a caller deciding on them sees every committed change.
func (s *Store) Holders(ctx context.Context, roleName string) ([]string, error) {
	hs, err := holders(ctx, s.client.RoleBinding, roleName, "")
	return hs, database.Translate(err)
}

// holders returns the subjects bound to roleName everywhere other than except, sorted.
func holders(ctx context.Context, c *ent.RoleBindingClient, roleName, except string) ([]string, error) {
	q := c.Query().Where(rolebinding.Role(roleName), rolebinding.Resource(""))
	if except != "" {
		q = q.Where(rolebinding.SubjectNEQ(except))
	}
	return q.Order(ent.Asc(rolebinding.FieldSubject)).Select(rolebinding.FieldSubject).Strings(ctx)
}

// Bindings returns up to limit bindings of subject and/or role with ids after after, and
// whether more follow.
func (s *Store) Bindings(ctx context.Context, subject, roleName, after string, limit int) ([]*ent.RoleBinding, bool, error) {
	q := s.client.RoleBinding.Query()
	if subject != "" {
		q = q.Where(rolebinding.Subject(subject))
	}
	if roleName != "" {
		q = q.Where(rolebinding.Role(roleName))
	}
	if after != "" {
		q = q.Where(rolebinding.IDGT(after))
	}
	bs, err := q.Order(ent.Asc(rolebinding.FieldID)).Limit(limit + 1).All(ctx)
	if err != nil {
		return nil, false, database.Translate(err)
	}
	more := len(bs) > limit
	if more {
		bs = bs[:limit]
	}
	return bs, more, nil
}
