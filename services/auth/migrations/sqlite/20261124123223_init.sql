-- init: made by go tool task migrate:diff from the auth service's Ent schema.
-- Create "refresh_tokens" table
CREATE TABLE `refresh_tokens` (`id` text NOT NULL, `session_id` text NOT NULL, `created_at` datetime NOT NULL, `used_at` datetime NULL, PRIMARY KEY (`id`));
-- Create index "refreshtoken_session_id" to table: "refresh_tokens"
CREATE INDEX `refreshtoken_session_id` ON `refresh_tokens` (`session_id`);
-- Create "sessions" table
CREATE TABLE `sessions` (`id` text NOT NULL, `user_id` text NOT NULL, `created_at` datetime NOT NULL, `last_refresh_at` datetime NOT NULL, `expires_at` datetime NOT NULL, `revoked_at` datetime NULL, `revoke_reason` text NOT NULL DEFAULT (''), `ip` text NOT NULL DEFAULT (''), `user_agent` text NOT NULL DEFAULT (''), PRIMARY KEY (`id`));
-- Create index "session_user_id_created_at" to table: "sessions"
CREATE INDEX `session_user_id_created_at` ON `sessions` (`user_id`, `created_at`);
-- Create "signing_keys" table
CREATE TABLE `signing_keys` (`id` text NOT NULL, `algorithm` text NOT NULL, `public_key` blob NOT NULL, `private_key_sealed` blob NOT NULL, `created_at` datetime NOT NULL, `activates_at` datetime NOT NULL, `retires_at` datetime NULL, `expires_at` datetime NULL, PRIMARY KEY (`id`));
