package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// RefreshToken is one refresh token, stored only as the SHA-256 of its value. A token works
// once: using marks it used, and a second use reveals theft and ends the session.
type RefreshToken struct {
	ent.Schema
}

// Fields of the RefreshToken.
func (RefreshToken) Fields() []ent.Field {
	return []ent.Field{
		// The hex SHA-256 of the token.
		field.String("id").MaxLen(64).NotEmpty().Immutable(),
		field.String("session_id").MaxLen(36).NotEmpty().Immutable(),
		field.Time("created_at").Immutable(),
		field.Time("used_at").Optional().Nillable(),
	}
}

// Indexes of the RefreshToken.
func (RefreshToken) Indexes() []ent.Index {
	return []ent.Index{index.Fields("session_id")}
}
