package database_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func open(t *testing.T, cfg config.Database, opts ...database.Option) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Schema, err)
	}
	t.Cleanup(db.Close)
	return db
}

func exec(t *testing.T, db *database.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.SQL().ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// migrateSQL runs statements as the schema's owner, under the migration lock, as a
// migration does: the service's own sessions may not create or change tables.
func migrateSQL(t *testing.T, db *database.DB, stmts ...string) {
	t.Helper()
	err := db.Migrate(context.Background(), func(ctx context.Context, owner *sql.DB) error {
		for _, stmt := range stmts {
			if _, err := owner.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestSessionsRunInTheServiceSchemaAsItsRuntimeRole(t *testing.T) {
	t.Parallel()
	db := open(t, testkit.Database(t, "own"))
	var user, searchPath string
	if err := db.SQL().QueryRow(`SELECT current_user, current_setting('search_path')`).Scan(&user, &searchPath); err != nil {
		t.Fatal(err)
	}
	if user != "basalt_"+db.Schema()+"_app" || searchPath != db.Schema() || db.Role() != user || db.OwnerRole() != "basalt_"+db.Schema() {
		t.Fatalf("current_user=%q search_path=%q role=%q owner role=%q", user, searchPath, db.Role(), db.OwnerRole())
	}
	migrateSQL(t, db, `CREATE TABLE notes (id int PRIMARY KEY)`)
	var schema, owner string
	if err := db.SQL().QueryRow(`SELECT relnamespace::regnamespace::text, pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'notes'::regclass`).Scan(&schema, &owner); err != nil || schema != db.Schema() || owner != db.OwnerRole() {
		t.Fatalf("notes created in %q owned by %q (%v), want %s owned by %s", schema, owner, err, db.Schema(), db.OwnerRole())
	}
	exec(t, db, `INSERT INTO notes VALUES (1)`)
}

func TestServicesCannotReadEachOthersTables(t *testing.T) {
	t.Parallel()
	a := open(t, testkit.Database(t, "iso_a"))
	b := open(t, testkit.Database(t, "iso_b"))
	other := a.Schema()
	migrateSQL(t, a, `CREATE TABLE secrets (id int PRIMARY KEY, v text)`)
	exec(t, a, `INSERT INTO secrets VALUES (1, 'only for a')`)

	tests := []struct {
		name  string
		query string
		code  string
	}{
		{"qualified read", `SELECT v FROM ` + other + `.secrets`, "42501"}, // insufficient_privilege
		{"unqualified read", `SELECT v FROM secrets`, "42P01"},             // undefined_table
		{"qualified write", `DELETE FROM ` + other + `.secrets`, "42501"},
		{"create in other schema", `CREATE TABLE ` + other + `.x (i int)`, "42501"},
		{"change search path", `SET search_path = ` + other + `; SELECT v FROM secrets`, "42P01"}, // schemas without USAGE are skipped
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.SQL().ExecContext(context.Background(), tt.query)
			if got := pgCode(err); got != tt.code {
				t.Fatalf("%s: error %v (code %q), want code %s", tt.query, err, got, tt.code)
			}
		})
	}
	var v string
	if err := a.SQL().QueryRow(`SELECT v FROM secrets`).Scan(&v); err != nil || v != "only for a" {
		t.Fatalf("owner read = %q, %v", v, err)
	}
}

func TestTranslatePostgresErrors(t *testing.T) {
	t.Parallel()
	db := open(t, testkit.Database(t, "translate"))
	migrateSQL(t, db, `CREATE TABLE parents (id int PRIMARY KEY)`, `CREATE TABLE children (id int PRIMARY KEY, parent int REFERENCES parents(id))`)
	exec(t, db, `INSERT INTO parents VALUES (1)`)

	tests := []struct {
		name  string
		query string
		want  errs.Kind
	}{
		{"unique violation", `INSERT INTO parents VALUES (1)`, errs.KindAlreadyExists},
		{"foreign key violation", `INSERT INTO children VALUES (1, 42)`, errs.KindFailedPrecondition},
		{"syntax error stays internal", `SELEC 1`, errs.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.SQL().ExecContext(context.Background(), tt.query)
			err = database.Translate(err)
			if err == nil || errs.KindOf(err) != tt.want {
				t.Fatalf("Translate(%v) kind = %v, want %v", err, errs.KindOf(err), tt.want)
			}
			if e, ok := errs.As(err); ok && e.Cause == nil {
				t.Fatal("the driver error must stay as the cause")
			}
		})
	}
	if err := database.Translate(sql.ErrNoRows); errs.KindOf(err) != errs.KindNotFound {
		t.Fatalf("no rows = %v", err)
	}
	if err := database.Translate(context.Canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("context errors must pass through, got %v", err)
	}
}

// terminate kills every server process of application, waiting until each has exited, and
// returns how many it killed.
func terminate(t *testing.T, application string) int64 {
	t.Helper()
	return testkit.QueryInt(t, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = $1`, application)
}

func TestRecoversFromTerminatedConnections(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "terminated")
	cfg.MinConns = 2
	db := open(t, cfg, database.WithApplicationName("basalt-terminated"))
	migrateSQL(t, db, `CREATE TABLE counter (n int)`)
	exec(t, db, `INSERT INTO counter VALUES (0)`)

	if n := terminate(t, "basalt-terminated"); n == 0 {
		t.Fatal("no connection of the service was open to terminate; the test would prove nothing")
	}

	// A transaction that loses its connection before COMMIT was never applied, so WithTx
	// retries it on a fresh connection: the caller sees no error at all.
	ctx := context.Background()
	err := database.WithTx(ctx, beginSQL(db), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + 1`)
		return err
	})
	if err != nil {
		t.Fatalf("transaction after terminate: %v", err)
	}

	n := terminate(t, "basalt-terminated")
	// A plain query runs on whatever connection it gets, so the first one after the
	// terminate fails, as unavailable; that failure resets the pool, so no other does.
	failures := 0
	for range 10 {
		_, err := db.SQL().ExecContext(ctx, `UPDATE counter SET n = n + 1`)
		if err == nil {
			continue
		}
		failures++
		if k := errs.KindOf(database.Translate(err)); k != errs.KindUnavailable {
			t.Fatalf("after terminate: %v classified %v, want unavailable", err, k)
		}
	}
	if n == 0 || failures > 1 {
		t.Fatalf("%d of %d terminated connections failed a query; at most the first may", failures, n)
	}
	var counter int
	if err := db.SQL().QueryRow(`SELECT n FROM counter`).Scan(&counter); err != nil || counter != 11-failures {
		t.Fatalf("counter = %d (%v), want %d", counter, err, 11-failures)
	}
}

func beginSQL(db *database.DB) func(context.Context) (*sql.Tx, error) {
	return func(ctx context.Context) (*sql.Tx, error) { return db.SQL().BeginTx(ctx, nil) }
}

func TestWithTx(t *testing.T) {
	t.Parallel()
	db := open(t, testkit.Database(t, "withtx"))
	migrateSQL(t, db, `CREATE TABLE items (id int PRIMARY KEY)`)
	ctx := context.Background()
	count := func() int {
		var n int
		if err := db.SQL().QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(id int) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO items VALUES ($1)`, id)
			return err
		}
	}

	if err := database.WithTx(ctx, beginSQL(db), insert(1)); err != nil || count() != 1 {
		t.Fatalf("commit: %v, count %d", err, count())
	}

	boom := errs.FailedPrecondition("no")
	err := database.WithTx(ctx, beginSQL(db), func(tx *sql.Tx) error {
		if err := insert(2)(tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || count() != 1 {
		t.Fatalf("rollback on error: %v, count %d", err, count())
	}

	if err := database.WithTx(ctx, beginSQL(db), insert(1)); errs.KindOf(err) != errs.KindAlreadyExists {
		t.Fatalf("duplicate insert: %v, want already_exists", err)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic must propagate")
			}
		}()
		_ = database.WithTx(ctx, beginSQL(db), func(tx *sql.Tx) error {
			_ = insert(3)(tx)
			panic("handler bug")
		})
	}()
	if count() != 1 {
		t.Fatalf("panic must roll back; count %d", count())
	}
}

// TestWithTxRetriesSerializationFailures makes two serializable transactions conflict for real
// and checks that WithTx retries the loser until both increments land.
func TestWithTxRetriesSerializationFailures(t *testing.T) {
	t.Parallel()
	db := open(t, testkit.Database(t, "serial"))
	migrateSQL(t, db, `CREATE TABLE balance (n int)`)
	exec(t, db, `INSERT INTO balance VALUES (0)`)
	ctx := context.Background()
	serializable := func(ctx context.Context) (*sql.Tx, error) {
		return db.SQL().BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	}

	var (
		bothRead sync.WaitGroup
		attempts atomic.Int32
	)
	bothRead.Add(2)
	increment := func(first *atomic.Bool) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			attempts.Add(1)
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT n FROM balance`).Scan(&n); err != nil {
				return err
			}
			if first.CompareAndSwap(true, false) {
				// Both transactions read before either writes: a read-write conflict.
				bothRead.Done()
				bothRead.Wait()
			}
			_, err := tx.ExecContext(ctx, `UPDATE balance SET n = $1`, n+1)
			return err
		}
	}
	var wg sync.WaitGroup
	errsCh := make(chan error, 2)
	for range 2 {
		first := &atomic.Bool{}
		first.Store(true)
		wg.Go(func() { errsCh <- database.WithTx(ctx, serializable, increment(first)) })
	}
	wg.Wait()
	close(errsCh)
	for err := range errsCh {
		if err != nil {
			t.Fatalf("WithTx: %v", err)
		}
	}
	var n int
	if err := db.SQL().QueryRow(`SELECT n FROM balance`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("balance = %d (%v), want 2", n, err)
	}
	if attempts.Load() < 3 {
		t.Fatalf("%d attempts: the conflict did not happen, so the retry was not exercised", attempts.Load())
	}
}

// TestMigrateRunsOneReplicaAtATime starts several processes that migrate the same schema at
// once, as replicas starting together do, and checks that their migrations never overlap.
// Within one process a mutex already serialises migrations, so only separate processes can
// show that the PostgreSQL lock works.
func TestMigrateRunsOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "migrate")
	setup := open(t, cfg)
	migrateSQL(t, setup, `CREATE TABLE running (pid int PRIMARY KEY)`, `CREATE TABLE overlap_seen (pid int, seen int)`, `CREATE TABLE finished (pid int PRIMARY KEY)`)

	const replicas = 4
	var wg sync.WaitGroup
	for range replicas {
		cmd := osexec.Command(os.Args[0], "-test.run=^TestMigrateHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "BASALT_MIGRATE_HELPER_URL="+cfg.URL.Reveal(), "BASALT_MIGRATE_HELPER_SCHEMA="+cfg.Schema)
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("replica: %v\n%s", err, out)
			}
		})
	}
	wg.Wait()
	var finished, overlaps int
	if err := setup.SQL().QueryRow(`SELECT (SELECT count(*) FROM finished), (SELECT count(*) FROM overlap_seen)`).Scan(&finished, &overlaps); err != nil {
		t.Fatal(err)
	}
	if finished != replicas || overlaps != 0 {
		t.Fatalf("%d of %d replicas migrated, %d saw another migrating at the same time", finished, replicas, overlaps)
	}
}

// TestMigrateHelperProcess is one replica of TestMigrateRunsOneReplicaAtATime.
func TestMigrateHelperProcess(t *testing.T) {
	url := os.Getenv("BASALT_MIGRATE_HELPER_URL")
	if url == "" {
		t.Skip("runs only as a replica started by TestMigrateRunsOneReplicaAtATime")
	}
	db := open(t, config.Database{URL: config.NewSecret(url), Schema: os.Getenv("BASALT_MIGRATE_HELPER_SCHEMA"), MaxConns: 2, ConnectTimeout: 5 * time.Second})
	pid := os.Getpid()
	err := db.Migrate(context.Background(), func(ctx context.Context, _ *sql.DB) error {
		exec(t, db, `INSERT INTO overlap_seen SELECT $1, pid FROM running`, pid)
		exec(t, db, `INSERT INTO running VALUES ($1)`, pid)
		// Staying inside a moment gives the other replicas every chance to overlap if the
		// lock did not exclude them.
		time.Sleep(100 * time.Millisecond)
		exec(t, db, `DELETE FROM running WHERE pid = $1`, pid)
		exec(t, db, `INSERT INTO finished VALUES ($1)`, pid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nested", "svc.db")
	db := open(t, config.Database{URL: config.NewSecret("sqlite://" + path), Schema: "svc", MaxConns: 4})
	if db.Dialect() != "sqlite3" {
		t.Fatalf("dialect = %q", db.Dialect())
	}
	migrateSQL(t, db, `CREATE TABLE items (id integer PRIMARY KEY, parent integer REFERENCES items(id))`)
	ctx := context.Background()
	err := database.WithTx(ctx, beginSQL(db), func(tx *sql.Tx) error {
		if err := db.LockTx(ctx, tx, "items"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.SQL().ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`)
	if k := errs.KindOf(database.Translate(err)); k != errs.KindAlreadyExists {
		t.Fatalf("duplicate: %v (%v)", err, k)
	}
	_, err = db.SQL().ExecContext(ctx, `INSERT INTO items (id, parent) VALUES (2, 99)`)
	if k := errs.KindOf(database.Translate(err)); k != errs.KindFailedPrecondition {
		t.Fatalf("foreign keys must be enforced: %v (%v)", err, k)
	}
}

func TestOpenRejectsUnknownURLs(t *testing.T) {
	t.Parallel()
	_, err := database.Open(context.Background(), config.Database{URL: config.NewSecret("mysql://root:pw@x/db"), Schema: "x", MaxConns: 1})
	if err == nil {
		t.Fatal("Open accepted a mysql URL")
	}
}

func TestOpenDoesNotLeakThePassword(t *testing.T) {
	t.Parallel()
	_, err := database.Open(context.Background(), config.Database{
		URL: config.NewSecret("postgres://u:supersecret@127.0.0.1:1/db?connect_timeout=1"), Schema: "x", MaxConns: 1, ConnectTimeout: time.Second,
	})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if errs.KindOf(err) != errs.KindUnavailable {
		t.Errorf("closed port = %v, want unavailable", err)
	}
	var e *errs.Error
	if errors.As(err, &e) && strings.Contains(e.Message, "supersecret") {
		t.Fatalf("message leaks the password: %q", e.Message)
	}
}
