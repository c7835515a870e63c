-- init: made by go tool task migrate:diff from the authz service's Ent schema.
-- Create "revisions" table
CREATE TABLE `revisions` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `value` integer NOT NULL DEFAULT (0));
-- Create "roles" table
CREATE TABLE `roles` (`id` text NOT NULL, `description` text NOT NULL DEFAULT (''), `permissions` json NOT NULL, `builtin` bool NOT NULL DEFAULT (false), `create_time` datetime NOT NULL, `update_time` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create "role_bindings" table
CREATE TABLE `role_bindings` (`id` text NOT NULL, `subject` text NOT NULL, `role` text NOT NULL, `resource` text NOT NULL DEFAULT (''), `create_time` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "rolebinding_subject_role_resource" to table: "role_bindings"
CREATE UNIQUE INDEX `rolebinding_subject_role_resource` ON `role_bindings` (`subject`, `role`, `resource`);
-- Create index "rolebinding_role" to table: "role_bindings"
CREATE INDEX `rolebinding_role` ON `role_bindings` (`role`);
