package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Session is one login of a user: a family of refresh tokens, each replacing the last.
type Session struct {
	ent.Schema
}

// Fields of the Session.
func (Session) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").MaxLen(36).NotEmpty().Immutable(),
		field.String("user_id").MaxLen(36).NotEmpty().Immutable(),
		field.Time("created_at").Immutable(),
		field.Time("last_refresh_at"),
		// The absolute end of the session, however often it is refreshed.
		field.Time("expires_at").Immutable(),
		field.Time("revoked_at").Optional().Nillable(),
		field.String("revoke_reason").MaxLen(64).Default(""),
		field.String("ip").MaxLen(64).Default("").Immutable(),
		field.String("user_agent").MaxLen(512).Default("").Immutable(),
	}
}

// Indexes of the Session.
func (Session) Indexes() []ent.Index {
	return []ent.Index{index.Fields("user_id", "created_at")}
}
