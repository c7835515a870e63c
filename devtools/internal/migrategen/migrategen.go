// Package migrategen writes each service's versioned migrations from its Ent schema, and tells
// whether the committed migrations still match that schema.
//
// The difference is Ent's own (Atlas underneath): the committed migrations are applied with
// kernel/migrate, exactly as a service applies them at start-up, to a scratch database of each
// dialect; Ent then inspects that database and plans the statements that would bring it to the
// current Ent schema. An empty plan means the migrations are fresh. A plan is a new migration
// file, named <UTC timestamp>_<name>.sql in services/<name>/migrations/<dialect>/.
//
// The statements carry no schema name: on PostgreSQL every session of a service runs with
// search_path set to the service's schema, so the files apply in whatever schema the service
// is configured with.
package migrategen

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	"github.com/jackc/pgx/v5"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	auditmigrate "github.com/basaltplatform/basalt/services/audit/ent/migrate"
	authmigrate "github.com/basaltplatform/basalt/services/auth/ent/migrate"
	authzmigrate "github.com/basaltplatform/basalt/services/authz/ent/migrate"
	blogmigrate "github.com/basaltplatform/basalt/services/blog/ent/migrate"
	identitymigrate "github.com/basaltplatform/basalt/services/identity/ent/migrate"
)

// Service is a service whose schema is migrated.
type Service struct {
	// Name is the service's name, its migration component and the default name of its schema.
	Name string
	// Tables are the service's Ent schema, as its generated migrate package describes it.
	Tables []*schema.Table
}

// Dir returns the folder of the service's migrations below the repository root.
func (s Service) Dir(root string) string {
	return filepath.Join(root, "services", s.Name, "migrations")
}

// Services returns every service with a database, by name.
func Services() []Service {
	return []Service{
		{Name: "audit", Tables: auditmigrate.Tables},
		{Name: "auth", Tables: authmigrate.Tables},
		{Name: "authz", Tables: authzmigrate.Tables},
		{Name: "blog", Tables: blogmigrate.Tables},
		{Name: "identity", Tables: identitymigrate.Tables},
	}
}

// Lookup returns the service called name.
func Lookup(name string) (Service, error) {
	for _, s := range Services() {
		if s.Name == name {
			return s, nil
		}
	}
	return Service{}, fmt.Errorf("migrategen: no service %q has migrations", name)
}

// Dialects returns the migration folders, one for each database services run on.
func Dialects() []string { return []string{"postgres", "sqlite"} }

// Pending returns the statements that would bring db to svc's Ent schema, or nothing when db
// already matches it. Only the service's own tables are compared: the outbox and the table of
// applied migrations belong to other components. Dropped columns and indexes count as changes.
func Pending(ctx context.Context, db *database.DB, svc Service) ([]byte, error) {
	var out []byte
	// The migration lock's process-wide mutex keeps two diffs of one service's Tables, which
	// Ent mutates while planning, from overlapping.
	err := db.Migrate(ctx, func(ctx context.Context, owner *sql.DB) error {
		dir := &atlasmigrate.MemDir{}
		m, err := schema.NewMigrate(entsql.OpenDB(db.Dialect(), owner),
			schema.WithDir(dir),
			schema.WithFormatter(atlasmigrate.DefaultFormatter),
			schema.WithDropColumn(true),
			schema.WithDropIndex(true),
		)
		if err != nil {
			return err
		}
		if err := m.NamedDiff(ctx, "changes", svc.Tables...); err != nil {
			return err
		}
		files, err := dir.Files()
		if err != nil {
			return err
		}
		for _, f := range files {
			out = append(out, f.Bytes()...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrategen: %s: diff: %w", svc.Name, err)
	}
	return out, nil
}

// Generator writes new migration files.
type Generator struct {
	root     string
	adminURL string
	now      func() time.Time
}

// Option configures New.
type Option func(*Generator)

// WithClock replaces the clock that versions new files.
func WithClock(now func() time.Time) Option { return func(g *Generator) { g.now = now } }

// New returns a generator for the repository at root that makes its scratch PostgreSQL
// databases on the server adminURL names (its user must be allowed to create databases).
func New(root, adminURL string, opts ...Option) *Generator {
	g := &Generator{root: root, adminURL: adminURL, now: time.Now}
	for _, opt := range opts {
		opt(g)
	}
	return g
}

var migrationName = regexp.MustCompile(`^[a-z0-9_]+$`)

// Generate writes, for each dialect whose committed migrations do not reach svc's Ent schema,
// a migration named name that does, and returns the paths it wrote: none when the migrations
// are fresh. Files of both dialects written together share their version.
func (g *Generator) Generate(ctx context.Context, svc Service, name string) ([]string, error) {
	if !migrationName.MatchString(name) {
		return nil, fmt.Errorf("migrategen: the migration name %q must be lower-case letters, digits and underscores", name)
	}
	files := os.DirFS(svc.Dir(g.root))
	version := g.now().UTC().Format("20060102150405")
	plans := map[string][]byte{}
	for _, dialect := range Dialects() {
		existing, err := migrate.Read(files, dialect)
		if err != nil {
			return nil, err
		}
		if n := len(existing); n > 0 && !newer(version, existing[n-1].Version) {
			return nil, fmt.Errorf("migrategen: %s: the new version %s is not newer than %s; check the clock", svc.Name, version, existing[n-1].File)
		}
		plan, err := g.plan(ctx, svc, dialect, files)
		if err != nil {
			return nil, err
		}
		if len(plan) > 0 {
			plans[dialect] = plan
		}
	}
	var written []string
	for _, dialect := range Dialects() {
		plan, ok := plans[dialect]
		if !ok {
			continue
		}
		path := filepath.Join(svc.Dir(g.root), dialect, version+"_"+name+".sql")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("migrategen: %w", err)
		}
		header := fmt.Sprintf("-- %s: made by go tool task migrate:diff from the %s service's Ent schema.\n", name, svc.Name)
		if err := os.WriteFile(path, append([]byte(header), plan...), 0o644); err != nil {
			return nil, fmt.Errorf("migrategen: %w", err)
		}
		written = append(written, path)
	}
	return written, nil
}

// newer reports whether version a is greater than version b, both decimal.
func newer(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x > y
}

// plan applies the committed migrations to a scratch database of dialect and returns what
// Ent would still change.
func (g *Generator) plan(ctx context.Context, svc Service, dialect string, files fs.FS) ([]byte, error) {
	cfg, drop, err := g.scratch(ctx, svc, dialect)
	if err != nil {
		return nil, err
	}
	defer drop()
	db, err := database.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("migrategen: %s: open the %s scratch database: %w", svc.Name, dialect, err)
	}
	defer db.Close()
	if err := migrate.Apply(ctx, db, svc.Name, files); err != nil {
		return nil, fmt.Errorf("migrategen: apply the committed migrations: %w", err)
	}
	return Pending(ctx, db, svc)
}

// scratch makes an empty database of dialect for svc and returns its configuration and a
// function that removes it.
func (g *Generator) scratch(ctx context.Context, svc Service, dialect string) (config.Database, func(), error) {
	cfg := config.Database{Schema: svc.Name, MaxConns: 4, MaxConnLifetime: time.Hour, MaxConnIdleTime: time.Minute, ConnectTimeout: 10 * time.Second}
	if dialect == "sqlite" {
		dir, err := os.MkdirTemp("", "migrategen-")
		if err != nil {
			return cfg, nil, fmt.Errorf("migrategen: %w", err)
		}
		cfg.URL = config.NewSecret("sqlite://" + filepath.Join(dir, svc.Name+".db"))
		return cfg, func() { _ = os.RemoveAll(dir) }, nil
	}
	admin, err := url.Parse(g.adminURL)
	if err != nil || (admin.Scheme != "postgres" && admin.Scheme != "postgresql") {
		return cfg, nil, errors.New("migrategen: the PostgreSQL URL must be a postgres:// URL")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "basalt_migrategen_" + svc.Name + "_" + hex.EncodeToString(b[:])
	if err := adminExec(ctx, g.adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return cfg, nil, fmt.Errorf("migrategen: make a scratch PostgreSQL database on %s: %w", admin.Redacted(), err)
	}
	u := *admin
	u.Path = "/" + name
	cfg.URL = config.NewSecret(u.String())
	drop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, g.adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "migrategen: drop the scratch database %s: %v\n", name, err)
		}
	}
	return cfg, drop, nil
}

func adminExec(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// Stale describes, for a person, what a non-empty plan means and which task makes the
// migration that is missing.
func Stale(svc Service, dialect string, plan []byte) string {
	return fmt.Sprintf("the %s migrations of %s do not reach its Ent schema; run go tool task migrate:diff -- %s <name> and commit the new files. Still to migrate:\n%s",
		dialect, svc.Name, svc.Name, bytes.TrimSpace(plan))
}
