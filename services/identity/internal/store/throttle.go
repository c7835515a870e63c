package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"time"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/database"
)

// Lockout is the brute-force policy: after MaxFailures failed checks within Window, an email
// is locked for Duration, whatever password comes next.
type Lockout struct {
	MaxFailures int
	Window      time.Duration
	Duration    time.Duration
}

// ThrottleKey is the throttle row of a normalised email: a hash, so the table holds no
// address that was merely typed.
func ThrottleKey(email string) string {
	sum := sha256.Sum256([]byte("basalt.identity.throttle\x00" + email))
	return hex.EncodeToString(sum[:])
}

// LockedUntil returns when the email's lock ends, or the zero time when it is not locked.
func (s *Store) LockedUntil(ctx context.Context, key string, now time.Time) (time.Time, error) {
	var until int64
	err := s.db.SQL().QueryRowContext(ctx, s.db.Rebind(`SELECT locked_until FROM login_throttles WHERE id = ?`), key).Scan(&until)
	if err == sql.ErrNoRows {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, database.Translate(err)
	}
	if t := time.UnixMilli(until); t.After(now) {
		return t, nil
	}
	return time.Time{}, nil
}

// RecordFailure counts a failed check for key and locks it once the policy's limit is reached
// within its window. Counting is one atomic upsert, so concurrent failures are all counted.
// lockEvent builds the audit event stored when this failure locks the key. It returns when
// the lock ends (zero when this failure did not lock).
func (s *Store) RecordFailure(ctx context.Context, key string, now time.Time, p Lockout, lockEvent func(until time.Time) *auditv1.Event) (time.Time, error) {
	var locked time.Time
	err := database.WithTx(ctx, func(ctx context.Context) (*sql.Tx, error) { return s.db.SQL().BeginTx(ctx, nil) }, func(tx *sql.Tx) error {
		nowMs, cutoff := now.UnixMilli(), now.Add(-p.Window).UnixMilli()
		var failures int
		err := tx.QueryRowContext(ctx, s.db.Rebind(`
			INSERT INTO login_throttles (id, failures, window_started_at, locked_until) VALUES (?, 1, ?, 0)
			ON CONFLICT (id) DO UPDATE SET
				failures = CASE WHEN login_throttles.window_started_at <= ? THEN 1 ELSE login_throttles.failures + 1 END,
				window_started_at = CASE WHEN login_throttles.window_started_at <= ? THEN ? ELSE login_throttles.window_started_at END
			RETURNING failures`), key, nowMs, cutoff, cutoff, nowMs).Scan(&failures)
		if err != nil {
			return err
		}
		if failures < p.MaxFailures {
			return nil
		}
		locked = now.Add(p.Duration)
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE login_throttles SET locked_until = ?, failures = 0, window_started_at = ? WHERE id = ?`),
			locked.UnixMilli(), nowMs, key); err != nil {
			return err
		}
		return s.outbox.Add(ctx, tx, lockEvent(locked))
	})
	return locked, err
}

// ResetFailures forgets the failures of key after a successful check (which a locked key
// never reaches).
func (s *Store) ResetFailures(ctx context.Context, key string) error {
	_, err := s.db.SQL().ExecContext(ctx, s.db.Rebind(`DELETE FROM login_throttles WHERE id = ?`), key)
	return database.Translate(err)
}
