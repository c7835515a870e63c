// Package store keeps posts in the blog service's own schema through Ent, with every change's
// audit events in the same transaction.
package store

import (
	"context"
	"time"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/services/blog/ent"
	"github.com/basaltplatform/basalt/services/blog/ent/post"
	"github.com/basaltplatform/basalt/services/blog/migrations"
)

// Store is the blog service's storage.
type Store struct {
	db     *database.DB
	client *ent.Client
	outbox *outbox.Outbox
	now    func() time.Time
}

// New returns a store over db writing audit events to ob.
func New(db *database.DB, ob *outbox.Outbox) *Store {
	return &Store{db: db, client: ent.NewClient(ent.Driver(db.Driver())), outbox: ob, now: time.Now}
}

// Migrate brings the schema up to date with the service's versioned migrations.
func (s *Store) Migrate(ctx context.Context, opts ...migrate.Option) error {
	return migrate.Apply(ctx, s.db, "blog", migrations.Files, opts...)
}

// Events builds the audit events that describe a change from the post as written (as it was,
// for a deletion). They are stored in the change's transaction: both land or neither does.
type Events func(*ent.Post) []*auditv1.Event

// ErrNotFound is returned for a post that does not exist.
var ErrNotFound = errs.NotFound("the post does not exist")

// NewPost is a post to create.
type NewPost struct {
	ID       string
	AuthorID string
	Title    string
	Body     string
}

// timestamp is now as PostgreSQL keeps it (microseconds), so a post returned by a write is
// the same as the post read back later.
func (s *Store) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Create stores a new post.
func (s *Store) Create(ctx context.Context, n NewPost, events Events) (*ent.Post, error) {
	var out *ent.Post
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		now := s.timestamp()
		p, err := tx.Post.Create().
			SetID(n.ID).
			SetAuthorID(n.AuthorID).
			SetTitle(n.Title).
			SetBody(n.Body).
			SetCreateTime(now).
			SetUpdateTime(now).
			Save(ctx)
		if err != nil {
			return translate(err)
		}
		out = p
		return s.record(ctx, tx, p, events)
	})
	return out, err
}

// Get returns the post with id.
func (s *Store) Get(ctx context.Context, id string) (*ent.Post, error) {
	p, err := s.client.Post.Get(ctx, id)
	return p, translate(err)
}

// Update changes the post with id as apply says. apply sees the post as it is now, inside the
// transaction, with the row locked on PostgreSQL; it reports whether it changed anything, and
// may refuse the change by returning an error. A change that changes nothing is not written
// and records no events.
func (s *Store) Update(ctx context.Context, id string, apply func(cur *ent.Post, upd *ent.PostUpdateOne) (bool, error), events Events) (*ent.Post, error) {
	var out *ent.Post
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		q := tx.Post.Query().Where(post.ID(id))
		if s.db.Dialect() == "postgres" {
			q = q.ForUpdate()
		}
		cur, err := q.Only(ctx)
		if err != nil {
			return translate(err)
		}
		upd := tx.Post.UpdateOne(cur)
		changed, err := apply(cur, upd)
		if err != nil || !changed {
			out = cur
			return err
		}
		p, err := upd.SetUpdateTime(s.timestamp()).Save(ctx)
		if err != nil {
			return translate(err)
		}
		out = p
		return s.record(ctx, tx, p, events)
	})
	return out, err
}

// Delete removes the post with id.
func (s *Store) Delete(ctx context.Context, id string, events Events) error {
	return database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		p, err := tx.Post.Get(ctx, id)
		if err != nil {
			return translate(err)
		}
		if err := tx.Post.DeleteOne(p).Exec(ctx); err != nil {
			return translate(err)
		}
		return s.record(ctx, tx, p, events)
	})
}

// Filter selects posts.
type Filter struct {
	AuthorID string
}

// List returns up to limit posts matching f with ids before beforeID (newest first, since ids
// are UUIDv7), and whether more follow. Because the order is by id and new posts get larger
// ids, a listing never skips or repeats a post while posts are added: new ones come before
// its first page.
func (s *Store) List(ctx context.Context, f Filter, beforeID string, limit int) ([]*ent.Post, bool, error) {
	q := s.client.Post.Query()
	if f.AuthorID != "" {
		q = q.Where(post.AuthorID(f.AuthorID))
	}
	if beforeID != "" {
		q = q.Where(post.IDLT(beforeID))
	}
	posts, err := q.Order(ent.Desc(post.FieldID)).Limit(limit + 1).All(ctx)
	if err != nil {
		return nil, false, translate(err)
	}
	more := len(posts) > limit
	if more {
		posts = posts[:limit]
	}
	return posts, more, nil
}

func (s *Store) record(ctx context.Context, tx *ent.Tx, p *ent.Post, events Events) error {
	if events == nil {
		return nil
	}
	return s.outbox.Add(ctx, tx, events(p)...)
}

// translate maps Ent's errors to the blog service's domain errors.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case ent.IsNotFound(err):
		return ErrNotFound
	}
	return database.Translate(err)
}
