// Package requestid carries the id that correlates one external request across the gateway, the
// services it reaches, their logs and their audit events.
package requestid

import (
	"context"
	"math/rand/v2"
)

// Header is the HTTP header the id travels in.
const Header = "X-Request-Id"

// maxLen bounds an id accepted from outside, so a client cannot make every log line huge.
const maxLen = 128

type ctxKey struct{}

// New returns a fresh random id (128 bits, hex). Ids need to be unique, not secret, so they
// come from the runtime's generator (ChaCha8, seeded by the system), as OpenTelemetry's trace
// ids do, which costs a fraction of crypto/rand's locked generator on every request.
func New() string {
	var b [32]byte
	putHex(b[:16], rand.Uint64())
	putHex(b[16:], rand.Uint64())
	return string(b[:])
}

// putHex writes v into dst, sixteen lowercase hex digits.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
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
