-- init: made by go tool task migrate:diff from the auth service's Ent schema.
-- Create "refresh_tokens" table
CREATE TABLE "refresh_tokens" ("id" character varying NOT NULL, "session_id" character varying NOT NULL, "created_at" timestamptz NOT NULL, "used_at" timestamptz NULL, PRIMARY KEY ("id"));
-- Create index "refreshtoken_session_id" to table: "refresh_tokens"
CREATE INDEX "refreshtoken_session_id" ON "refresh_tokens" ("session_id");
-- Create "sessions" table
CREATE TABLE "sessions" ("id" character varying NOT NULL, "user_id" character varying NOT NULL, "created_at" timestamptz NOT NULL, "last_refresh_at" timestamptz NOT NULL, "expires_at" timestamptz NOT NULL, "revoked_at" timestamptz NULL, "revoke_reason" character varying NOT NULL DEFAULT '', "ip" character varying NOT NULL DEFAULT '', "user_agent" character varying NOT NULL DEFAULT '', PRIMARY KEY ("id"));
-- Create index "session_user_id_created_at" to table: "sessions"
CREATE INDEX "session_user_id_created_at" ON "sessions" ("user_id", "created_at");
-- Create "signing_keys" table
CREATE TABLE "signing_keys" ("id" character varying NOT NULL, "algorithm" character varying NOT NULL, "public_key" bytea NOT NULL, "private_key_sealed" bytea NOT NULL, "created_at" timestamptz NOT NULL, "activates_at" timestamptz NOT NULL, "retires_at" timestamptz NULL, "expires_at" timestamptz NULL, PRIMARY KEY ("id"));
