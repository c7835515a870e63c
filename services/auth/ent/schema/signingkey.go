// Package schema holds the auth service's Ent schema: one file per entity.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// SigningKey is a key that signs access tokens. It is published in the JWKS from creation, so
// verifiers know it before the first token it signs; it signs from activates_at until
// retires_at; it stays published until expires_at, when every token it signed has expired.
type SigningKey struct {
	ent.Schema
}

// Fields of the SigningKey.
func (SigningKey) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").MaxLen(64).NotEmpty().Immutable(),
		field.String("algorithm").NotEmpty().Immutable(),
		field.Bytes("public_key").Immutable(),
		// The private key sealed with AES-256-GCM under the configured key secret, the key id
		// bound as additional data: a database dump alone signs nothing.
		field.Bytes("private_key_sealed").Sensitive().Immutable(),
		field.Time("created_at").Immutable(),
		field.Time("activates_at").Immutable(),
		field.Time("retires_at").Optional().Nillable(),
		field.Time("expires_at").Optional().Nillable(),
	}
}
