// Package database opens a service's own pool of database connections and gives Ent a driver
// over it: PostgreSQL through pgx, with the service's own schema and roles, or SQLite through a
// pure-Go driver for the embedded default.
//
// On PostgreSQL each service has a schema and two roles of its own. The owner role
// (basalt_<schema>) owns the schema and every object in it, and migrations run as it. The
// runtime role (basalt_<schema>_app) is what the service's sessions run as: it may use the
// schema and read and write its tables, but it owns nothing, so it can neither alter, drop nor
// truncate a table, nor disable a trigger, nor grant itself a privilege a migration took away.
// Every session's search_path is the service's schema, and the schema is closed to everyone
// else, so a service's sessions get "permission denied" on another service's tables.
//
// How far the split holds depends on the login. When one login does everything (the
// development default), the sessions' login may also act as the owner, so a session that
// leaves the runtime role (SET ROLE NONE) can; the split then guards against the service's
// own mistakes. With a separate owner login (config.Database.OwnerURL) whose runtime login is
// a member of the runtime role only, nothing a session does can reach the owner's rights.
//
// Given telemetry (WithTelemetry), every PostgreSQL statement a traced request runs is a client
// span under the request's span, with the OpenTelemetry database conventions (db.system.name,
// db.namespace, db.operation.name, db.query.text, server.address and server.port) and never the
// statement's arguments, and the pool reports its state as metrics. Statements on SQLite, the
// embedded default, are not traced.
package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	_ "modernc.org/sqlite" // The pure-Go SQLite driver, registered as "sqlite".

	"github.com/basaltplatform/basalt/kernel/config"
)

// DB is a service's database handle.
type DB struct {
	sql     *sql.DB
	pool    *pgxpool.Pool
	dialect string
	schema  string
	roles   roles
	// owner is how Migrate connects on PostgreSQL: the owner login, running as the owner role
	// in the service's schema.
	owner *pgx.ConnConfig
}

type options struct {
	log         *slog.Logger
	application string
	tel         Telemetry
}

// Telemetry is what Open needs to trace statements and report the pool; the process's
// telemetry.Telemetry has it.
type Telemetry interface {
	TracerProvider() trace.TracerProvider
	MeterProvider() metric.MeterProvider
}

// Option configures Open.
type Option func(*options)

// WithLogger sets the logger for provisioning messages.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithApplicationName sets the application_name PostgreSQL shows in pg_stat_activity.
func WithApplicationName(name string) Option { return func(o *options) { o.application = name } }

// WithTelemetry traces the statements of traced requests and reports the pool's state with t's
// providers (PostgreSQL only).
func WithTelemetry(t Telemetry) Option { return func(o *options) { o.tel = t } }

// Open connects to the database cfg names, provisions the service's schema and roles on
// PostgreSQL, and returns a handle whose sessions are confined to that schema.
func Open(ctx context.Context, cfg config.Database, opts ...Option) (*DB, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	raw := cfg.URL.Reveal()
	switch {
	case cfg.IsPostgres():
		return openPostgres(ctx, cfg, o)
	case strings.HasPrefix(raw, "sqlite://"):
		return openSQLite(ctx, strings.TrimPrefix(raw, "sqlite://"), cfg)
	default:
		return nil, errors.New("database: the URL must start with postgres://, postgresql:// or sqlite://")
	}
}

func openPostgres(ctx context.Context, cfg config.Database, o options) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL.Reveal())
	if err != nil {
		// The parse error may quote the URL, password included; keep it out of the message.
		return nil, errors.New("database: DATABASE_URL is not a valid PostgreSQL URL")
	}
	pcfg.MaxConns = int32(cfg.MaxConns)
	pcfg.MinConns = int32(cfg.MinConns)
	pcfg.MaxConnLifetime = cfg.MaxConnLifetime
	pcfg.MaxConnLifetimeJitter = cfg.MaxConnLifetime / 10
	pcfg.MaxConnIdleTime = cfg.MaxConnIdleTime
	pcfg.HealthCheckPeriod = 30 * time.Second
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout

	owner := pcfg.ConnConfig.Copy()
	if cfg.OwnerURL.IsSet() {
		if owner, err = pgx.ParseConfig(cfg.OwnerURL.Reveal()); err != nil {
			return nil, errors.New("database: BASALT_DATABASE_OWNER_URL is not a valid PostgreSQL URL")
		}
		owner.ConnectTimeout = cfg.ConnectTimeout
	}
	rs, err := provision(ctx, owner.Copy(), provisioning{
		schema:      cfg.Schema,
		owner:       cfg.OwnerRole,
		app:         cfg.AppRole,
		appLogin:    pcfg.ConnConfig.User,
		ownLoginApp: !cfg.OwnerURL.IsSet(),
	}, o.log)
	if err != nil {
		return nil, err
	}
	sessionParams(owner, cfg.Schema, rs.owner, rs.ownerLogin, o.application)
	sessionParams(pcfg.ConnConfig, cfg.Schema, rs.app, pcfg.ConnConfig.User, o.application)
	if o.tel != nil {
		// Only the service's own sessions are traced: provisioning and migrations run at
		// start-up, outside any request.
		pcfg.ConnConfig.Tracer = statementTracer(o.tel, pcfg.ConnConfig, cfg.Schema)
	}
	// When the server ends one of our sessions (pg_terminate_backend, a restart, a fail-over),
	// the others are usually gone too, but each would only find out when next used, failing
	// one more request. Resetting the pool on the first such error closes them all at once;
	// in-flight queries finish first.
	var pool *pgxpool.Pool
	defaultOnPgError := pcfg.ConnConfig.OnPgError
	pcfg.ConnConfig.OnPgError = func(c *pgconn.PgConn, pgErr *pgconn.PgError) bool {
		if serverEndedSession(pgErr.Code) && pool != nil {
			pool.Reset()
		}
		if defaultOnPgError != nil {
			return defaultOnPgError(c, pgErr)
		}
		return !strings.EqualFold(pgErr.Severity, "FATAL")
	}
	pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, Translate(err)
	}
	db := &DB{sql: stdlib.OpenDBFromPool(pool), pool: pool, dialect: dialect.Postgres, schema: cfg.Schema, roles: rs, owner: owner}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if o.tel != nil {
		if err := otelpgx.RecordStats(pool, otelpgx.WithStatsMeterProvider(o.tel.MeterProvider())); err != nil {
			db.Close()
			return nil, fmt.Errorf("database: pool metrics: %w", err)
		}
	}
	return db, nil
}

// statementTracer makes a span of each statement a traced request runs, named by its operation
// (SELECT, INSERT, ...). db.query.text is the statement as the code wrote it, with placeholders:
// the arguments, which may be passwords or personal data, are never recorded. Connection
// details are set here rather than by otelpgx, which would name the login and, as db.namespace,
// only the database; PostgreSQL's conventions want the schema qualified by the database. Pool
// acquisitions get no span of their own: every statement through database/sql acquires one,
// which would double the spans, and the pool's metrics show the waits.
func statementTracer(tel Telemetry, cc *pgx.ConnConfig, schema string) pgx.QueryTracer {
	return redactingTracer{otelpgx.NewTracer(
		otelpgx.WithTracerProvider(tel.TracerProvider()),
		otelpgx.WithMeterProvider(tel.MeterProvider()),
		otelpgx.WithDisableConnectionDetailsInAttributes(),
		otelpgx.WithDisableAcquireTracer(),
		otelpgx.WithTracerAttributes(
			semconv.ServerAddress(cc.Host),
			semconv.ServerPort(int(cc.Port)),
			semconv.DBNamespace(cc.Database+"."+schema),
		),
	)}
}

// redactingTracer is otelpgx's tracer, given errors without their messages: PostgreSQL quotes
// an argument it cannot parse ("invalid input syntax for type uuid: ...") and pgx one it cannot
// encode, and a span must not carry what the statement's arguments held. The caller still gets
// the whole error.
type redactingTracer struct{ *otelpgx.Tracer }

func (t redactingTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	d.Err = spanError(d.Err)
	t.Tracer.TraceQueryEnd(ctx, c, d)
}

func (t redactingTracer) TraceBatchQuery(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	d.Err = spanError(d.Err)
	t.Tracer.TraceBatchQuery(ctx, c, d)
}

func (t redactingTracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	d.Err = spanError(d.Err)
	t.Tracer.TraceBatchEnd(ctx, c, d)
}

func (t redactingTracer) TraceCopyFromEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromEndData) {
	d.Err = spanError(d.Err)
	t.Tracer.TraceCopyFromEnd(ctx, c, d)
}

func (t redactingTracer) TracePrepareEnd(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareEndData) {
	d.Err = spanError(d.Err)
	t.Tracer.TracePrepareEnd(ctx, c, d)
}

// errStatementFailed stands in a span for an error that is neither PostgreSQL's nor a
// cancellation.
var errStatementFailed = errors.New("database: the statement failed")

// spanError is what a span records of a statement's error: PostgreSQL's SQLSTATE, or the
// cancellation, but no message. No rows is passed on as it is, which otelpgx does not count as
// an error.
func spanError(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil, errors.Is(err, sql.ErrNoRows):
		return err
	case errors.As(err, &pgErr):
		return &pgconn.PgError{Severity: pgErr.Severity, Code: pgErr.Code, Message: "the statement failed"}
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	default:
		return errStatementFailed
	}
}

// sessionParams makes every session of cc start in schema, as role unless the login is that
// role already. Startup parameters cost no round trip.
func sessionParams(cc *pgx.ConnConfig, schema, role, login, application string) {
	cc.RuntimeParams["search_path"] = schema
	if role != login {
		cc.RuntimeParams["role"] = role
	}
	if application != "" {
		cc.RuntimeParams["application_name"] = application
	}
}

func openSQLite(ctx context.Context, path string, cfg config.Database) (*DB, error) {
	if path == "" {
		return nil, errors.New("database: sqlite:// needs a file path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	// WAL lets readers run beside the writer; _txlock=immediate takes the write lock when a
	// transaction begins, so two writers queue on busy_timeout instead of deadlocking when
	// both try to upgrade a read lock.
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	sdb.SetMaxOpenConns(cfg.MaxConns)
	db := &DB{sql: sdb, dialect: dialect.SQLite, schema: cfg.Schema}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// SQL returns the database/sql handle.
func (db *DB) SQL() *sql.DB { return db.sql }

// Driver returns an Ent driver over the handle.
func (db *DB) Driver() *entsql.Driver { return entsql.OpenDB(db.dialect, db.sql) }

// Dialect returns the Ent dialect name ("postgres" or "sqlite3").
func (db *DB) Dialect() string { return db.dialect }

// Schema returns the schema the service owns.
func (db *DB) Schema() string { return db.schema }

// Role returns the PostgreSQL role the service's sessions run as ("" on SQLite).
func (db *DB) Role() string { return db.roles.app }

// OwnerRole returns the PostgreSQL role that owns the schema and runs migrations ("" on
// SQLite).
func (db *DB) OwnerRole() string { return db.roles.owner }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	return Translate(db.sql.PingContext(ctx))
}

// Close closes every connection.
func (db *DB) Close() {
	_ = db.sql.Close()
	if db.pool != nil {
		db.pool.Close()
	}
}

// migrateMu serialises migrations within one process. A SQLite file has no advisory lock, so
// two migrations of one file in one process would otherwise both find a version pending; and
// Ent's generated migrate package keeps its table definitions in package variables that its
// schema diff mutates, so tools that diff several databases in one process must not overlap.
var migrateMu sync.Mutex

// Migrate runs fn while holding a lock that only one process per schema can hold, so that
// several replicas starting at once migrate one after another instead of racing. fn gets owner,
// a handle whose sessions run as the schema's owner role, for what the service's own sessions
// may not do: creating and changing tables, granting and revoking. On PostgreSQL owner logs in
// for the call only and is closed when fn returns; on SQLite it is the service's own handle.
func (db *DB) Migrate(ctx context.Context, fn func(ctx context.Context, owner *sql.DB) error) error {
	migrateMu.Lock()
	defer migrateMu.Unlock()
	if db.pool == nil {
		// One process owns a SQLite file; there is nobody to race with.
		return fn(ctx, db.sql)
	}
	owner := stdlib.OpenDB(*db.owner.Copy())
	defer owner.Close()
	// One connection holds the lock, the others do fn's work; migrations need one at a time.
	owner.SetMaxOpenConns(4)
	conn, err := owner.Conn(ctx)
	if err != nil {
		return Translate(err)
	}
	defer conn.Close()
	key := "basalt.migrate." + db.schema
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
		return Translate(err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key)
	}()
	return fn(ctx, owner)
}

// Execer is what LockTx needs of a transaction: Ent's Tx has it with the sql/execquery feature.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// LockTx serialises transactions that pass the same key: the lock is held until tx ends. On
// SQLite every transaction already holds the database's write lock from its start.
func (db *DB) LockTx(ctx context.Context, tx Execer, key string) error {
	if db.dialect != dialect.Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, db.schema+"."+key)
	return Translate(err)
}

// Rebind turns the ? placeholders of a query into PostgreSQL's $1, $2, ... when the handle is
// PostgreSQL, so hand-written SQL can serve both dialects. It does not look inside quotes:
// queries that pass it must not contain literal question marks.
func (db *DB) Rebind(query string) string {
	if db.dialect != dialect.Postgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// serverEndedSession reports the SQLSTATEs with which the server ends sessions it shuts down:
// admin_shutdown, crash_shutdown and cannot_connect_now.
func serverEndedSession(code string) bool {
	return code == "57P01" || code == "57P02" || code == "57P03"
}

func isPgCode(err error, codes ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	for _, c := range codes {
		if pgErr.Code == c {
			return true
		}
	}
	return false
}
