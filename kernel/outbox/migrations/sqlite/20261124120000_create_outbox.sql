-- The outbox of audit events. Times are Unix milliseconds, which compare the same way on every
-- database. IF NOT EXISTS adopts the table that services made before migrations were versioned.
CREATE TABLE IF NOT EXISTS basalt_outbox (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id TEXT NOT NULL UNIQUE,
	payload BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	dead BOOLEAN NOT NULL DEFAULT FALSE,
	last_error TEXT NOT NULL DEFAULT ''
);
