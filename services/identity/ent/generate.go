// Package ent is the identity service's generated data access code.
package ent

//go:generate env GOMAXPROCS=1 go tool ent generate --feature sql/execquery,sql/upsert,sql/lock ./schema
