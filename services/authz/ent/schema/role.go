// Package schema holds the authz service's Ent schema: one file per entity.
package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Role is a named set of permissions.
type Role struct {
	ent.Schema
}

// Fields of the Role.
func (Role) Fields() []ent.Field {
	return []ent.Field{
		// The role's name is its id: bindings name it, and it never changes.
		field.String("id").MaxLen(63).NotEmpty().Immutable(),
		field.String("description").MaxLen(500).Default(""),
		field.Strings("permissions"),
		field.Bool("builtin").Default(false).Immutable(),
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Time("update_time").Default(time.Now).UpdateDefault(time.Now),
	}
}
