package migrategen_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/devtools/internal/migrategen"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// fresh opens an empty database of dialect for svc.
func fresh(t *testing.T, svc migrategen.Service, dialect string) *database.DB {
	t.Helper()
	cfg := config.Database{URL: config.NewSecret("sqlite://" + filepath.Join(t.TempDir(), svc.Name+".db")), Schema: svc.Name, MaxConns: 4}
	if dialect == "postgres" {
		cfg = testkit.Database(t, svc.Name)
	}
	db, err := database.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCommittedMigrationsMatchTheEntSchema is the freshness check: a change to a service's
// Ent schema without the migration that makes it fails here, saying which task to run.
func TestCommittedMigrationsMatchTheEntSchema(t *testing.T) {
	t.Parallel()
	for _, svc := range migrategen.Services() {
		t.Run(svc.Name, func(t *testing.T) {
			t.Parallel()
			files := os.DirFS(svc.Dir(root(t)))
			for _, dialect := range migrategen.Dialects() {
				db := fresh(t, svc, dialect)
				ctx := context.Background()
				if err := migrate.Apply(ctx, db, svc.Name, files); err != nil {
					t.Fatalf("%s: %v", dialect, err)
				}
				plan, err := migrategen.Pending(ctx, db, svc)
				if err != nil {
					t.Fatalf("%s: %v", dialect, err)
				}
				if len(plan) > 0 {
					t.Error(migrategen.Stale(svc, dialect, plan))
				}
			}
		})
	}
}

// TestPendingSeesWhatIsNotMigrated shows the freshness check can fail: a schema that lacks a
// table, or has one Ent no longer knows, is reported.
func TestPendingSeesWhatIsNotMigrated(t *testing.T) {
	t.Parallel()
	svc, err := migrategen.Lookup("blog")
	if err != nil {
		t.Fatal(err)
	}
	for _, dialect := range migrategen.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := fresh(t, svc, dialect)
			plan, err := migrategen.Pending(ctx, db, svc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(plan, []byte(`CREATE TABLE`)) || !bytes.Contains(plan, []byte(`posts`)) {
				t.Fatalf("an empty schema must need the posts table; plan:\n%s", plan)
			}
			msg := migrategen.Stale(svc, dialect, plan)
			if !strings.Contains(msg, "go tool task migrate:diff -- blog <name>") {
				t.Fatalf("the message does not name the task: %s", msg)
			}
		})
	}
}

// TestGenerateWritesOnlyWhatIsMissing generates a service's first migration into an empty
// folder, checks it is the committed one, and that a second run writes nothing.
func TestGenerateWritesOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	testkit.DatabaseURL(t) // Skips, or fails under CI, without PostgreSQL.
	svc, err := migrategen.Lookup("blog")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := migrate.Read(os.DirFS(svc.Dir(root(t))), "postgres")
	if err != nil || len(committed) == 0 {
		t.Fatalf("committed blog migrations: %v, %v", committed, err)
	}
	first := committed[0]

	tmp := t.TempDir()
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	g := migrategen.New(tmp, testkit.Env().AdminURL, migrategen.WithClock(func() time.Time { return clock }))
	ctx := context.Background()
	written, err := g.Generate(ctx, svc, first.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(svc.Dir(tmp), "postgres", "20300102030405_"+first.Name+".sql"),
		filepath.Join(svc.Dir(tmp), "sqlite", "20300102030405_"+first.Name+".sql"),
	}
	if strings.Join(written, ",") != strings.Join(want, ",") {
		t.Fatalf("written = %v, want %v", written, want)
	}
	got, err := os.ReadFile(want[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, first.SQL) {
		t.Fatalf("generated:\n%s\ncommitted %s:\n%s", got, first.File, first.SQL)
	}

	clock = clock.Add(time.Minute)
	if again, err := g.Generate(ctx, svc, "again"); err != nil || len(again) != 0 {
		t.Fatalf("a second run wrote %v (%v); the migrations already match the schema", again, err)
	}

	clock = clock.Add(-time.Hour)
	if _, err := g.Generate(ctx, svc, "late"); err == nil || !strings.Contains(err.Error(), "not newer than") {
		t.Fatalf("a version older than the newest file = %v, want a refusal", err)
	}
	if _, err := g.Generate(ctx, svc, "Bad-Name"); err == nil {
		t.Fatal("Generate accepted a name with capitals and a dash")
	}
}
