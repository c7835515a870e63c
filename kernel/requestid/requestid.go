// Package requestid carries the id that correlates one external request across the gateway, the
// services it reaches, their logs and their audit events.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// Header is the HTTP header the id travels in.
const Header = "X-Request-Id"

// maxLen bounds an id accepted from outside, so a client cannot make every log line huge.
const maxLen = 128

type ctxKey struct{}

// New returns a fresh random id (128 bits, hex).
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Sanitize returns id when it is a plausible request id (1 to 128 printable ASCII characters
// without spaces) and "" otherwise, so that a hostile header cannot inject log lines.
func Sanitize(id string) string {
	if id == "" || len(id) > maxLen {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return ""
		}
	}
	return id
}

// With returns a context that carries id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the id ctx carries, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}
