package handler

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/services/identity/internal/password"
)

// NormalizeEmail trims surrounding space and lower-cases an email address, so that one
// mailbox maps to one account however it is typed.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// checkEmail validates a normalised email, recording a violation under field.
func checkEmail(v *errs.Violations, field, email string) {
	switch {
	case email == "":
		v.Add(field, "is required")
	case len(email) > 254:
		v.Add(field, "must be at most 254 characters")
	default:
		addr, err := mail.ParseAddress(email)
		if err != nil || addr.Address != email || addr.Name != "" || !strings.Contains(email[strings.LastIndexByte(email, '@')+1:], ".") {
			v.Add(field, "must be an email address such as ada@example.com")
		}
	}
}

// normalizeDisplayName trims a display name.
func normalizeDisplayName(name string) string { return strings.TrimSpace(name) }

// checkDisplayName validates a normalised display name.
func checkDisplayName(v *errs.Violations, field, name string) {
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name):
		v.Add(field, "must be valid UTF-8")
	case n == 0:
		v.Add(field, "is required")
	case n > 100:
		v.Add(field, "must be at most 100 characters")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		v.Add(field, "must not contain control characters")
	}
}

// checkPassword validates a new password.
func checkPassword(v *errs.Violations, field, pw string) {
	if problem := password.Check(pw); problem != "" {
		v.Add(field, problem)
	}
}

// checkID validates a user id.
func checkID(id string) error {
	if len(id) != 36 || strings.Trim(id, "0123456789abcdef-") != "" {
		return errs.Invalid("user_id", "must be a user id (a UUID)")
	}
	return nil
}
