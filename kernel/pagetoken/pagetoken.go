// Package pagetoken makes the opaque page tokens of List methods. A token holds the position
// after the last item returned and a digest of the listing's scope (its filters), so that a
// token cannot be replayed against a listing with other filters.
package pagetoken

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"

	"github.com/basaltplatform/basalt/kernel/errs"
)

// digestLen is how much of the scope's SHA-256 a token carries: enough to tell listings
// apart, since the digest guards against mistakes, not forgery (a token grants nothing).
const digestLen = 8

// Encode returns the token for position within the listing named by scope.
func Encode(scope string, position []byte) string {
	sum := sha256.Sum256([]byte(scope))
	return base64.RawURLEncoding.EncodeToString(append(sum[:digestLen:digestLen], position...))
}

// Decode returns the position of token within the listing named by scope: nil for an empty
// token (the first page), and an invalid_argument error on page_token for a token that is
// malformed or was issued for another listing.
func Decode(token, scope string) ([]byte, error) {
	if token == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) <= digestLen {
		return nil, Invalid()
	}
	sum := sha256.Sum256([]byte(scope))
	if !bytes.Equal(b[:digestLen], sum[:digestLen]) {
		return nil, errs.Invalid("page_token", "belongs to a listing with other filters")
	}
	return b[digestLen:], nil
}

// Invalid is the error for a token whose position the service cannot use.
func Invalid() error {
	return errs.Invalid("page_token", "is not a token this service issued")
}
