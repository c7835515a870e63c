-- init: made by go tool task migrate:diff from the audit service's Ent schema.
-- Create "checkpoints" table
CREATE TABLE `checkpoints` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `sequence` integer NOT NULL, `head_hash` blob NOT NULL, `time` datetime NOT NULL, `key_id` text NOT NULL, `signature` blob NOT NULL);
-- Create index "checkpoints_sequence_key" to table: "checkpoints"
CREATE UNIQUE INDEX `checkpoints_sequence_key` ON `checkpoints` (`sequence`);
-- Create "events" table
CREATE TABLE `events` (`id` text NOT NULL, `sequence` integer NOT NULL, `time` datetime NOT NULL, `service` text NOT NULL, `action` text NOT NULL, `outcome` text NOT NULL, `actor_subject` text NOT NULL DEFAULT (''), `actor_ip` text NOT NULL DEFAULT (''), `actor_user_agent` text NOT NULL DEFAULT (''), `resource_type` text NOT NULL DEFAULT (''), `resource_id` text NOT NULL DEFAULT (''), `request_id` text NOT NULL DEFAULT (''), `trace_id` text NOT NULL DEFAULT (''), `metadata` json NULL, `prev_hash` blob NOT NULL, `hash` blob NOT NULL, PRIMARY KEY (`id`));
-- Create index "events_sequence_key" to table: "events"
CREATE UNIQUE INDEX `events_sequence_key` ON `events` (`sequence`);
-- Create index "event_time" to table: "events"
CREATE INDEX `event_time` ON `events` (`time`);
-- Create index "event_actor_subject_sequence" to table: "events"
CREATE INDEX `event_actor_subject_sequence` ON `events` (`actor_subject`, `sequence`);
-- Create index "event_action_sequence" to table: "events"
CREATE INDEX `event_action_sequence` ON `events` (`action`, `sequence`);
-- Create index "event_resource_type_resource_id_sequence" to table: "events"
CREATE INDEX `event_resource_type_resource_id_sequence` ON `events` (`resource_type`, `resource_id`, `sequence`);
-- Create index "event_service_sequence" to table: "events"
CREATE INDEX `event_service_sequence` ON `events` (`service`, `sequence`);
