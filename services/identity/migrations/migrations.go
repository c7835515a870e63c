// Package migrations holds the identity service's versioned schema migrations, one folder per
// dialect (postgres/, sqlite/), applied by kernel/migrate at start-up. The files are made by
// go tool task migrate:diff -- identity <name> from the Ent schema, or written by hand for what Ent
// cannot express; a file that has been applied anywhere is never edited again.
package migrations

import "embed"

// Files are the migrations. They are embedded so that the binary carries the schema it needs.
//
//go:embed postgres sqlite
var Files embed.FS
