// Package store keeps the audit log in the service's own schema through Ent.
package store

import (
	"context"
	"time"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/services/audit/ent"
	"github.com/basaltplatform/basalt/services/audit/ent/event"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/migrations"
)

// Store is the audit log's storage.
type Store struct {
	db     *database.DB
	client *ent.Client
	signer *chain.Signer
	now    func() time.Time
}

// New returns a store over db whose appends are checkpointed with signer.
func New(db *database.DB, signer *chain.Signer) *Store {
	return &Store{db: db, client: ent.NewClient(ent.Driver(db.Driver())), signer: signer, now: time.Now}
}

// Migrate brings the schema up to date with the service's versioned migrations, which also
// make the log's tables append-only.
func (s *Store) Migrate(ctx context.Context, opts ...migrate.Option) error {
	return migrate.Apply(ctx, s.db, "audit", migrations.Files, opts...)
}

// Receipt says what Append did with one event.
type Receipt struct {
	ID        string
	Sequence  int64
	Duplicate bool
}

// Append adds entries to the log in order and returns one receipt per entry. Entries whose id
// is already in the log, or earlier in the same batch, are not appended again; their receipt
// carries the sequence they already have. Appends from every instance are serialised by a
// transaction-scoped lock, so sequences stay gap-free and each hash covers its true
// predecessor. Every append that adds events also stores a signed checkpoint of the new head.
func (s *Store) Append(ctx context.Context, entries []chain.Entry) ([]Receipt, error) {
	var receipts []Receipt
	err := database.WithTx(ctx, s.client.Tx, func(tx *ent.Tx) error {
		if err := s.db.LockTx(ctx, tx, "chain"); err != nil {
			return err
		}
		ids := make([]string, len(entries))
		for i, e := range entries {
			ids[i] = e.ID
		}
		known, err := tx.Event.Query().Where(event.IDIn(ids...)).Select(event.FieldID, event.FieldSequence).All(ctx)
		if err != nil {
			return err
		}
		seqOf := make(map[string]int64, len(known)+len(entries))
		for _, k := range known {
			seqOf[k.ID] = k.Sequence
		}
		head, prev, err := s.head(ctx, tx)
		if err != nil {
			return err
		}
		receipts = make([]Receipt, 0, len(entries))
		creates := make([]*ent.EventCreate, 0, len(entries))
		for _, e := range entries {
			if seq, dup := seqOf[e.ID]; dup {
				receipts = append(receipts, Receipt{ID: e.ID, Sequence: seq, Duplicate: true})
				continue
			}
			head++
			e.Sequence = head
			h := chain.Hash(prev, e)
			creates = append(creates, tx.Event.Create().
				SetID(e.ID).
				SetSequence(e.Sequence).
				SetTime(e.Time).
				SetService(e.Service).
				SetAction(e.Action).
				SetOutcome(event.Outcome(e.Outcome)).
				SetActorSubject(e.ActorSubject).
				SetActorIP(e.ActorIP).
				SetActorUserAgent(e.ActorUserAgent).
				SetResourceType(e.ResourceType).
				SetResourceID(e.ResourceID).
				SetRequestID(e.RequestID).
				SetTraceID(e.TraceID).
				SetMetadata(e.Metadata).
				SetPrevHash(prev).
				SetHash(h))
			prev = h
			seqOf[e.ID] = e.Sequence
			receipts = append(receipts, Receipt{ID: e.ID, Sequence: e.Sequence})
		}
		if len(creates) == 0 {
			return nil
		}
		if err := tx.Event.CreateBulk(creates...).Exec(ctx); err != nil {
			return err
		}
		cp := s.signer.Sign(head, prev, s.now().UTC())
		return tx.Checkpoint.Create().
			SetSequence(cp.Sequence).
			SetHeadHash(cp.HeadHash).
			SetTime(cp.Time).
			SetKeyID(cp.KeyID).
			SetSignature(cp.Signature).
			Exec(ctx)
	})
	if err != nil {
		return nil, err
	}
	return receipts, nil
}

// head returns the sequence and hash of the last event (0 and Genesis for an empty log).
func (s *Store) head(ctx context.Context, tx *ent.Tx) (int64, []byte, error) {
	last, err := tx.Event.Query().Order(ent.Desc(event.FieldSequence)).Select(event.FieldSequence, event.FieldHash).First(ctx)
	if ent.IsNotFound(err) {
		return 0, chain.Genesis, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return last.Sequence, last.Hash, nil
}

// Scan calls fn with every event in sequence order, reading in pages so the whole log is
// never held in memory. It stops at the first error fn returns.
func (s *Store) Scan(ctx context.Context, fn func(chain.Stored) error) error {
	const page = 500
	var after int64
	for {
		rows, err := s.client.Event.Query().Where(event.SequenceGT(after)).Order(ent.Asc(event.FieldSequence)).Limit(page).All(ctx)
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

func toStored(r *ent.Event) chain.Stored {
	return chain.Stored{
		Entry: chain.Entry{
			ID:             r.ID,
			Sequence:       r.Sequence,
			Time:           r.Time.UTC(),
			Service:        r.Service,
			Action:         r.Action,
			Outcome:        string(r.Outcome),
			ActorSubject:   r.ActorSubject,
			ActorIP:        r.ActorIP,
			ActorUserAgent: r.ActorUserAgent,
			ResourceType:   r.ResourceType,
			ResourceID:     r.ResourceID,
			RequestID:      r.RequestID,
			TraceID:        r.TraceID,
			Metadata:       r.Metadata,
		},
		PrevHash: r.PrevHash,
		Hash:     r.Hash,
	}
}
