package index

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Loader reads a consistent snapshot of roles and bindings; the store has it.
type Loader interface {
	Load(ctx context.Context) (*Snapshot, error)
}

// Peers calls Sync on every instance of the authz service and returns once each has answered
// or failed.
type Peers interface {
	SyncAll(ctx context.Context, revision int64) error
}

// Listener delivers notifications of new revisions; the database has it (PostgreSQL LISTEN).
type Listener interface {
	Listen(ctx context.Context, channel string, onConnect func(), onNotify func(payload string)) error
}

// Syncer keeps an Index equal to the database.
//
// Write-then-check consistency works in three layers. The instance that made a change reloads
// before it answers. Then it calls Sync on every instance discovery knows, each of which
// reloads up to the change's revision before answering, and only then does the write return:
// a check on any instance after that sees the change. An instance the writer could not reach
// still hears the change through PostgreSQL LISTEN/NOTIFY (the notification is sent in the
// change's own transaction), reloads whenever its listening connection comes back (it may
// have missed notifications), and reloads every interval regardless.
type Syncer struct {
	index    *Index
	loader   Loader
	peers    Peers
	listener Listener
	channel  string
	interval time.Duration
	log      *slog.Logger

	mu sync.Mutex // serialises reloads, so a burst of notifications loads once per change
}

// NewSyncer returns a syncer of ix. peers and listener may be nil (one instance, SQLite).
func NewSyncer(ix *Index, loader Loader, peers Peers, listener Listener, channel string, interval time.Duration, log *slog.Logger) *Syncer {
	return &Syncer{index: ix, loader: loader, peers: peers, listener: listener, channel: channel, interval: interval, log: log}
}

// CatchUp reloads unless the index already reflects revision (0 forces a reload).
func (s *Syncer) CatchUp(ctx context.Context, revision int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if revision > 0 && s.index.Revision() >= revision {
		return nil
	}
	snap, err := s.loader.Load(ctx)
	if err != nil {
		return err
	}
	s.index.Replace(snap)
	return nil
}

// Changed makes a committed change at revision visible everywhere before the write returns.
func (s *Syncer) Changed(ctx context.Context, revision int64) error {
	if revision == 0 {
		return nil
	}
	if err := s.CatchUp(ctx, revision); err != nil {
		return err
	}
	if s.peers == nil {
		return nil
	}
	if err := s.peers.SyncAll(ctx, revision); err != nil {
		// The change is committed; instances that missed the call catch up through
		// notifications and periodic reloads.
		s.log.WarnContext(ctx, "not every authz instance confirmed the change", "revision", revision, "error", err)
	}
	return nil
}

// Run keeps the index fresh until ctx ends: from notifications when a listener is set, and
// by reloading every interval.
func (s *Syncer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.listener != nil {
		wg.Go(func() {
			_ = s.listener.Listen(ctx, s.channel,
				func() {
					if err := s.CatchUp(ctx, 0); err != nil && ctx.Err() == nil {
						s.log.Warn("authz index reload failed", "error", err)
					}
				},
				func(payload string) {
					rev, err := strconv.ParseInt(payload, 10, 64)
					if err != nil {
						rev = 0
					}
					if err := s.CatchUp(ctx, rev); err != nil && ctx.Err() == nil {
						s.log.Warn("authz index reload failed", "error", err)
					}
				})
		})
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.CatchUp(ctx, 0); err != nil && ctx.Err() == nil {
				s.log.Warn("authz index reload failed", "error", err)
			}
		}
	}
}
