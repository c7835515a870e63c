// Package store keeps the auth service's sessions and refresh tokens in its own schema through
// Ent, with every change's audit events in the same transaction.
package store

import (
	"context"
	"errors"
	"time"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/services/auth/ent"
	"github.com/basaltplatform/basalt/services/auth/ent/refreshtoken"
	"github.com/basaltplatform/basalt/services/auth/ent/session"
	"github.com/basaltplatform/basalt/services/auth/migrations"
)

// Store is the auth service's storage.
type Store struct {
	db     *database.DB
	client *ent.Client
	outbox *outbox.Outbox
}

// New returns a store over db writing audit events to ob.
func New(db *database.DB, ob *outbox.Outbox) *Store {
	return &Store{db: db, client: ent.NewClient(ent.Driver(db.Driver())), outbox: ob}
}

// Client returns the Ent client (the key ring shares it).
func (s *Store) Client() *ent.Client { return s.client }

// Migrate brings the schema up to date with the service's versioned migrations.
func (s *Store) Migrate(ctx context.Context, opts ...migrate.Option) error {
	return migrate.Apply(ctx, s.db, "auth", migrations.Files, opts...)
}

// NewSession is a session to start.
type NewSession struct {
	ID          string
	UserID      string
	IP          string
	UserAgent   string
	Now         time.Time
	Expires     time.Time
	RefreshHash string
}

// StartSession stores a session with its first refresh token.
func (s *Store) StartSession(ctx context.Context, n NewSession, events ...*auditv1.Event) error {
	return database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		if err := tx.Session.Create().
			SetID(n.ID).SetUserID(n.UserID).SetIP(n.IP).SetUserAgent(n.UserAgent).
			SetCreatedAt(n.Now).SetLastRefreshAt(n.Now).SetExpiresAt(n.Expires).
			Exec(ctx); err != nil {
			return err
		}
		if err := tx.RefreshToken.Create().SetID(n.RefreshHash).SetSessionID(n.ID).SetCreatedAt(n.Now).Exec(ctx); err != nil {
			return err
		}
		return s.outbox.Add(ctx, tx, events...)
	})
}

// Errors of Rotate.
var (
	ErrInvalidRefresh = errs.Unauthenticated("the refresh token is invalid")
	ErrSessionEnded   = errs.Unauthenticated("the session has ended; log in again")
)

// ReusedError says a refresh token was presented after it had been used: someone else holds a
// copy. Its session must end.
type ReusedError struct {
	SessionID string
	UserID    string
}

func (e *ReusedError) Error() string { return "auth: refresh token reused in session " + e.SessionID }

// Rotate spends the refresh token oldHash and stores newHash as its successor, in one
// transaction. Spending is a conditional update, so of any number of concurrent refreshes
// with one token exactly one succeeds; the others find the token spent and get a
// *ReusedError.
func (s *Store) Rotate(ctx context.Context, oldHash, newHash string, now time.Time, events func(*ent.Session) []*auditv1.Event) (*ent.Session, error) {
	var out *ent.Session
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		tok, err := tx.RefreshToken.Get(ctx, oldHash)
		if ent.IsNotFound(err) {
			return ErrInvalidRefresh
		}
		if err != nil {
			return err
		}
		sess, err := tx.Session.Get(ctx, tok.SessionID)
		if ent.IsNotFound(err) {
			return ErrInvalidRefresh
		}
		if err != nil {
			return err
		}
		if !active(sess, now) {
			return ErrSessionEnded
		}
		n, err := tx.RefreshToken.Update().
			Where(refreshtoken.ID(oldHash), refreshtoken.UsedAtIsNil()).
			SetUsedAt(now).
			Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return &ReusedError{SessionID: sess.ID, UserID: sess.UserID}
		}
		if err := tx.RefreshToken.Create().SetID(newHash).SetSessionID(sess.ID).SetCreatedAt(now).Exec(ctx); err != nil {
			return err
		}
		sess, err = tx.Session.UpdateOne(sess).SetLastRefreshAt(now).Save(ctx)
		if err != nil {
			return err
		}
		out = sess
		return s.outbox.Add(ctx, tx, events(sess)...)
	})
	var reused *ReusedError
	if errors.As(err, &reused) {
		return nil, reused
	}
	return out, err
}

func active(sess *ent.Session, now time.Time) bool {
	return sess.RevokedAt == nil && now.Before(sess.ExpiresAt)
}

// SessionByRefresh returns the session a refresh token belongs to.
func (s *Store) SessionByRefresh(ctx context.Context, hash string) (*ent.Session, error) {
	tok, err := s.client.RefreshToken.Get(ctx, hash)
	if ent.IsNotFound(err) {
		return nil, ErrInvalidRefresh
	}
	if err != nil {
		return nil, database.Translate(err)
	}
	sess, err := s.client.Session.Get(ctx, tok.SessionID)
	if ent.IsNotFound(err) {
		return nil, ErrInvalidRefresh
	}
	return sess, database.Translate(err)
}

// ErrNoSession is returned for a session that does not exist, or is not the caller's.
var ErrNoSession = errs.NotFound("the session does not exist")

// Session returns the session with id.
func (s *Store) Session(ctx context.Context, id string) (*ent.Session, error) {
	sess, err := s.client.Session.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, ErrNoSession
	}
	return sess, database.Translate(err)
}

// SessionActive reports whether the session exists, is not revoked and has not expired.
func (s *Store) SessionActive(ctx context.Context, id string, now time.Time) (bool, error) {
	sess, err := s.Session(ctx, id)
	if errors.Is(err, ErrNoSession) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return active(sess, now), nil
}

// RevokeSession ends a session. It reports whether this call ended it (false when it had
// already ended), and stores events only then.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now time.Time, events func(*ent.Session) []*auditv1.Event) (bool, error) {
	revoked := false
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		n, err := tx.Session.Update().Where(session.ID(id), session.RevokedAtIsNil()).SetRevokedAt(now).SetRevokeReason(reason).Save(ctx)
		if err != nil || n == 0 {
			return err
		}
		revoked = true
		sess, err := tx.Session.Get(ctx, id)
		if err != nil {
			return err
		}
		return s.outbox.Add(ctx, tx, events(sess)...)
	})
	return revoked, err
}

// RevokeUserSessions ends every active session of a user and returns how many it ended.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, reason string, now time.Time, events func(n int) []*auditv1.Event) (int, error) {
	var n int
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		var err error
		n, err = tx.Session.Update().Where(session.UserID(userID), session.RevokedAtIsNil()).SetRevokedAt(now).SetRevokeReason(reason).Save(ctx)
		if err != nil {
			return err
		}
		return s.outbox.Add(ctx, tx, events(n)...)
	})
	return n, err
}

// ActiveSessions returns a user's active sessions, newest first.
func (s *Store) ActiveSessions(ctx context.Context, userID string, now time.Time) ([]*ent.Session, error) {
	sessions, err := s.client.Session.Query().
		Where(session.UserID(userID), session.RevokedAtIsNil(), session.ExpiresAtGT(now)).
		Order(ent.Desc(session.FieldCreatedAt)).
		Limit(200).
		All(ctx)
	return sessions, database.Translate(err)
}
