-- init: made by go tool task migrate:diff from the identity service's Ent schema.
-- Create "login_throttles" table
CREATE TABLE "login_throttles" ("id" character varying NOT NULL, "failures" bigint NOT NULL DEFAULT 0, "window_started_at" bigint NOT NULL, "locked_until" bigint NOT NULL DEFAULT 0, PRIMARY KEY ("id"));
-- Create "pending_grants" table
CREATE TABLE "pending_grants" ("id" character varying NOT NULL, "subject" character varying NOT NULL, "role" character varying NOT NULL, "attempts" bigint NOT NULL DEFAULT 0, "next_attempt_at" timestamptz NOT NULL, PRIMARY KEY ("id"));
-- Create "users" table
CREATE TABLE "users" ("id" character varying NOT NULL, "email" character varying NOT NULL, "display_name" character varying NOT NULL, "status" character varying NOT NULL DEFAULT 'active', "email_verified" boolean NOT NULL DEFAULT false, "password_hash" character varying NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, PRIMARY KEY ("id"));
-- Create index "users_email_key" to table: "users"
CREATE UNIQUE INDEX "users_email_key" ON "users" ("email");
-- Create index "user_status_id" to table: "users"
CREATE INDEX "user_status_id" ON "users" ("status", "id");
