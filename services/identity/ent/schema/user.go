// Package schema holds the identity service's Ent schema: one file per entity.
package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// User is a person who uses the platform.
type User struct {
	ent.Schema
}

// Fields of the User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		// A UUIDv7: ordered by creation, which keeps listings stable under inserts.
		field.String("id").MaxLen(36).NotEmpty().Immutable(),
		// The normalised email: trimmed and lower-cased.
		field.String("email").MaxLen(254).NotEmpty().Unique(),
		field.String("display_name").MaxLen(400).NotEmpty(),
		field.Enum("status").Values("active", "disabled").Default("active"),
		field.Bool("email_verified").Default(false),
		// An argon2id hash in PHC form, which names its own parameters so they can be raised.
		field.String("password_hash").MaxLen(256).NotEmpty().Sensitive(),
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Time("update_time").Default(time.Now).UpdateDefault(time.Now),
	}
}

// Indexes of the User.
func (User) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("status", "id"),
	}
}
