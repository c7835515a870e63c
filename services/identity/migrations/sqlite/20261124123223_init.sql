-- init: made by go tool task migrate:diff from the identity service's Ent schema.
-- Create "login_throttles" table
CREATE TABLE `login_throttles` (`id` text NOT NULL, `failures` integer NOT NULL DEFAULT (0), `window_started_at` integer NOT NULL, `locked_until` integer NOT NULL DEFAULT (0), PRIMARY KEY (`id`));
-- Create "pending_grants" table
CREATE TABLE `pending_grants` (`id` text NOT NULL, `subject` text NOT NULL, `role` text NOT NULL, `attempts` integer NOT NULL DEFAULT (0), `next_attempt_at` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create "users" table
CREATE TABLE `users` (`id` text NOT NULL, `email` text NOT NULL, `display_name` text NOT NULL, `status` text NOT NULL DEFAULT ('active'), `email_verified` bool NOT NULL DEFAULT (false), `password_hash` text NOT NULL, `create_time` datetime NOT NULL, `update_time` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "users_email_key" to table: "users"
CREATE UNIQUE INDEX `users_email_key` ON `users` (`email`);
-- Create index "user_status_id" to table: "users"
CREATE INDEX `user_status_id` ON `users` (`status`, `id`);
