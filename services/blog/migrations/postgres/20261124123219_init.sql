-- init: made by go tool task migrate:diff from the blog service's Ent schema.
-- Create "posts" table
CREATE TABLE "posts" ("id" character varying NOT NULL, "author_id" character varying NOT NULL, "title" character varying NOT NULL, "body" text NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, PRIMARY KEY ("id"));
-- Create index "post_author_id_id" to table: "posts"
CREATE INDEX "post_author_id_id" ON "posts" ("author_id", "id");
