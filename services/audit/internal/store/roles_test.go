package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/migrations"
)

// refusedToTheService checks that each statement fails on db's sessions for lack of privilege
// or ownership. The append-only triggers answer with the same code, so their message must not
// be the one: the privileges must refuse first, and the triggers stay a second line.
func refusedToTheService(t *testing.T, db *database.DB, stmts ...string) {
	t.Helper()
	for _, stmt := range stmts {
		_, err := db.SQL().ExecContext(context.Background(), stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" || strings.Contains(pgErr.Message, "append-only") {
			t.Errorf("%s: error %v, want a privilege refused before any trigger ran", stmt, err)
		}
	}
}

// logPrivileges returns, for each of the log's tables, the privileges role holds on it, as
// db's sessions see them: has_table_privilege needs no privilege of its own.
func logPrivileges(t *testing.T, db *database.DB, role string) string {
	t.Helper()
	var out []string
	for _, table := range []string{"events", "checkpoints"} {
		var got string
		err := db.SQL().QueryRowContext(context.Background(), `SELECT coalesce(string_agg(p, ',' ORDER BY p), '') FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p WHERE has_table_privilege($1, $2, p)`,
			role, db.Schema()+"."+table).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, table+":"+got)
	}
	return strings.Join(out, " ")
}

// rewrites are what someone holding the audit service's sessions would try, to change the log
// or to gain the right to: each must fail for lack of privilege.
var rewrites = []string{
	`UPDATE events SET actor_subject = 'someone-else'`,
	`DELETE FROM events`,
	`TRUNCATE events`,
	`UPDATE checkpoints SET signature = '\x00'`,
	`DELETE FROM checkpoints`,
	`TRUNCATE checkpoints`,
	`ALTER TABLE events DISABLE TRIGGER events_no_update_delete`,
	`ALTER TABLE events DISABLE TRIGGER ALL`,
	`ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_no_update_delete`,
	`DROP TRIGGER events_no_update_delete ON events`,
	`CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$`,
	`ALTER TABLE events ADD COLUMN note text`,
	`DROP TABLE events`,
	`CREATE TABLE events_copy AS SELECT * FROM events`,
}

// TestTheServicesRoleCannotRewriteTheLog checks that, as the audit service's own sessions,
// nothing changes an event or a checkpoint: not UPDATE, DELETE or TRUNCATE, not disabling or
// dropping the triggers, not granting the missing privileges to itself; that the sessions hold
// exactly SELECT and INSERT on the log; and that the log still verifies. It runs with the one
// login of the development default and with a runtime login of the service's own, as
// production runs.
func TestTheServicesRoleCannotRewriteTheLog(t *testing.T) {
	t.Parallel()
	setups := map[string]func(t *testing.T) config.Database{
		"one login": func(t *testing.T) config.Database { return testkit.Database(t, "rewrite") },
		"runtime login": func(t *testing.T) config.Database {
			cfg := testkit.Database(t, "rewrite")
			cfg.AppRole = testkit.Role(t, "audit_app", "LOGIN")
			cfg.OwnerURL, cfg.URL = cfg.URL, testkit.LoginURL(t, cfg.AppRole)
			return cfg
		},
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := setup(t)
			st, db := open(t, cfg)
			appendPairs(t, st, 2)
			refusedToTheService(t, db, rewrites...)
			self := pgx.Identifier{db.Role()}.Sanitize()
			// GRANT without the grant option only warns; what counts is that nothing changed.
			for _, grant := range []string{
				`GRANT UPDATE, DELETE, TRUNCATE ON events, checkpoints TO ` + self,
				`GRANT ALL ON events, checkpoints TO ` + self,
			} {
				if _, err := db.SQL().Exec(grant); err != nil {
					var pgErr *pgconn.PgError
					if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
						t.Errorf("%s: %v", grant, err)
					}
				}
			}
			if got, want := logPrivileges(t, db, db.Role()), "events:INSERT,SELECT checkpoints:INSERT,SELECT"; got != want {
				t.Fatalf("the service's role holds %s, want %s", got, want)
			}
			refusedToTheService(t, db, rewrites[:6]...)
			if n := verify(t, st); n != 4 {
				t.Fatalf("log holds %d events, want 4", n)
			}
		})
	}
}

// oldLayout makes an audit schema as the service had it while its sessions ran as the role
// that owns the tables: the role and schema as the database package then made them, the first
// two migrations applied as that role, and three events with a checkpoint already in the log.
func oldLayout(t *testing.T, schema string) {
	t.Helper()
	role := "basalt_" + schema
	testkit.Exec(t, `DO $$ BEGIN CREATE ROLE `+role+` NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	testkit.Exec(t, `CREATE SCHEMA `+schema+`; GRANT USAGE, CREATE ON SCHEMA `+schema+` TO `+role+`; REVOKE ALL ON SCHEMA `+schema+` FROM PUBLIC`)
	files, err := migrate.Read(migrations.Files, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	history := `CREATE TABLE IF NOT EXISTS ` + migrate.Table + ` (component text NOT NULL, version text NOT NULL, name text NOT NULL,
		checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))`
	for _, m := range files[:2] {
		if m.Name != "init" && m.Name != "append_only" {
			t.Fatalf("the log's first migrations are %s, not init and append_only", m.File)
		}
		testkit.Exec(t, `SET ROLE `+role+`; SET search_path = `+schema+`; `+history+`; `+string(m.SQL)+`;
			INSERT INTO `+migrate.Table+` VALUES ('audit', '`+m.Version+`', '`+m.Name+`', '`+m.Checksum+`')`)
	}
	prev := chain.Genesis
	for seq := int64(1); seq <= 3; seq++ {
		e := entry("auth.login")
		e.Metadata, e.Sequence = nil, seq
		h := chain.Hash(prev, e)
		testkit.Exec(t, `INSERT INTO `+schema+`.events (id, sequence, time, service, action, outcome, actor_subject, actor_ip, actor_user_agent, resource_type, resource_id, request_id, trace_id, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			e.ID, e.Sequence, e.Time, e.Service, e.Action, e.Outcome, e.ActorSubject, e.ActorIP, e.ActorUserAgent, e.ResourceType, e.ResourceID, e.RequestID, e.TraceID, prev, h)
		prev = h
	}
	cp := signer(t).Sign(3, prev, time.Now().UTC().Truncate(time.Microsecond))
	testkit.Exec(t, `INSERT INTO `+schema+`.checkpoints (sequence, head_hash, time, key_id, signature) VALUES ($1, $2, $3, $4, $5)`,
		cp.Sequence, cp.HeadHash, cp.Time, cp.KeyID, cp.Signature)
}

// TestUpgradeFromTheOneRoleLayout starts the audit service on a log made while its sessions ran
// as the tables' owner: the log keeps its owner and its events, verifies, takes appends, and
// the sessions can no longer rewrite it.
func TestUpgradeFromTheOneRoleLayout(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "upgrade")
	oldLayout(t, cfg.Schema)
	st, db := open(t, cfg)
	if got := versions(t, db); got != "init,append_only,runtime_role" {
		t.Fatalf("applied = %s, want init,append_only,runtime_role", got)
	}
	if _, err := st.Append(context.Background(), []chain.Entry{entry("auth.logout")}); err != nil {
		t.Fatal(err)
	}
	if n := verify(t, st); n != 4 {
		t.Fatalf("log holds %d events after the upgrade, want 3 from before and 1 after", n)
	}
	refusedToTheService(t, db, rewrites...)
	if got, want := logPrivileges(t, db, db.Role()), "events:INSERT,SELECT checkpoints:INSERT,SELECT"; got != want {
		t.Fatalf("the service's role holds %s, want %s", got, want)
	}
	if n := testkit.QueryInt(t, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tableowner = $2`, cfg.Schema, "basalt_"+cfg.Schema); n != 3 {
		t.Fatalf("%d of 3 tables still owned by the old role; an upgrade must not move ownership", n)
	}
}

// versions returns the names of the audit migrations applied to db, oldest first.
func versions(t *testing.T, db *database.DB) string {
	t.Helper()
	records, err := migrate.Applied(context.Background(), db, "audit")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range records {
		names = append(names, r.Name)
	}
	return strings.Join(names, ",")
}
