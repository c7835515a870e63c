// Package migrate applies versioned SQL migrations to a service's schema at start-up.
//
// A component (a service, or a kernel part such as the outbox) keeps its migrations in an
// fs.FS, usually embedded, with one folder per dialect: postgres/ and sqlite/. Each file is
// named <version>_<name>.sql, where the version is a decimal number (a UTC timestamp such as
// 20261124120000 for generated files) and the name is lower-case letters, digits and
// underscores. Files apply in the order of their versions.
//
// Applied migrations are recorded in the schema's basalt_schema_migrations table, one row per
// component and version with the file's name and SHA-256 checksum. Each pending migration runs
// in its own transaction together with its row, so a failed migration leaves neither its
// changes nor its record behind. Everything happens under DB.Migrate's lock, a PostgreSQL
// advisory lock per schema, so replicas that start together apply each version exactly once.
//
// On PostgreSQL migrations run as the schema's owner role, through the handle DB.Migrate gives,
// so the objects they make belong to the owner, and the service's runtime role gets on them
// only what the database package's default privileges give it. The runtime role may read the
// table of applied migrations but not write it, so the service's sessions cannot make a
// migration run again.
//
// Apply refuses to run, naming the file, when history and files disagree: an applied file was
// changed or removed, a file's version is older than the newest applied one, or two files
// share a version. Such a database needs a person, not a guess.
package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/basaltplatform/basalt/kernel/database"
)

// Table is the name of the table that records applied migrations.
const Table = "basalt_schema_migrations"

// Migration is one migration file.
type Migration struct {
	// Version orders migrations; it is the file name's decimal prefix, as written.
	Version string
	// Name is the file name's part after the version, without .sql.
	Name string
	// File is the file's name within its dialect folder.
	File string
	// SQL is the file's content.
	SQL []byte
	// Checksum is the hex SHA-256 of SQL.
	Checksum string
}

// Record is a row of the table of applied migrations.
type Record struct {
	Component string
	Version   string
	Name      string
	Checksum  string
}

// fileName is what a migration's file name must look like.
var fileName = regexp.MustCompile(`^([0-9]+)_([a-z0-9_]+)\.sql$`)

// DialectDir returns the folder that holds the migrations for an Ent dialect name.
func DialectDir(dialect string) (string, error) {
	switch dialect {
	case "postgres":
		return "postgres", nil
	case "sqlite3", "sqlite":
		return "sqlite", nil
	default:
		return "", fmt.Errorf("migrate: no migrations for dialect %q", dialect)
	}
}

// Read returns the migrations of dir in files, in the order they apply. It fails, naming the
// file, on a file whose name is not <version>_<name>.sql and on two files with one version.
// A missing dir holds no migrations.
func Read(files fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(files, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		m := fileName.FindStringSubmatch(name)
		if e.IsDir() || m == nil {
			return nil, fmt.Errorf("migrate: %s: not a migration file: its name must be <version>_<name>.sql (digits, then lower-case letters, digits and underscores)", path.Join(dir, name))
		}
		body, err := fs.ReadFile(files, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		sum := sha256.Sum256(body)
		out = append(out, Migration{Version: m[1], Name: m[2], File: name, SQL: body, Checksum: hex.EncodeToString(sum[:])})
	}
	sort.SliceStable(out, func(i, j int) bool { return compareVersions(out[i].Version, out[j].Version) < 0 })
	for i := 1; i < len(out); i++ {
		if compareVersions(out[i-1].Version, out[i].Version) == 0 {
			return nil, fmt.Errorf("migrate: %s and %s have the same version; give one of them a new version", path.Join(dir, out[i-1].File), path.Join(dir, out[i].File))
		}
	}
	return out, nil
}

// compareVersions compares two decimal versions by value, so 9 comes before 10 and 010
// equals 10.
func compareVersions(a, b string) int {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	return x.Cmp(y)
}

type options struct {
	log *slog.Logger
}

// Option configures Apply.
type Option func(*options)

// WithLogger logs each migration Apply runs.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Apply brings component's part of db's schema up to date with the migrations in files, under
// the schema's migration lock; see the package documentation.
func Apply(ctx context.Context, db *database.DB, component string, files fs.FS, opts ...Option) error {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := DialectDir(db.Dialect())
	if err != nil {
		return err
	}
	migrations, err := Read(files, dir)
	if err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	return db.Migrate(ctx, func(ctx context.Context, owner *sql.DB) error {
		if err := createTable(ctx, db, owner); err != nil {
			return err
		}
		applied, err := applied(ctx, db, owner, component)
		if err != nil {
			return err
		}
		pending, err := pendingOf(component, dir, migrations, applied)
		if err != nil {
			return err
		}
		for _, m := range pending {
			if err := run(ctx, db, owner, component, m); err != nil {
				return fmt.Errorf("migrate: %s: %s: %w%s", component, path.Join(dir, m.File), err, hint(applied, err))
			}
			o.log.Info("schema migration applied", "component", component, "version", m.Version, "name", m.Name, "schema", db.Schema())
		}
		return nil
	})
}

// pendingOf checks the applied records against the files and returns the files still to apply.
func pendingOf(component, dir string, migrations []Migration, applied []Record) ([]Migration, error) {
	byVersion := make(map[string]Migration, len(migrations))
	for _, m := range migrations {
		byVersion[canonical(m.Version)] = m
	}
	done := make(map[string]bool, len(applied))
	latest := ""
	for _, r := range applied {
		file := r.Version + "_" + r.Name + ".sql"
		m, ok := byVersion[canonical(r.Version)]
		switch {
		case !ok:
			return nil, fmt.Errorf("migrate: %s: %s was applied to this database but the file is missing; restore it", component, path.Join(dir, file))
		case m.Name != r.Name:
			return nil, fmt.Errorf("migrate: %s: %s was applied as %s; restore its name", component, path.Join(dir, m.File), file)
		case m.Checksum != r.Checksum:
			return nil, fmt.Errorf("migrate: %s: %s changed after it was applied to this database (checksum %s, applied %s); restore it and put the change in a new migration", component, path.Join(dir, m.File), m.Checksum, r.Checksum)
		}
		done[canonical(r.Version)] = true
		if latest == "" || compareVersions(r.Version, latest) > 0 {
			latest = r.Version
		}
	}
	var pending []Migration
	for _, m := range migrations {
		if done[canonical(m.Version)] {
			continue
		}
		if latest != "" && compareVersions(m.Version, latest) < 0 {
			return nil, fmt.Errorf("migrate: %s: %s is older than %s, the newest migration applied to this database; give it a newer version", component, path.Join(dir, m.File), latest)
		}
		pending = append(pending, m)
	}
	return pending, nil
}

// hint explains the likeliest cause of a first migration that finds its objects already there:
// a schema made before migrations were versioned, which this package does not adopt.
func hint(applied []Record, err error) string {
	if len(applied) > 0 || !strings.Contains(err.Error(), "already exists") {
		return ""
	}
	return " (the schema holds objects that no recorded migration made: it was probably made before migrations were versioned; recreate it, or record its migrations by hand)"
}

// canonical drops a version's leading zeros, so that 010 and 10 are one version.
func canonical(v string) string {
	n, _ := new(big.Int).SetString(v, 10)
	return n.String()
}

// run applies one migration as the owner and records it in the same transaction.
func run(ctx context.Context, db *database.DB, owner *sql.DB, component string, m Migration) error {
	tx, err := owner.BeginTx(ctx, nil)
	if err != nil {
		return database.Translate(err)
	}
	defer tx.Rollback() //nolint:errcheck // A rollback after commit is a no-op.
	if _, err := tx.ExecContext(ctx, string(m.SQL)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO `+Table+` (component, version, name, checksum) VALUES (?, ?, ?, ?)`),
		component, m.Version, m.Name, m.Checksum); err != nil {
		return database.Translate(err)
	}
	return database.Translate(tx.Commit())
}

// Applied returns the migrations of component recorded in db, oldest first. It returns none
// when the table of applied migrations does not exist yet.
func Applied(ctx context.Context, db *database.DB, component string) ([]Record, error) {
	return applied(ctx, db, db.SQL(), component)
}

// applied reads the records of component in db through q.
func applied(ctx context.Context, db *database.DB, q *sql.DB, component string) ([]Record, error) {
	rows, err := q.QueryContext(ctx, db.Rebind(`SELECT component, version, name, checksum FROM `+Table+` WHERE component = ?`), component)
	if err != nil {
		if missingTable(ctx, db, q) {
			return nil, nil
		}
		return nil, fmt.Errorf("migrate: read %s: %w", Table, database.Translate(err))
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		if err := rows.Scan(&r.Component, &r.Version, &r.Name, &r.Checksum); err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", Table, database.Translate(err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", Table, database.Translate(err))
	}
	sort.SliceStable(out, func(i, j int) bool { return compareVersions(out[i].Version, out[j].Version) < 0 })
	return out, nil
}

// missingTable reports whether the table of applied migrations is absent from db's schema.
func missingTable(ctx context.Context, db *database.DB, q *sql.DB) bool {
	query := `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if db.Dialect() == "postgres" {
		query = `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?`
	}
	var n int
	err := q.QueryRowContext(ctx, db.Rebind(query), Table).Scan(&n)
	return err == nil && n == 0
}

// createTable makes the table of applied migrations if it is missing, as the owner, and leaves
// the runtime role only reading it: the default privileges gave it more, and a schema adopted
// from before the runtime role existed gave it what the owner holds.
func createTable(ctx context.Context, db *database.DB, owner *sql.DB) error {
	appliedAt := `applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`
	if db.Dialect() == "postgres" {
		appliedAt = `applied_at timestamptz NOT NULL DEFAULT now()`
	}
	stmts := []string{`CREATE TABLE IF NOT EXISTS ` + Table + ` (
		component text NOT NULL,
		version text NOT NULL,
		name text NOT NULL,
		checksum text NOT NULL,
		` + appliedAt + `,
		PRIMARY KEY (component, version)
	)`}
	if db.Dialect() == "postgres" {
		stmts = append(stmts, `REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON `+Table+` FROM `+pgx.Identifier{db.Role()}.Sanitize())
	}
	for _, stmt := range stmts {
		if _, err := owner.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate: create %s: %w", Table, database.Translate(err))
		}
	}
	return nil
}
