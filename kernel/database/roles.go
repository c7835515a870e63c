package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
)

// roles are the two PostgreSQL roles of a service's schema.
type roles struct {
	// owner owns the schema and its objects; migrations run as it.
	owner string
	// app is what the service's sessions run as.
	app string
	// ownerLogin is the user the owner's connections log in as: owner itself or a member.
	ownerLogin string
}

// provisioning is what provision needs to know besides the owner's connection.
type provisioning struct {
	schema string
	// owner and app are the configured role names; empty means the defaults.
	owner, app string
	// appLogin is the user the service's sessions log in as.
	appLogin string
	// ownLoginApp is true when the sessions log in as the owner's login (one URL for both).
	ownLoginApp bool
}

// provision makes the service's schema and roles ready, on a connection of the owner's login:
//
//   - the owner role (basalt_<schema>) and the runtime role (basalt_<schema>_app), created when
//     the login may create roles and required to exist otherwise, with checks that the runtime
//     role can never act as the owner;
//   - the schema, owned by the owner role when provision makes it, usable by the runtime role
//     and by nobody else;
//   - default privileges by which every table and sequence the owner makes in the schema gives
//     the runtime role what reading and writing rows needs, and nothing more.
//
// A schema whose tables were made before the runtime role existed (its owner was then also
// what the sessions ran as) is adopted once: the runtime role gets, on each table, the row
// privileges the table's owner holds itself. A privilege a migration revoked from the owner,
// such as UPDATE on the audit log, is thus not handed to the runtime role either.
func provision(ctx context.Context, cc *pgx.ConnConfig, p provisioning, log *slog.Logger) (roles, error) {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return roles{}, Translate(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	rs := roles{owner: p.owner, app: p.app}
	if rs.owner == "" {
		rs.owner = "basalt_" + p.schema
	}
	if rs.app == "" {
		rs.app = "basalt_" + p.schema + "_app"
	}
	if rs.owner == rs.app {
		return roles{}, fmt.Errorf("database: the runtime role %s must differ from the owner role", rs.app)
	}
	var superuser, canCreateRoles bool
	if err := conn.QueryRow(ctx, `SELECT session_user, rolsuper, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = session_user`).
		Scan(&rs.ownerLogin, &superuser, &canCreateRoles); err != nil {
		return roles{}, Translate(err)
	}
	if p.ownLoginApp {
		p.appLogin = rs.ownerLogin
	}
	if canCreateRoles {
		if err := createRoles(ctx, conn, rs, superuser, p.ownLoginApp); err != nil {
			return roles{}, err
		}
	}
	if err := checkRoles(ctx, conn, rs, p, log); err != nil {
		return roles{}, err
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return roles{}, Translate(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // A rollback after commit is a no-op.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('basalt.provision', 0))`); err != nil {
		return roles{}, Translate(err)
	}
	schema, owner, app := pgx.Identifier{p.schema}.Sanitize(), pgx.Identifier{rs.owner}.Sanitize(), pgx.Identifier{rs.app}.Sanitize()
	// The schema is looked up before it is created because CREATE SCHEMA IF NOT EXISTS needs
	// CREATE on the database even when the schema is there, which an owner login in production
	// may well lack once an administrator has made the schema.
	var schemaOwner string
	err = tx.QueryRow(ctx, `SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1`, p.schema).Scan(&schemaOwner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+schema+` AUTHORIZATION `+owner); err != nil {
			return roles{}, Translate(err)
		}
	case err != nil:
		return roles{}, Translate(err)
	case schemaOwner != rs.owner:
		// A schema made before the owner role made its objects (by the login itself).
		if _, err := tx.Exec(ctx, `GRANT USAGE, CREATE ON SCHEMA `+schema+` TO `+owner); err != nil {
			return roles{}, Translate(err)
		}
	}
	for _, stmt := range []string{
		`GRANT USAGE ON SCHEMA ` + schema + ` TO ` + app,
		`REVOKE CREATE ON SCHEMA ` + schema + ` FROM ` + app,
		`REVOKE ALL ON SCHEMA ` + schema + ` FROM PUBLIC`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return roles{}, Translate(err)
		}
	}
	adopted, err := grantDefaults(ctx, tx, p.schema, rs)
	if err != nil {
		return roles{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return roles{}, Translate(err)
	}
	log.Debug("database schema provisioned", "schema", p.schema, "owner_role", rs.owner, "runtime_role", rs.app)
	if adopted > 0 {
		log.Info("database: the runtime role was given the rows of the schema's existing tables", "schema", p.schema, "runtime_role", rs.app, "objects", adopted)
	}
	return rs, nil
}

// createRoles creates the owner and runtime roles when missing, without LOGIN, and makes the
// login a member of those it must switch to: the owner always, the runtime role when the
// sessions log in as this login too. A superuser needs no membership.
func createRoles(ctx context.Context, conn *pgx.Conn, rs roles, superuser, ownLoginApp bool) error {
	switching := []string{rs.owner}
	if ownLoginApp {
		switching = append(switching, rs.app)
	}
	for _, role := range []string{rs.owner, rs.app} {
		// Roles are cluster-wide while advisory locks are per database, so two databases may
		// race to create the same role; losing that race is success.
		_, err := conn.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` NOLOGIN`)
		if err != nil && !isPgCode(err, "42710", "23505") {
			return Translate(err)
		}
	}
	if superuser {
		return nil
	}
	for _, role := range switching {
		if role == rs.ownerLogin {
			continue
		}
		if _, err := conn.Exec(ctx, `GRANT `+pgx.Identifier{role}.Sanitize()+` TO CURRENT_USER`); err != nil && !isPgCode(err, "42710", "0LP01", "23505") {
			return Translate(err)
		}
	}
	return nil
}

// checkRoles refuses roles that would not keep the service's sessions from acting as the
// owner, and explains roles that are missing or that a login cannot use.
func checkRoles(ctx context.Context, conn *pgx.Conn, rs roles, p provisioning, log *slog.Logger) error {
	rows, err := conn.Query(ctx, `SELECT n FROM unnest($1::text[]) n WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = n)`, []string{rs.owner, rs.app})
	if err != nil {
		return Translate(err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return Translate(err)
	}
	if len(missing) > 0 {
		what := "the role " + missing[0] + " does not exist"
		if len(missing) > 1 {
			what = "the roles " + strings.Join(missing, " and ") + " do not exist"
		}
		return fmt.Errorf("database: %s, and %s may not create roles: create the owner role %s and the runtime role %s (docs/playbook.md, production database roles), or provision with a login that has CREATEROLE",
			what, rs.ownerLogin, rs.owner, rs.app)
	}
	var appSuper, appActsAsOwner, loginActsAsOwner bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper, pg_has_role($1, $2, 'MEMBER'), pg_has_role(session_user, $2, 'MEMBER') FROM pg_roles WHERE rolname = $1`, rs.app, rs.owner).
		Scan(&appSuper, &appActsAsOwner, &loginActsAsOwner); err != nil {
		return Translate(err)
	}
	switch {
	case appSuper:
		return fmt.Errorf("database: the runtime role %s is a superuser, which no privilege binds; it must be an ordinary role", rs.app)
	case appActsAsOwner:
		return fmt.Errorf("database: the runtime role %s is a member of the owner role %s, so the service's sessions could change its tables; revoke %s from %s", rs.app, rs.owner, rs.owner, rs.app)
	case !loginActsAsOwner:
		return fmt.Errorf("database: %s, the login that migrates, is not a member of the owner role %s: GRANT %s TO %s", rs.ownerLogin, rs.owner, rs.owner, rs.ownerLogin)
	}

	// The runtime login is checked from here so that a mistake is named before the pool's
	// first connection fails for it with a bare "permission denied to set role".
	var loginSuper, loginActsAsApp bool
	err = conn.QueryRow(ctx, `SELECT rolsuper, pg_has_role(rolname, $2, 'MEMBER'), pg_has_role(rolname, $3, 'MEMBER') FROM pg_roles WHERE rolname = $1`, p.appLogin, rs.app, rs.owner).
		Scan(&loginSuper, &loginActsAsApp, &loginActsAsOwner)
	if errors.Is(err, pgx.ErrNoRows) {
		// The login does not exist; connecting with it will say so.
		return nil
	}
	if err != nil {
		return Translate(err)
	}
	switch {
	case !loginActsAsApp:
		return fmt.Errorf("database: DATABASE_URL logs in as %s, which is not a member of the runtime role %s: GRANT %s TO %s", p.appLogin, rs.app, rs.app, p.appLogin)
	case !p.ownLoginApp && (loginSuper || loginActsAsOwner):
		return fmt.Errorf("database: DATABASE_URL logs in as %s, which can act as the owner role %s, so the service's sessions could leave the runtime role and change its tables; log in as %s or as a member of it only (docs/playbook.md, production database roles)", p.appLogin, rs.owner, rs.app)
	case loginActsAsOwner:
		log.Info("database: the sessions run as the runtime role, but their login may also act as the owner role; set BASALT_DATABASE_OWNER_URL and log in with DATABASE_URL as the runtime role to keep a session that leaves its role from changing tables",
			"schema", p.schema, "login", p.appLogin, "runtime_role", rs.app, "owner_role", rs.owner)
	}
	return nil
}

// grantDefaults makes every table and sequence the owner creates in schema give the runtime
// role the privileges rows need. The first time, it also adopts the objects already there, and
// returns how many it adopted.
func grantDefaults(ctx context.Context, tx pgx.Tx, schema string, rs roles) (int, error) {
	var done bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (
		SELECT FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
		WHERE d.defaclrole = $1::regrole AND d.defaclnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2)
		  AND d.defaclobjtype = 'r' AND a.grantee = $3::regrole)`,
		pgx.Identifier{rs.owner}.Sanitize(), schema, pgx.Identifier{rs.app}.Sanitize()).Scan(&done)
	if err != nil || done {
		return 0, Translate(err)
	}
	in := ` IN SCHEMA ` + pgx.Identifier{schema}.Sanitize()
	to := ` TO ` + pgx.Identifier{rs.app}.Sanitize()
	for _, stmt := range []string{
		`ALTER DEFAULT PRIVILEGES FOR ROLE ` + pgx.Identifier{rs.owner}.Sanitize() + in + ` GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES` + to,
		`ALTER DEFAULT PRIVILEGES FOR ROLE ` + pgx.Identifier{rs.owner}.Sanitize() + in + ` GRANT USAGE, SELECT ON SEQUENCES` + to,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return 0, Translate(err)
		}
	}
	// The row privileges each existing table's (or sequence's) owner holds on it, which is all
	// of them unless a migration revoked some from the owner itself.
	rows, err := tx.Query(ctx, `
		SELECT c.relname, c.relkind = 'S', string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type)
		FROM pg_class c
		CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
		WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
		  AND c.relkind IN ('r', 'p', 'S') AND a.grantee = c.relowner
		  AND a.privilege_type = ANY (CASE WHEN c.relkind = 'S' THEN ARRAY['USAGE', 'SELECT'] ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END)
		GROUP BY c.relname, c.relkind`, schema)
	if err != nil {
		return 0, Translate(err)
	}
	type grant struct {
		name       string
		sequence   bool
		privileges string
	}
	grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.name, &g.sequence, &g.privileges)
	})
	if err != nil {
		return 0, Translate(err)
	}
	for _, g := range grants {
		kind := ` ON TABLE `
		if g.sequence {
			kind = ` ON SEQUENCE `
		}
		if _, err := tx.Exec(ctx, `GRANT `+g.privileges+kind+pgx.Identifier{schema, g.name}.Sanitize()+to); err != nil {
			return 0, Translate(err)
		}
	}
	return len(grants), nil
}
