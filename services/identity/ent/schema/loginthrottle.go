package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// LoginThrottle counts failed credential checks for one email, whether or not an account has
// it, so that locking reveals nothing about which emails exist. It is keyed by a hash of the
// normalised email, so it stores no address that was merely typed.
type LoginThrottle struct {
	ent.Schema
}

// Fields of the LoginThrottle. Times are Unix milliseconds, so the atomic counting update
// compares them the same way on PostgreSQL and SQLite.
func (LoginThrottle) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").MaxLen(64).NotEmpty().Immutable(),
		field.Int("failures").Default(0),
		field.Int64("window_started_at"),
		field.Int64("locked_until").Default(0),
	}
}
