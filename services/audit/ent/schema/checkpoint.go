package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Checkpoint is a signed statement of the log's head, written with every append: the sequence
// of the last event and its hash, signed with a key that is not in the database.
type Checkpoint struct {
	ent.Schema
}

// Fields of the Checkpoint.
func (Checkpoint) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("sequence").Positive().Unique().Immutable(),
		field.Bytes("head_hash").MaxLen(32).Immutable(),
		field.Time("time").Immutable(),
		field.String("key_id").MaxLen(16).Immutable(),
		field.Bytes("signature").MaxLen(64).Immutable(),
	}
}
