package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/basaltplatform/basalt/kernel/config"
)

var (
	pgOnce sync.Once
	pgURL  string
	pgErr  error
)

// dbPrefix starts every test database's name; the creating process's pid follows, so that a
// later run can drop the databases of runs that crashed before cleaning up.
const dbPrefix = "basalt_test_"

// DatabaseURL returns the URL of this test package's own PostgreSQL database, created on first
// use and dropped when the package's tests end.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		pgURL, pgErr = createDatabase()
		if pgErr == nil {
			name := strings.TrimPrefix(mustParse(pgURL).Path, "/")
			atExit(t, func() { dropDatabase(name) })
		}
	})
	Require(t, "PostgreSQL", pgErr)
	return pgURL
}

var schemaSeq atomic.Int64

// Database returns the configuration of a new schema in this package's database, named base
// and a number unique in this process, with a small pool. Every call gives a fresh schema, so
// tests may run in parallel and repeatedly (-count); open several handles on one schema by
// reusing the returned configuration.
func Database(t testing.TB, base string) config.Database {
	t.Helper()
	return config.Database{
		URL:             config.NewSecret(DatabaseURL(t)),
		Schema:          fmt.Sprintf("%s_%d", base, schemaSeq.Add(1)),
		MaxConns:        8,
		MaxConnLifetime: time.Hour,
		MaxConnIdleTime: time.Minute,
		ConnectTimeout:  5 * time.Second,
	}
}

// Exec runs SQL on this package's database as the admin user, for tests that must reach
// around a service (killing its connections, tampering with its tables).
func Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	withAdmin(t, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	}, sql)
}

// QueryInt runs a query that returns one integer on this package's database as the admin user.
func QueryInt(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	withAdmin(t, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(&n)
	}, sql)
	return n
}

// Role creates a cluster-wide role for one test, named t_<base>_ and a random suffix, with
// attributes such as "LOGIN" or "NOLOGIN IN ROLE other", and drops it when the test ends, with
// whatever it owns or was granted in this package's database.
func Role(t testing.TB, base, attributes string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "t_" + base + "_" + hex.EncodeToString(b[:])
	Exec(t, `CREATE ROLE `+name+` `+attributes)
	t.Cleanup(func() { Exec(t, LockACL+`; DROP OWNED BY `+name+` CASCADE; DROP ROLE `+name) })
	return name
}

// LockACL is a statement that serialises, until its transaction ends, the tests of a package
// that change the database's own privileges: PostgreSQL fails two concurrent changes of one
// object's privileges with "tuple concurrently updated". Run it first in the same transaction
// (one Exec of several statements is one).
const LockACL = `SELECT pg_advisory_xact_lock(hashtextextended('basalt.testkit.acl', 0))`

// LoginURL returns the URL of this package's database with user as the login, for tests of
// what a service's sessions may do when they log in as a role of their own.
func LoginURL(t testing.TB, user string) config.Secret {
	t.Helper()
	u := mustParse(DatabaseURL(t))
	u.User = url.User(user)
	return config.NewSecret(u.String())
}

func withAdmin(t testing.TB, fn func(context.Context, *pgx.Conn) error, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DatabaseURL(t))
	if err != nil {
		t.Fatalf("testkit: connect: %v", err)
	}
	defer conn.Close(ctx)
	if err := fn(ctx, conn); err != nil {
		t.Fatalf("testkit: %s: %v", sql, err)
	}
}

func createDatabase() (string, error) {
	admin := Env().AdminURL
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(admin), err)
	}
	defer conn.Close(ctx)
	dropStale(ctx, conn)

	var b [4]byte
	_, _ = rand.Read(b[:])
	name := dbPrefix + packageName() + "_" + strconv.Itoa(os.Getpid()) + "_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u := mustParse(admin)
	u.Path = "/" + name
	return u.String(), nil
}

func dropDatabase(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, Env().AdminURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testkit: drop %s: %v\n", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		fmt.Fprintf(os.Stderr, "testkit: drop %s: %v\n", name, err)
	}
}

var staleName = regexp.MustCompile(`^` + dbPrefix + `[a-z0-9_]*?_(\d+)_[0-9a-f]{8}$`)

// dropStale drops test databases whose creating process no longer exists on this machine.
func dropStale(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'basalt\_test\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid <= 0 || running(pid) {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

func packageName() string {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	name = nonIdent.ReplaceAllString(strings.ToLower(name), "")
	if len(name) > 20 {
		name = name[:20]
	}
	if name == "" {
		name = "pkg"
	}
	return name
}

func mustParse(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(fmt.Sprintf("testkit: %s is not a URL", redact(raw)))
	}
	return u
}

// redact hides a password in a URL, for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the database URL"
	}
	return u.Redacted()
}
