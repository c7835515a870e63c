package database

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/basaltplatform/basalt/kernel/errs"
)

// Tx is what WithTx needs of a transaction; Ent's generated *Tx has both methods.
type Tx interface {
	Commit() error
	Rollback() error
}

// maxAttempts bounds how often WithTx runs fn when transactions keep failing in a retryable way.
const maxAttempts = 3

// WithTx runs fn in a transaction begun by begin (for Ent: client.Tx), commits when fn returns
// nil and rolls back otherwise, and translates the error. A panic in fn rolls back and
// propagates.
//
// WithTx retries, up to three attempts in all, when the outcome is certain to be "nothing
// happened": a serialisation failure or deadlock, or a lost connection before COMMIT was sent
// (the server rolls back a transaction whose connection dies). A connection lost during COMMIT
// is ambiguous and is not retried. fn must therefore have no effects outside the transaction.
func WithTx[T Tx](ctx context.Context, begin func(context.Context) (T, error), fn func(T) error) error {
	for attempt := 1; ; attempt++ {
		err, retryable := runTx(ctx, begin, fn)
		if err == nil || !retryable || attempt == maxAttempts || ctx.Err() != nil {
			return err
		}
		// Jittered backoff keeps conflicting transactions from colliding again in step.
		backoff := time.Duration(attempt) * (5*time.Millisecond + rand.N(10*time.Millisecond))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

func runTx[T Tx](ctx context.Context, begin func(context.Context) (T, error), fn func(T) error) (err error, retryable bool) {
	tx, err := begin(ctx)
	if err != nil {
		err = Translate(err)
		return err, beforeCommit(err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		err = Translate(err)
		return err, beforeCommit(err)
	}
	committed = true
	if err := tx.Commit(); err != nil {
		err = Translate(err)
		// A serialisation failure reported at COMMIT means it did not commit; a lost
		// connection means nobody knows.
		return err, errs.Is(err, errs.KindAborted)
	}
	return nil, false
}

func beforeCommit(err error) bool {
	return errs.Is(err, errs.KindAborted) || errs.Is(err, errs.KindUnavailable)
}
