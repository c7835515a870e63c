package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func open(t testing.TB, cfg config.Database, opts ...database.Option) (*store.Store, *database.DB) {
	t.Helper()
	db, err := database.Open(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	st := store.New(db, signer(t))
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, db
}

// signer returns the checkpoint signer every test shares, so verification can use its key.
func signer(t testing.TB) *chain.Signer {
	t.Helper()
	s, err := chain.NewSigner(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// backends runs a test against PostgreSQL (the real parts) and SQLite (the embedded default).
func backends(t *testing.T, name string) map[string]config.Database {
	return map[string]config.Database{
		"postgres": testkit.Database(t, name),
		"sqlite":   {URL: config.NewSecret("sqlite://" + filepath.Join(t.TempDir(), "audit.db")), Schema: "audit", MaxConns: 4},
	}
}

func entry(action string) chain.Entry {
	return chain.Entry{
		ID:           uuid.NewString(),
		Time:         time.Now().UTC().Truncate(time.Microsecond),
		Service:      "auth",
		Action:       action,
		Outcome:      "success",
		ActorSubject: "user-1",
		ActorIP:      "203.0.113.9",
		RequestID:    "req-1",
		Metadata:     map[string]string{"method": "password", "mfa": "none"},
	}
}

// verify checks the whole log, chain and checkpoints, returning how many events it holds.
func verify(t *testing.T, st *store.Store) int64 {
	t.Helper()
	v, err := st.Verify(context.Background(), chain.NewKeys(signer(t).PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK {
		t.Fatalf("log does not verify: %+v", v)
	}
	return v.EventsChecked
}

func TestAppendChainsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	for backend, cfg := range backends(t, "append") {
		t.Run(backend, func(t *testing.T) {
			st, _ := open(t, cfg)
			ctx := context.Background()
			batch := []chain.Entry{entry("auth.login"), entry("auth.refresh"), entry("auth.logout")}
			receipts, err := st.Append(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range receipts {
				if r.ID != batch[i].ID || r.Sequence != int64(i+1) || r.Duplicate {
					t.Fatalf("receipt %d = %+v", i, r)
				}
			}

			// A retried batch with one new event appends only that one, and reports the
			// others with the sequence they already have.
			retry := append(append([]chain.Entry{}, batch...), entry("auth.register"))
			receipts, err = st.Append(ctx, retry)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range receipts {
				wantDup := i < 3
				if r.Duplicate != wantDup || r.Sequence != int64(i+1) {
					t.Fatalf("retry receipt %d = %+v", i, r)
				}
			}

			// The same id twice in one batch is appended once.
			e := entry("auth.login")
			receipts, err = st.Append(ctx, []chain.Entry{e, e})
			if err != nil {
				t.Fatal(err)
			}
			if receipts[0].Duplicate || !receipts[1].Duplicate || receipts[0].Sequence != receipts[1].Sequence {
				t.Fatalf("in-batch duplicate receipts = %+v", receipts)
			}
			if n := verify(t, st); n != 5 {
				t.Fatalf("log holds %d events, want 5", n)
			}
		})
	}
}

func TestConcurrentAppendsFromManyInstancesKeepTheChain(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "concurrent")
	const instances, writers, batches = 3, 4, 5
	stores := make([]*store.Store, instances)
	for i := range stores {
		stores[i], _ = open(t, cfg) // separate pools, as separate replicas have
	}
	var wg sync.WaitGroup
	errCh := make(chan error, instances*writers)
	for i := range instances {
		for range writers {
			wg.Go(func() {
				for b := range batches {
					batch := []chain.Entry{entry("auth.login"), entry(fmt.Sprintf("auth.step%d", b))}
					if _, err := stores[i].Append(context.Background(), batch); err != nil {
						errCh <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatalf("concurrent append: %v", err)
	}
	if n, want := verify(t, stores[0]), int64(instances*writers*batches*2); n != want {
		t.Fatalf("log holds %d events, want %d (gap-free, no losses)", n, want)
	}
}

// TestMigrateAppliesTheVersionedMigrationsOnce checks that a restart, which migrates again,
// changes nothing and that the log's history holds the generated schema, the hand-written
// append-only triggers and the privileges taken from the runtime role, in that order.
func TestMigrateAppliesTheVersionedMigrationsOnce(t *testing.T) {
	t.Parallel()
	for backend, cfg := range backends(t, "versioned") {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			st, db := open(t, cfg)
			ctx := context.Background()
			if err := st.Migrate(ctx); err != nil {
				t.Fatalf("migrating again: %v", err)
			}
			records, err := migrate.Applied(ctx, db, "audit")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range records {
				names = append(names, r.Name)
			}
			if got := strings.Join(names, ","); got != "init,append_only,runtime_role" {
				t.Fatalf("applied = %s, want init,append_only,runtime_role", got)
			}
		})
	}
}

func TestTheTableRefusesChanges(t *testing.T) {
	t.Parallel()
	for backend, cfg := range backends(t, "appendonly") {
		t.Run(backend, func(t *testing.T) {
			st, db := open(t, cfg)
			if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.login")}); err != nil {
				t.Fatal(err)
			}
			for _, stmt := range []string{
				`UPDATE events SET action = 'auth.nothing'`,
				`DELETE FROM events`,
			} {
				if _, err := db.SQL().Exec(stmt); err == nil {
					t.Fatalf("%s succeeded on an append-only table", stmt)
				}
			}
			if backend == "postgres" {
				_, err := db.SQL().Exec(`TRUNCATE events`)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Fatalf("TRUNCATE = %v, want insufficient_privilege", err)
				}
			}
			if n := verify(t, st); n != 1 {
				t.Fatalf("log holds %d events after refused changes, want 1", n)
			}
		})
	}
}

func TestAppendSurvivesATerminatedConnection(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "terminate")
	cfg.MinConns = 2
	st, _ := open(t, cfg, database.WithApplicationName("basalt-audit-terminate"))
	if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.login")}); err != nil {
		t.Fatal(err)
	}
	if n := testkit.QueryInt(t, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = 'basalt-audit-terminate'`); n == 0 {
		t.Fatal("no connection to terminate")
	}
	if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.logout")}); err != nil {
		t.Fatalf("append after the connections were killed: %v", err)
	}
	if n := verify(t, st); n != 2 {
		t.Fatalf("log holds %d events, want 2", n)
	}
}

// BenchmarkAppend measures appending batches of 100 events to PostgreSQL; events/s is the
// log's write throughput from one writer.
func BenchmarkAppend(b *testing.B) {
	st, _ := open(b, testkit.Database(b, "bench"))
	const batch = 100
	b.ReportAllocs()
	for b.Loop() {
		entries := make([]chain.Entry, batch)
		for i := range entries {
			entries[i] = entry("auth.login")
		}
		if _, err := st.Append(context.Background(), entries); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// TestVerifyWhileTheLogGrows verifies the log over and over while appends go on, as VerifyLog
// runs on a live platform: each verification sees one consistent log, never a checkpoint of an
// append that landed after its last page of events, which would read as a cut-off tail.
func TestVerifyWhileTheLogGrows(t *testing.T) {
	t.Parallel()
	for name, cfg := range backends(t, "audit_live") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st, _ := open(t, cfg)
			appended := make(chan error, 1)
			go func() {
				defer close(appended)
				for range 300 {
					if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.login")}); err != nil {
						appended <- err
						return
					}
				}
			}()
			verified := 0
			for done := false; !done; verified++ {
				select {
				case err, open := <-appended:
					if err != nil {
						t.Fatalf("appending while verifying: %v", err)
					}
					done = !open
				default:
				}
				verify(t, st)
			}
			if n := verify(t, st); n != 300 {
				t.Fatalf("the log holds %d events after 300 appends", n)
			}
			t.Logf("%d verifications while 300 appends went on", verified)
		})
	}
}
