package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"entgo.io/ent/dialect"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/services/audit/ent"
	"github.com/basaltplatform/basalt/services/audit/ent/checkpoint"
	"github.com/basaltplatform/basalt/services/audit/ent/event"
	"github.com/basaltplatform/basalt/services/audit/ent/predicate"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
)

// Filter selects events; every field that is set must match.
type Filter struct {
	ActorSubject string
	Action       string
	ResourceType string
	ResourceID   string
	Outcome      string
	Service      string
	Start        time.Time
	End          time.Time
}

func (f Filter) predicates() []predicate.Event {
	var ps []predicate.Event
	if f.ActorSubject != "" {
		ps = append(ps, event.ActorSubject(f.ActorSubject))
	}
	if f.Action != "" {
		ps = append(ps, event.Action(f.Action))
	}
	if f.ResourceType != "" {
		ps = append(ps, event.ResourceType(f.ResourceType))
	}
	if f.ResourceID != "" {
		ps = append(ps, event.ResourceID(f.ResourceID))
	}
	if f.Outcome != "" {
		ps = append(ps, event.OutcomeEQ(event.Outcome(f.Outcome)))
	}
	if f.Service != "" {
		ps = append(ps, event.Service(f.Service))
	}
	if !f.Start.IsZero() {
		ps = append(ps, event.TimeGTE(f.Start))
	}
	if !f.End.IsZero() {
		ps = append(ps, event.TimeLT(f.End))
	}
	return ps
}

// List returns up to limit events matching f, newest first, older than sequence before (0 for
// the newest), and whether more follow.
func (s *Store) List(ctx context.Context, f Filter, before int64, limit int) ([]chain.Stored, bool, error) {
	q := s.client.Event.Query().Where(f.predicates()...)
	if before > 0 {
		q = q.Where(event.SequenceLT(before))
	}
	rows, err := q.Order(ent.Desc(event.FieldSequence)).Limit(limit + 1).All(ctx)
	if err != nil {
		return nil, false, database.Translate(err)
	}
	more := len(rows) > limit
	if more {
		rows = rows[:limit]
	}
	out := make([]chain.Stored, len(rows))
	for i, r := range rows {
		out[i] = toStored(r)
	}
	return out, more, nil
}

// Export calls fn with every event matching f after sequence after, in sequence order, reading
// a page at a time. It stops at the first error fn returns.
func (s *Store) Export(ctx context.Context, f Filter, after int64, fn func(chain.Stored) error) error {
	const page = 500
	for {
		rows, err := s.client.Event.Query().
			Where(append(f.predicates(), event.SequenceGT(after))...).
			Order(ent.Asc(event.FieldSequence)).Limit(page).All(ctx)
		if err != nil {
			return database.Translate(err)
		}
		for _, r := range rows {
			if err := fn(toStored(r)); err != nil {
				return err
			}
			after = r.Sequence
		}
		if len(rows) < page {
			return nil
		}
	}
}

// LatestCheckpoint returns the newest checkpoint, and false for an empty log.
func (s *Store) LatestCheckpoint(ctx context.Context) (chain.Checkpoint, bool, error) {
	cp, err := s.client.Checkpoint.Query().Order(ent.Desc(checkpoint.FieldSequence)).First(ctx)
	if ent.IsNotFound(err) {
		return chain.Checkpoint{}, false, nil
	}
	if err != nil {
		return chain.Checkpoint{}, false, database.Translate(err)
	}
	return toCheckpoint(cp), true, nil
}

// Verification is what Verify found.
type Verification struct {
	OK                 bool
	EventsChecked      int64
	FirstBadSequence   int64
	CheckpointsChecked int64
	Problem            string
}

// Verify recomputes the chain over the whole log and checks every checkpoint against it: its
// signature (with one of keys, in the order chain.Checker allows), and that the event at its
// sequence exists and has its hash. It reads events and checkpoints a page at a time, side by
// side, in one read-only transaction: the log grows while it is verified, and pages read at
// different moments would see a checkpoint appended after the last page of events as one
// past the log's end, the sign of a cut-off tail.
func (s *Store) Verify(ctx context.Context, keys chain.Keys) (Verification, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.db.Dialect() == dialect.Postgres {
		// One snapshot for every statement of the transaction.
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.client.BeginTx(ctx, opts)
	if err != nil {
		return Verification{}, database.Translate(err)
	}
	defer tx.Rollback() //nolint:errcheck // The transaction only read.
	inTx := *s
	inTx.client = tx.Client()
	return inTx.verify(ctx, keys)
}

// verify is Verify on whatever s.client reads through: Verify gives it its transaction's.
func (s *Store) verify(ctx context.Context, keys chain.Keys) (Verification, error) {
	var res Verification
	v := chain.NewVerifier()
	signatures := keys.Checker()
	cps := &checkpointCursor{s: s}
	err := s.Scan(ctx, func(e chain.Stored) error {
		if !v.Add(e) {
			return errStop
		}
		for {
			cp, ok, err := cps.peek(ctx)
			if err != nil {
				return err
			}
			if !ok || cp.Sequence > e.Sequence {
				return nil
			}
			cps.next()
			res.CheckpointsChecked++
			signed := signatures.Check(cp)
			switch {
			case errors.Is(signed, chain.ErrReplacedKey):
				res.Problem = fmt.Sprintf("the checkpoint at sequence %d is signed with key %s, which a later key had replaced", cp.Sequence, cp.KeyID)
				return errStop
			case signed != nil:
				res.Problem = fmt.Sprintf("the checkpoint at sequence %d has an invalid signature", cp.Sequence)
				return errStop
			case cp.Sequence < e.Sequence:
				res.Problem = fmt.Sprintf("the checkpoint at sequence %d names an event the log does not hold", cp.Sequence)
				return errStop
			case string(cp.HeadHash) != string(e.Hash):
				res.Problem = fmt.Sprintf("the event at sequence %d differs from its signed checkpoint", cp.Sequence)
				return errStop
			}
		}
	})
	if err != nil && err != errStop {
		return res, err
	}
	checked, bad := v.Result()
	res.EventsChecked, res.FirstBadSequence = checked, bad
	if bad != 0 {
		res.Problem = fmt.Sprintf("the hash chain breaks at sequence %d", bad)
		return res, nil
	}
	if res.Problem != "" {
		res.FirstBadSequence = checked
		return res, nil
	}
	// Checkpoints beyond the last event mean the log's tail was cut off.
	if cp, ok, err := cps.peek(ctx); err != nil {
		return res, err
	} else if ok {
		res.FirstBadSequence = checked + 1
		res.Problem = fmt.Sprintf("a checkpoint covers sequence %d but the log ends at %d", cp.Sequence, checked)
		return res, nil
	}
	res.OK = true
	return res, nil
}

var errStop = fmt.Errorf("store: stop")

// checkpointCursor reads checkpoints in sequence order a page at a time.
type checkpointCursor struct {
	s     *Store
	page  []chain.Checkpoint
	after int64
	done  bool
}

func (c *checkpointCursor) peek(ctx context.Context) (chain.Checkpoint, bool, error) {
	if len(c.page) == 0 && !c.done {
		rows, err := c.s.client.Checkpoint.Query().Where(checkpoint.SequenceGT(c.after)).
			Order(ent.Asc(checkpoint.FieldSequence)).Limit(500).All(ctx)
		if err != nil {
			return chain.Checkpoint{}, false, database.Translate(err)
		}
		for _, r := range rows {
			c.page = append(c.page, toCheckpoint(r))
			c.after = r.Sequence
		}
		c.done = len(rows) < 500
	}
	if len(c.page) == 0 {
		return chain.Checkpoint{}, false, nil
	}
	return c.page[0], true, nil
}

func (c *checkpointCursor) next() { c.page = c.page[1:] }

func toCheckpoint(r *ent.Checkpoint) chain.Checkpoint {
	return chain.Checkpoint{Sequence: r.Sequence, HeadHash: r.HeadHash, Time: r.Time.UTC(), KeyID: r.KeyID, Signature: r.Signature}
}
