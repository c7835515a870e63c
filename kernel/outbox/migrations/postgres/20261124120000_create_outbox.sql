-- The outbox of audit events. Times are Unix milliseconds, which compare the same way on every
-- database. IF NOT EXISTS adopts the table that services made before migrations were versioned.
CREATE TABLE IF NOT EXISTS basalt_outbox (
	seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id text NOT NULL UNIQUE,
	payload bytea NOT NULL,
	created_at bigint NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	next_attempt_at bigint NOT NULL,
	dead boolean NOT NULL DEFAULT false,
	last_error text NOT NULL DEFAULT ''
);
