package database

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/basaltplatform/basalt/kernel/errs"
)

// Translate turns a driver error into a domain error, keeping the driver error as the cause for
// the logs. Context errors pass through unchanged (the server maps them to canceled and
// deadline_exceeded), as do errors that are already domain errors. What it cannot classify it
// returns unchanged, which the server reports as internal.
func Translate(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errs.As(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return errs.Wrap(errs.KindNotFound, err, "not found")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return translatePg(pgErr, err)
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		return translateSQLite(sqliteErr, err)
	}
	if isConnectionError(err) {
		return errs.Unavailable(err, "the database is unavailable")
	}
	return err
}

func translatePg(pgErr *pgconn.PgError, err error) error {
	switch code := pgErr.Code; {
	case code == "23505": // unique_violation
		return errs.Wrap(errs.KindAlreadyExists, err, "already exists")
	case code == "23503": // foreign_key_violation
		return errs.Wrap(errs.KindFailedPrecondition, err, "a referenced resource does not exist or is still in use")
	case code == "40001", code == "40P01": // serialization_failure, deadlock_detected
		return errs.Wrap(errs.KindAborted, err, "the operation conflicted with a concurrent one; retry it")
	case code == "55P03": // lock_not_available
		return errs.Wrap(errs.KindAborted, err, "the resource is locked; retry it")
	case strings.HasPrefix(code, "08"), // connection_exception
		code == "57P01", code == "57P02", code == "57P03", // admin_shutdown, crash_shutdown, cannot_connect_now
		strings.HasPrefix(code, "53"): // insufficient_resources (too many connections)
		return errs.Unavailable(err, "the database is unavailable")
	case code == "57014": // query_canceled (statement_timeout)
		return errs.Wrap(errs.KindUnavailable, err, "the database did not answer in time")
	}
	return err
}

func translateSQLite(e *sqlite.Error, err error) error {
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return errs.Wrap(errs.KindAlreadyExists, err, "already exists")
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return errs.Wrap(errs.KindFailedPrecondition, err, "a referenced resource does not exist or is still in use")
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_BUSY_SNAPSHOT:
		return errs.Wrap(errs.KindAborted, err, "the operation conflicted with a concurrent one; retry it")
	}
	return err
}

// isConnectionError reports errors that mean the connection, not the statement, failed: the
// server went away or could not be reached.
func isConnectionError(err error) bool {
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "conn closed")
}
