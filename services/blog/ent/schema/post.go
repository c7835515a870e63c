// Package schema holds the blog service's Ent schema: one file per entity.
package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Post is a text a member published.
type Post struct {
	ent.Schema
}

// Fields of the Post.
func (Post) Fields() []ent.Field {
	return []ent.Field{
		// A UUIDv7: ordered by creation, which keeps listings stable under inserts.
		field.String("id").MaxLen(36).NotEmpty().Immutable(),
		// The user who wrote the post. Only the identity service knows users, so this is an id,
		// not a foreign key.
		field.String("author_id").MaxLen(36).NotEmpty().Immutable(),
		// At most 200 characters, which is at most 800 bytes of UTF-8.
		field.String("title").MaxLen(800).NotEmpty(),
		// At most 100 KiB, checked by the handler.
		field.Text("body"),
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Time("update_time").Default(time.Now).UpdateDefault(time.Now),
	}
}

// Indexes of the Post.
func (Post) Indexes() []ent.Index {
	return []ent.Index{
		// ListPosts by author, newest first.
		index.Fields("author_id", "id"),
	}
}
