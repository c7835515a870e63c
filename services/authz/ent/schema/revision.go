package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Revision counts changes to roles and bindings: every change increments its one row in the
// same transaction, so an instance knows whether its index is behind.
type Revision struct {
	ent.Schema
}

// Fields of the Revision.
func (Revision) Fields() []ent.Field {
	return []ent.Field{
		field.Int("id").Immutable(),
		field.Int64("value").Default(0),
	}
}
