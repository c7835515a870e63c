package handler

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/basaltplatform/basalt/kernel/errs"
)

// Limits of a post.
const (
	// MaxTitleChars is the longest title, in characters.
	MaxTitleChars = 200
	// MaxBodyBytes is the largest body, in bytes of UTF-8.
	MaxBodyBytes = 100 << 10
)

// normalizeTitle trims a title.
func normalizeTitle(title string) string { return strings.TrimSpace(title) }

// checkTitle validates a normalised title, recording a violation under field.
func checkTitle(v *errs.Violations, field, title string) {
	switch n := utf8.RuneCountInString(title); {
	case !utf8.ValidString(title):
		v.Add(field, "must be valid UTF-8")
	case n == 0:
		v.Add(field, "is required")
	case n > MaxTitleChars:
		v.Add(field, "must be at most 200 characters")
	case strings.IndexFunc(title, unicode.IsControl) >= 0:
		v.Add(field, "must not contain control characters")
	}
}

// checkBody validates a body, recording a violation under field. Line breaks and tabs are
// text; NUL is not (PostgreSQL cannot store it in text).
func checkBody(v *errs.Violations, field, body string) {
	switch {
	case len(body) > MaxBodyBytes:
		v.Add(field, "must be at most 100 KiB")
	case !utf8.ValidString(body):
		v.Add(field, "must be valid UTF-8")
	case strings.IndexByte(body, 0) >= 0:
		v.Add(field, "must not contain NUL characters")
	}
}

// isID reports whether id looks like a UUID as this platform writes them (lower-case).
func isID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		default:
			return false
		}
	}
	return true
}

// checkID validates a post id sent as field.
func checkID(field, id string) error {
	if !isID(id) {
		return errs.Invalid(field, "must be a post id (a UUID)")
	}
	return nil
}
