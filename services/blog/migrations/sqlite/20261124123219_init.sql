-- init: made by go tool task migrate:diff from the blog service's Ent schema.
-- Create "posts" table
CREATE TABLE `posts` (`id` text NOT NULL, `author_id` text NOT NULL, `title` text NOT NULL, `body` text NOT NULL, `create_time` datetime NOT NULL, `update_time` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "post_author_id_id" to table: "posts"
CREATE INDEX `post_author_id_id` ON `posts` (`author_id`, `id`);
