package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

// asSuperuser runs statements on the package database as the admin user with triggers off,
// exactly as someone with direct access to PostgreSQL could.
func asSuperuser(t *testing.T, schema string, stmts ...string) {
	t.Helper()
	sql := "SET session_replication_role = replica; SET search_path = " + schema + "; " + strings.Join(stmts, "; ")
	testkit.Exec(t, sql)
}

// seed appends 10 events in batches of 2 and returns the store and its schema.
func seed(t *testing.T) (*store.Store, string) {
	t.Helper()
	cfg := testkit.Database(t, "tamper")
	st, _ := open(t, cfg)
	appendPairs(t, st, 5)
	if n := verify(t, st); n != 10 {
		t.Fatalf("seeded %d events", n)
	}
	return st, cfg.Schema
}

// appendPairs appends n batches of two events, each batch with its checkpoint.
func appendPairs(t *testing.T, st *store.Store, n int) {
	t.Helper()
	for range n {
		if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.login"), entry("auth.logout")}); err != nil {
			t.Fatal(err)
		}
	}
}

// rehash recomputes every hash from sequence from on, as a careful forger would.
func rehash(t *testing.T, st *store.Store, schema string, from int64) {
	t.Helper()
	var prev []byte
	var stmts []string
	err := st.Scan(context.Background(), func(s chain.Stored) error {
		if s.Sequence >= from {
			h := chain.Hash(prev, s.Entry)
			stmts = append(stmts, fmt.Sprintf(`UPDATE events SET prev_hash = '\x%x', hash = '\x%x' WHERE sequence = %d`, prev, h, s.Sequence))
			prev = h
			return nil
		}
		prev = s.Hash
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	asSuperuser(t, schema, stmts...)
}

func TestVerifyDetectsTamperingInPostgres(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tamper   func(t *testing.T, st *store.Store, schema string)
		firstBad int64
		problem  string
	}{
		{"update of a field", func(t *testing.T, _ *store.Store, schema string) {
			asSuperuser(t, schema, `UPDATE events SET actor_subject = 'someone-else' WHERE sequence = 4`)
		}, 4, "chain breaks at sequence 4"},
		{"delete from the middle", func(t *testing.T, _ *store.Store, schema string) {
			asSuperuser(t, schema, `DELETE FROM events WHERE sequence = 6`)
		}, 6, "chain breaks at sequence 6"},
		{"insert of a forged event", func(t *testing.T, _ *store.Store, schema string) {
			asSuperuser(t, schema,
				`UPDATE events SET sequence = -sequence - 1 WHERE sequence >= 3`,
				`UPDATE events SET sequence = -sequence WHERE sequence < 0`,
				`INSERT INTO events (id, sequence, time, service, action, outcome, actor_subject, actor_ip, actor_user_agent, resource_type, resource_id, request_id, trace_id, prev_hash, hash)
				 SELECT '00000000-0000-4000-8000-000000000000', 3, time, service, 'auth.forged', outcome, 'attacker', '', '', '', '', '', '', prev_hash, hash FROM events WHERE sequence = 4`)
		}, 3, "chain breaks at sequence 3"},
		{"reorder of two events", func(t *testing.T, _ *store.Store, schema string) {
			asSuperuser(t, schema,
				`UPDATE events SET sequence = -1 WHERE sequence = 7`,
				`UPDATE events SET sequence = 7 WHERE sequence = 8`,
				`UPDATE events SET sequence = 8 WHERE sequence = -1`)
		}, 7, "chain breaks at sequence 7"},
		{"change with every later hash recomputed", func(t *testing.T, st *store.Store, schema string) {
			asSuperuser(t, schema, `UPDATE events SET action = 'auth.forged' WHERE sequence = 5`)
			rehash(t, st, schema, 5)
		}, 6, "differs from its signed checkpoint"},
		{"tail cut off", func(t *testing.T, _ *store.Store, schema string) {
			asSuperuser(t, schema, `DELETE FROM events WHERE sequence > 8`)
		}, 9, "log ends at 8"},
		{"forged checkpoint", func(t *testing.T, _ *store.Store, schema string) {
			asSuperuser(t, schema, `UPDATE checkpoints SET signature = decode(repeat('00', 64), 'hex') WHERE sequence = 2`)
		}, 2, "invalid signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, schema := seed(t)
			tt.tamper(t, st, schema)
			v, err := st.Verify(context.Background(), chain.NewKeys(signer(t).PublicKey()))
			if err != nil {
				t.Fatal(err)
			}
			if v.OK || v.FirstBadSequence != tt.firstBad || !strings.Contains(v.Problem, tt.problem) {
				t.Fatalf("Verify = %+v, want first bad %d and a problem mentioning %q", v, tt.firstBad, tt.problem)
			}
		})
	}
}

func TestVerifyRejectsCheckpointsOfAnotherKey(t *testing.T) {
	t.Parallel()
	st, _ := seed(t)
	other, err := chain.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Verify(context.Background(), chain.NewKeys(other.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || !strings.Contains(v.Problem, "invalid signature") {
		t.Fatalf("Verify with a foreign key = %+v", v)
	}
}

// TestVerifyAcceptsCheckpointsOfRetiredKeys changes the checkpoint key of a log half-way, as an
// operator replacing BASALT_AUDIT_CHECKPOINT_KEY does, and verifies the log with and without the
// earlier key among the retired ones.
func TestVerifyAcceptsCheckpointsOfRetiredKeys(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "rotate")
	st, _ := open(t, cfg)
	appendPairs(t, st, 5)
	// The same database, as the audit service sees it once it restarted with a new seed.
	db, err := database.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	next, err := chain.NewSigner([]byte(strings.Repeat("n", 32)))
	if err != nil {
		t.Fatal(err)
	}
	after := store.New(db, next)
	for range 2 {
		if _, err := after.Append(context.Background(), []chain.Entry{entry("auth.login")}); err != nil {
			t.Fatal(err)
		}
	}
	retired := signer(t).PublicKey()

	v, err := st.Verify(context.Background(), chain.NewKeys(next.PublicKey(), retired))
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.EventsChecked != 12 || v.CheckpointsChecked != 7 {
		t.Fatalf("Verify with the retired key = %+v, want 12 events and 7 checkpoints checked", v)
	}
	v, err = st.Verify(context.Background(), chain.NewKeys(next.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.FirstBadSequence != 2 || !strings.Contains(v.Problem, "invalid signature") {
		t.Fatalf("Verify without the retired key = %+v, want the first checkpoint refused", v)
	}

	// A retired key may have leaked: it vouches for nothing after its successor signed.
	if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.login")}); err != nil {
		t.Fatal(err)
	}
	v, err = st.Verify(context.Background(), chain.NewKeys(next.PublicKey(), retired))
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.FirstBadSequence != 13 || !strings.Contains(v.Problem, "a later key had replaced") {
		t.Fatalf("Verify of a retired key's checkpoint after its successor's = %+v", v)
	}
}
