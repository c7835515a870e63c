package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// backends returns a fresh PostgreSQL schema and a fresh SQLite file, the two databases
// services run on.
func backends(t *testing.T) map[string]config.Database {
	t.Helper()
	return map[string]config.Database{
		"postgres": testkit.Database(t, "migrate"),
		"sqlite":   {URL: config.NewSecret("sqlite://" + filepath.Join(t.TempDir(), "svc.db")), Schema: "svc", MaxConns: 4},
	}
}

func open(t *testing.T, cfg config.Database) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// onEachBackend runs test in parallel subtests, on a fresh PostgreSQL schema and on a fresh
// SQLite file.
func onEachBackend(t *testing.T, test func(t *testing.T, ctx context.Context, db *database.DB)) {
	t.Helper()
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, context.Background(), open(t, cfg))
		})
	}
}

// both returns the same file for the postgres and sqlite folders of an fs.
func both(files map[string]string) fstest.MapFS {
	out := fstest.MapFS{}
	for name, body := range files {
		out["postgres/"+name] = &fstest.MapFile{Data: []byte(body)}
		out["sqlite/"+name] = &fstest.MapFile{Data: []byte(body)}
	}
	return out
}

func tables(t *testing.T, db *database.DB) []string {
	t.Helper()
	query := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if db.Dialect() == "postgres" {
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	}
	rows, err := db.SQL().Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	return out
}

func versions(t *testing.T, db *database.DB, component string) string {
	t.Helper()
	records, err := migrate.Applied(context.Background(), db, component)
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, r := range records {
		vs = append(vs, r.Version+"_"+r.Name)
	}
	return strings.Join(vs, ",")
}

func TestApplyRunsPendingMigrationsInOrderOnce(t *testing.T) {
	t.Parallel()
	onEachBackend(t, func(t *testing.T, ctx context.Context, db *database.DB) {
		if got := versions(t, db, "svc"); got != "" {
			t.Fatalf("a new schema has applied migrations %q", got)
		}
		// 9 before 10 proves versions compare as numbers, not as text.
		first := both(map[string]string{
			"10_second.sql": `CREATE TABLE b (id integer PRIMARY KEY, a integer REFERENCES a(id));`,
			"9_first.sql":   "-- Two statements in one file.\nCREATE TABLE a (id integer PRIMARY KEY);\nINSERT INTO a (id) VALUES (1);",
		})
		for range 2 {
			if err := migrate.Apply(ctx, db, "svc", first); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
		if got := versions(t, db, "svc"); got != "9_first,10_second" {
			t.Fatalf("applied = %q", got)
		}
		var n int
		if err := db.SQL().QueryRow(`SELECT count(*) FROM a`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("the seed row of 9_first ran %d times (%v), want once", n, err)
		}

		later := both(map[string]string{"11_third.sql": `CREATE TABLE c (id integer PRIMARY KEY);`})
		for name, f := range first {
			later[name] = f
		}
		if err := migrate.Apply(ctx, db, "svc", later); err != nil {
			t.Fatalf("apply a later migration: %v", err)
		}
		if got, want := strings.Join(tables(t, db), ","), "a,b,basalt_schema_migrations,c"; got != want {
			t.Fatalf("tables = %s, want %s", got, want)
		}
		if got := versions(t, db, "svc"); got != "9_first,10_second,11_third" {
			t.Fatalf("applied = %q", got)
		}
	})
}

func TestComponentsHaveTheirOwnHistory(t *testing.T) {
	t.Parallel()
	onEachBackend(t, func(t *testing.T, ctx context.Context, db *database.DB) {
		if err := migrate.Apply(ctx, db, "svc", both(map[string]string{"1_init.sql": `CREATE TABLE items (id integer PRIMARY KEY);`})); err != nil {
			t.Fatal(err)
		}
		// The same version in another component is a different migration.
		if err := migrate.Apply(ctx, db, "outbox", both(map[string]string{"1_init.sql": `CREATE TABLE box (id integer PRIMARY KEY);`})); err != nil {
			t.Fatal(err)
		}
		if got := versions(t, db, "svc") + "|" + versions(t, db, "outbox"); got != "1_init|1_init" {
			t.Fatalf("applied = %s", got)
		}
		if got := strings.Join(tables(t, db), ","); got != "basalt_schema_migrations,box,items" {
			t.Fatalf("tables = %s", got)
		}
	})
}

func TestAFailedMigrationLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	onEachBackend(t, func(t *testing.T, ctx context.Context, db *database.DB) {
		files := both(map[string]string{
			"1_good.sql": `CREATE TABLE good (id integer PRIMARY KEY);`,
			"2_bad.sql":  "CREATE TABLE half (id integer PRIMARY KEY);\nINSERT INTO missing_table VALUES (1);",
		})
		err := migrate.Apply(ctx, db, "svc", files)
		if err == nil || !strings.Contains(err.Error(), "2_bad.sql") {
			t.Fatalf("apply = %v, want an error naming 2_bad.sql", err)
		}
		if got := versions(t, db, "svc"); got != "1_good" {
			t.Fatalf("applied = %q, want only 1_good", got)
		}
		if got := strings.Join(tables(t, db), ","); got != "basalt_schema_migrations,good" {
			t.Fatalf("tables = %s: the failed migration's first statement must be rolled back", got)
		}
	})
}

func TestASchemaMadeWithoutMigrationsIsExplained(t *testing.T) {
	t.Parallel()
	onEachBackend(t, func(t *testing.T, ctx context.Context, db *database.DB) {
		err := db.Migrate(ctx, func(ctx context.Context, owner *sql.DB) error {
			_, err := owner.ExecContext(ctx, `CREATE TABLE items (id integer PRIMARY KEY)`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		err = migrate.Apply(ctx, db, "svc", both(map[string]string{"1_init.sql": `CREATE TABLE items (id integer PRIMARY KEY);`}))
		if err == nil || !strings.Contains(err.Error(), "1_init.sql") || !strings.Contains(err.Error(), "before migrations were versioned") {
			t.Fatalf("apply = %v, want an error naming 1_init.sql and the likely cause", err)
		}
	})
}

func TestApplyRefusesFilesThatDisagreeWithHistory(t *testing.T) {
	t.Parallel()
	applied := map[string]string{
		"20260101000000_init.sql": `CREATE TABLE items (id integer PRIMARY KEY);`,
		"20260102000000_more.sql": `CREATE TABLE more (id integer PRIMARY KEY);`,
	}
	with := func(change func(map[string]string)) fstest.MapFS {
		files := map[string]string{}
		for k, v := range applied {
			files[k] = v
		}
		change(files)
		return both(files)
	}
	tests := []struct {
		name  string
		files fstest.MapFS
		want  []string
	}{
		{"changed", with(func(f map[string]string) { f["20260101000000_init.sql"] += "\n-- edited" }), []string{"20260101000000_init.sql", "changed after it was applied"}},
		{"missing", with(func(f map[string]string) { delete(f, "20260102000000_more.sql") }), []string{"20260102000000_more.sql", "file is missing"}},
		{"renamed", with(func(f map[string]string) {
			f["20260102000000_renamed.sql"] = f["20260102000000_more.sql"]
			delete(f, "20260102000000_more.sql")
		}), []string{"20260102000000_renamed.sql", "was applied as 20260102000000_more.sql"}},
		{"out of order", with(func(f map[string]string) { f["20260101120000_late.sql"] = `CREATE TABLE late (id integer);` }), []string{"20260101120000_late.sql", "older than 20260102000000"}},
		{"duplicate version", with(func(f map[string]string) {
			f["20260103000000_a.sql"], f["20260103000000_b.sql"] = "SELECT 1;", "SELECT 2;"
		}), []string{"20260103000000_a.sql", "20260103000000_b.sql", "same version"}},
		{"bad name", with(func(f map[string]string) { f["20260103000000-Bad.sql"] = "SELECT 1;" }), []string{"20260103000000-Bad.sql", "not a migration file"}},
	}
	onEachBackend(t, func(t *testing.T, ctx context.Context, db *database.DB) {
		if err := migrate.Apply(ctx, db, "svc", both(applied)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			err := migrate.Apply(ctx, db, "svc", tt.files)
			if err == nil {
				t.Fatalf("%s: Apply accepted the files", tt.name)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not say %q", tt.name, err, w)
				}
			}
		}
		if got := versions(t, db, "svc"); got != "20260101000000_init,20260102000000_more" {
			t.Fatalf("a refused Apply changed the history: %q", got)
		}
	})
}

func TestReadOrdersAndChecksFiles(t *testing.T) {
	t.Parallel()
	files := fstest.MapFS{
		"postgres/0002_b.sql": {Data: []byte("b")},
		"postgres/1_a.sql":    {Data: []byte("a")},
		"postgres/10_c.sql":   {Data: []byte("c")},
	}
	got, err := migrate.Read(files, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, m.File)
	}
	if strings.Join(names, ",") != "1_a.sql,0002_b.sql,10_c.sql" {
		t.Fatalf("order = %v", names)
	}
	// The SHA-256 of "a".
	if got[0].Checksum != "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" {
		t.Fatalf("checksum = %s", got[0].Checksum)
	}
	if none, err := migrate.Read(files, "sqlite"); err != nil || len(none) != 0 {
		t.Fatalf("a missing folder = %v, %v; want no migrations", none, err)
	}
	files["postgres/02_again.sql"] = &fstest.MapFile{Data: []byte("x")}
	if _, err := migrate.Read(files, "postgres"); err == nil || !strings.Contains(err.Error(), "02_again.sql") {
		t.Fatalf("versions 2 and 02 are one version: %v", err)
	}
}

// replicaFiles are the migrations the replicas of TestReplicasStartingTogetherMigrateOnce apply.
// The third one fails if it runs twice, and the first two sleep, so that replicas that did
// not wait for each other would overlap.
var replicaFiles = both(map[string]string{
	"1_users.sql":  `CREATE TABLE users (id integer PRIMARY KEY); SELECT pg_sleep(0.1);`,
	"2_posts.sql":  `CREATE TABLE posts (id integer PRIMARY KEY, author integer REFERENCES users(id)); SELECT pg_sleep(0.1);`,
	"3_seed.sql":   `INSERT INTO users (id) VALUES (1);`,
	"4_counts.sql": `CREATE TABLE counts (n integer); INSERT INTO counts SELECT count(*) FROM users;`,
})

// TestReplicasStartingTogetherMigrateOnce starts several processes that migrate the same fresh
// schema at the same moment, as replicas of a service starting together do: every one must
// succeed, and every migration must have run exactly once. Only separate processes show this,
// since within one process a mutex already serialises migrations. The replicas log in once with
// one login for everything, and once with an owner login beside a runtime login of their own.
func TestReplicasStartingTogetherMigrateOnce(t *testing.T) {
	t.Parallel()
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("owner login %v", split), func(t *testing.T) {
			t.Parallel()
			cfg := testkit.Database(t, "replicas")
			if split {
				cfg.AppRole = testkit.Role(t, "app", "LOGIN")
				cfg.OwnerURL, cfg.URL = cfg.URL, testkit.LoginURL(t, cfg.AppRole)
			}
			startReplicas(t, cfg, 4)
			db := open(t, cfg)
			if got := versions(t, db, "svc"); got != "1_users,2_posts,3_seed,4_counts" {
				t.Fatalf("applied = %q", got)
			}
			var rows, count int
			if err := db.SQL().QueryRow(`SELECT (SELECT count(*) FROM `+migrate.Table+`), (SELECT n FROM counts)`).Scan(&rows, &count); err != nil {
				t.Fatal(err)
			}
			if rows != 4 || count != 1 {
				t.Fatalf("%d records (want 4), counts saw %d users (want 1)", rows, count)
			}
			if n := testkit.QueryInt(t, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tableowner <> $2`, cfg.Schema, db.OwnerRole()); n != 0 {
				t.Fatalf("%d tables not owned by %s", n, db.OwnerRole())
			}
		})
	}
}

// startReplicas runs n replica processes that connect with cfg, wait until all are connected,
// and then migrate at once; it returns when all have finished.
func startReplicas(t *testing.T, cfg config.Database, n int) {
	t.Helper()
	var (
		ready, done sync.WaitGroup
		gates       []io.WriteCloser
	)
	for range n {
		cmd := osexec.Command(os.Args[0], "-test.run=^TestReplicaHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(),
			"BASALT_MIGRATE_REPLICA_URL="+cfg.URL.Reveal(),
			"BASALT_MIGRATE_REPLICA_OWNER_URL="+cfg.OwnerURL.Reveal(),
			"BASALT_MIGRATE_REPLICA_APP_ROLE="+cfg.AppRole,
			"BASALT_MIGRATE_REPLICA_SCHEMA="+cfg.Schema)
		gate, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		gates = append(gates, gate)
		ready.Add(1)
		done.Go(func() {
			// The replica says "ready" once connected; everything after that is its test output.
			out, _ := io.ReadAll(&readyReader{r: stdout, ready: ready.Done})
			if err := cmd.Wait(); err != nil {
				t.Errorf("replica: %v\n%s%s", err, out, stderr.String())
			}
		})
	}
	// The start barrier: every replica is connected and waiting before any may migrate.
	ready.Wait()
	for _, gate := range gates {
		_ = gate.Close()
	}
	done.Wait()
}

// readyReader passes a replica's output through and calls ready once, when the replica's
// "ready" line has gone by or its output ended without one.
type readyReader struct {
	r     io.Reader
	ready func()
	seen  strings.Builder
	done  bool
}

func (r *readyReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if !r.done {
		r.seen.Write(p[:n])
		if strings.Contains(r.seen.String(), "ready\n") || err != nil {
			r.done = true
			r.ready()
		}
	}
	return n, err
}

// TestReplicaHelperProcess is one replica of TestReplicasStartingTogetherMigrateOnce: it
// connects, says "ready", and migrates when its standard input closes.
func TestReplicaHelperProcess(t *testing.T) {
	url := os.Getenv("BASALT_MIGRATE_REPLICA_URL")
	if url == "" {
		t.Skip("runs only as a replica started by TestReplicasStartingTogetherMigrateOnce")
	}
	db := open(t, config.Database{
		URL:            config.NewSecret(url),
		OwnerURL:       config.NewSecret(os.Getenv("BASALT_MIGRATE_REPLICA_OWNER_URL")),
		AppRole:        os.Getenv("BASALT_MIGRATE_REPLICA_APP_ROLE"),
		Schema:         os.Getenv("BASALT_MIGRATE_REPLICA_SCHEMA"),
		MaxConns:       2,
		ConnectTimeout: 5 * time.Second,
	})
	fmt.Println("ready")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
	if err := migrate.Apply(context.Background(), db, "svc", replicaFiles); err != nil {
		t.Fatal(err)
	}
}

// TestMigratedTablesBelongToTheOwner applies a component's migrations and the outbox's, as a
// service does at start, and checks what the service's sessions may then do: read and write
// every table's rows, but neither change nor drop a table, nor write the history of applied
// migrations, which would make a migration run again. It runs with one login for everything and
// with a runtime login of the service's own.
func TestMigratedTablesBelongToTheOwner(t *testing.T) {
	t.Parallel()
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("owner login %v", split), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := testkit.Database(t, "owned")
			if split {
				cfg.AppRole = testkit.Role(t, "app", "LOGIN")
				cfg.OwnerURL, cfg.URL = cfg.URL, testkit.LoginURL(t, cfg.AppRole)
			}
			db := open(t, cfg)
			if err := migrate.Apply(ctx, db, "svc", replicaFiles); err != nil {
				t.Fatal(err)
			}
			if err := outbox.New(db, "svc").Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if n := testkit.QueryInt(t, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tableowner = $2`, cfg.Schema, db.OwnerRole()); n != 5 {
				t.Fatalf("%d tables owned by %s, want 5 (users, posts, counts, the outbox, the history)", n, db.OwnerRole())
			}
			for _, stmt := range []string{
				`INSERT INTO users (id) VALUES (2)`,
				`UPDATE users SET id = 3 WHERE id = 2`,
				`DELETE FROM users WHERE id = 3`,
				`INSERT INTO basalt_outbox (event_id, payload, created_at, next_attempt_at) VALUES ('e', '\x01', 0, 0)`,
				`UPDATE basalt_outbox SET attempts = attempts + 1`,
				`SELECT seq FROM basalt_outbox FOR UPDATE SKIP LOCKED`,
				`DELETE FROM basalt_outbox`,
			} {
				if _, err := db.SQL().ExecContext(ctx, stmt); err != nil {
					t.Errorf("%s: %v", stmt, err)
				}
			}
			if got := versions(t, db, "svc"); got != "1_users,2_posts,3_seed,4_counts" {
				t.Errorf("the service's sessions read the history as %q", got)
			}
			for _, stmt := range []string{
				`ALTER TABLE users ADD COLUMN x int`,
				`DROP TABLE posts`,
				`TRUNCATE counts`,
				`ALTER TABLE basalt_outbox DROP COLUMN dead`,
				`DROP TABLE basalt_outbox`,
				`DELETE FROM ` + migrate.Table,
				`UPDATE ` + migrate.Table + ` SET checksum = ''`,
				`INSERT INTO ` + migrate.Table + ` (component, version, name, checksum) VALUES ('svc', '5', 'forged', '')`,
			} {
				_, err := db.SQL().ExecContext(ctx, stmt)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Errorf("%s: error %v, want insufficient_privilege", stmt, err)
				}
			}
		})
	}
}
