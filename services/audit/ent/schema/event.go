// Package schema holds the audit service's Ent schema: one file per entity.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Event is one entry of the append-only, hash-chained security log. Every field is immutable:
// the table refuses UPDATE and DELETE (see the store's migration), and VerifyLog detects what
// a database superuser changes anyway.
type Event struct {
	ent.Schema
}

// Fields of the Event.
func (Event) Fields() []ent.Field {
	return []ent.Field{
		// The producer's event id (a UUID) is the primary key, so a retried batch finds its
		// events already present.
		field.String("id").MaxLen(36).NotEmpty().Immutable(),
		field.Int64("sequence").Positive().Unique().Immutable(),
		field.Time("time").Immutable(),
		field.String("service").MaxLen(63).NotEmpty().Immutable(),
		field.String("action").MaxLen(128).NotEmpty().Immutable(),
		field.Enum("outcome").Values("success", "failure", "denied").Immutable(),
		field.String("actor_subject").MaxLen(256).Default("").Immutable(),
		field.String("actor_ip").MaxLen(64).Default("").Immutable(),
		field.String("actor_user_agent").MaxLen(512).Default("").Immutable(),
		field.String("resource_type").MaxLen(64).Default("").Immutable(),
		field.String("resource_id").MaxLen(256).Default("").Immutable(),
		field.String("request_id").MaxLen(128).Default("").Immutable(),
		field.String("trace_id").MaxLen(32).Default("").Immutable(),
		field.JSON("metadata", map[string]string{}).Optional().Immutable(),
		field.Bytes("prev_hash").MaxLen(32).Immutable(),
		field.Bytes("hash").MaxLen(32).Immutable(),
	}
}

// Indexes of the Event.
func (Event) Indexes() []ent.Index {
	// Each filter of ListEvents has an index that also orders by sequence, so a filtered page
	// reads only the rows it returns.
	return []ent.Index{
		index.Fields("time"),
		index.Fields("actor_subject", "sequence"),
		index.Fields("action", "sequence"),
		index.Fields("resource_type", "resource_id", "sequence"),
		index.Fields("service", "sequence"),
	}
}
