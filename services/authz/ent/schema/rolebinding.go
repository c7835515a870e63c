package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// RoleBinding gives a subject a role, everywhere (resource "") or on one resource.
type RoleBinding struct {
	ent.Schema
}

// Fields of the RoleBinding.
func (RoleBinding) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").MaxLen(36).NotEmpty().Immutable(),
		field.String("subject").MaxLen(256).NotEmpty().Immutable(),
		field.String("role").MaxLen(63).NotEmpty().Immutable(),
		field.String("resource").MaxLen(256).Default("").Immutable(),
		field.Time("create_time").Default(time.Now).Immutable(),
	}
}

// Indexes of the RoleBinding.
func (RoleBinding) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("subject", "role", "resource").Unique(),
		index.Fields("role"),
	}
}
