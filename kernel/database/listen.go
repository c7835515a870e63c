package database

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoListen is returned by Listen on a database without notifications (SQLite).
var ErrNoListen = errors.New("database: LISTEN needs PostgreSQL")

// Listen delivers the payloads of notifications on channel to onNotify until ctx ends, on a
// connection of its own, reconnecting with backoff when the connection breaks. Notifications
// sent while it was reconnecting are lost, so it calls onConnect each time it (re)starts
// listening: the caller reloads whatever the notifications describe.
func (db *DB) Listen(ctx context.Context, channel string, onConnect func(), onNotify func(payload string)) error {
	if db.pool == nil {
		return ErrNoListen
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, channel, onConnect, onNotify)
		if ctx.Err() != nil {
			return nil
		}
		_ = err
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (db *DB) listenOnce(ctx context.Context, channel string, onConnect func(), onNotify func(string)) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is taken out of the pool for good: a LISTENing session must not serve
	// anyone else.
	raw := conn.Hijack()
	defer raw.Close(context.WithoutCancel(ctx))
	if _, err := raw.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	onConnect()
	for {
		n, err := raw.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		onNotify(n.Payload)
	}
}

// Notify sends payload on channel inside tx, so listeners hear it only if tx commits. On SQLite
// it does nothing.
func (db *DB) Notify(ctx context.Context, tx Execer, channel, payload string) error {
	if db.pool == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
	return Translate(err)
}
