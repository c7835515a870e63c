package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// PendingGrant is a role the authz service must give a user: stored in the transaction that
// creates the user (member for a registration, admin for the bootstrap administrator) and
// removed once authz has taken it, so a user never ends up without the role because authz was
// briefly away.
type PendingGrant struct {
	ent.Schema
}

// Fields of the PendingGrant.
func (PendingGrant) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").MaxLen(36).NotEmpty().Immutable(),
		field.String("subject").MaxLen(256).NotEmpty().Immutable(),
		field.String("role").MaxLen(63).NotEmpty().Immutable(),
		field.Int("attempts").Default(0),
		field.Time("next_attempt_at"),
	}
}
