// Package errs is the platform's domain error model.
//
// Errs exists so that errors flow one way: stores turn driver errors into *Error values, handlers
// return them, and one server interceptor maps them to Connect codes. Only Message and the field
// violations ever reach a client; Cause is for logs, so a wrapped driver error can never leak.
package errs

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error the way a client must react to it.
type Kind int

// The kinds mirror the Connect codes a Basalt API may answer with.
const (
	// KindInternal is a bug or an unexpected failure; clients see only a generic message.
	KindInternal Kind = iota
	// KindInvalidArgument means the request itself is wrong, whatever the system's state.
	KindInvalidArgument
	// KindNotFound means a named resource does not exist (or is not visible to the caller).
	KindNotFound
	// KindAlreadyExists means a resource with the same unique key exists.
	KindAlreadyExists
	// KindPermissionDenied means the caller is known but may not do this.
	KindPermissionDenied
	// KindUnauthenticated means the caller could not be identified.
	KindUnauthenticated
	// KindResourceExhausted means a limit was hit; RetryAfter says when to try again.
	KindResourceExhausted
	// KindFailedPrecondition means the system is not in a state where the request can succeed.
	KindFailedPrecondition
	// KindAborted means a concurrency conflict; the whole operation may be retried.
	KindAborted
	// KindUnavailable means a dependency is down for now; the call may be retried.
	KindUnavailable
)

var kindNames = [...]string{
	KindInternal:           "internal",
	KindInvalidArgument:    "invalid_argument",
	KindNotFound:           "not_found",
	KindAlreadyExists:      "already_exists",
	KindPermissionDenied:   "permission_denied",
	KindUnauthenticated:    "unauthenticated",
	KindResourceExhausted:  "resource_exhausted",
	KindFailedPrecondition: "failed_precondition",
	KindAborted:            "aborted",
	KindUnavailable:        "unavailable",
}

// String returns the kind's name as Connect spells the matching code.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// FieldViolation names one invalid field of a request and says what is wrong with it.
type FieldViolation struct {
	// Field is the path of the field, for example "events[3].action".
	Field string
	// Description says what is wrong, in words a client developer can act on.
	Description string
}

// Error is a domain error.
type Error struct {
	// Kind classifies the error.
	Kind Kind
	// Message is safe to show to clients. It never contains secrets or internal detail.
	Message string
	// Fields lists invalid fields, for KindInvalidArgument.
	Fields []FieldViolation
	// RetryAfter, when positive, says how long a client should wait before retrying.
	RetryAfter time.Duration
	// Cause is the underlying error, for logs only.
	Cause error
}

// Error returns the message and, for logs, the cause.
func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Kind.String() + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Kind.String() + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an error of the given kind with a client-safe message.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of the given kind that keeps cause for the logs.
func Wrap(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), Cause: cause}
}

// NotFound returns a KindNotFound error.
func NotFound(format string, args ...any) *Error { return New(KindNotFound, format, args...) }

// AlreadyExists returns a KindAlreadyExists error.
func AlreadyExists(format string, args ...any) *Error {
	return New(KindAlreadyExists, format, args...)
}

// PermissionDenied returns a KindPermissionDenied error.
func PermissionDenied(format string, args ...any) *Error {
	return New(KindPermissionDenied, format, args...)
}

// Unauthenticated returns a KindUnauthenticated error.
func Unauthenticated(format string, args ...any) *Error {
	return New(KindUnauthenticated, format, args...)
}

// FailedPrecondition returns a KindFailedPrecondition error.
func FailedPrecondition(format string, args ...any) *Error {
	return New(KindFailedPrecondition, format, args...)
}

// Unavailable returns a KindUnavailable error that keeps cause for the logs.
func Unavailable(cause error, format string, args ...any) *Error {
	return Wrap(KindUnavailable, cause, format, args...)
}

// ResourceExhausted returns a KindResourceExhausted error that tells the client when to retry.
func ResourceExhausted(retryAfter time.Duration, format string, args ...any) *Error {
	e := New(KindResourceExhausted, format, args...)
	e.RetryAfter = retryAfter
	return e
}

// Invalid returns a KindInvalidArgument error for one field.
func Invalid(field, description string) *Error {
	return &Error{
		Kind:    KindInvalidArgument,
		Message: field + ": " + description,
		Fields:  []FieldViolation{{Field: field, Description: description}},
	}
}

// Violations collects field violations while a request is validated, so that a client learns
// about every invalid field at once instead of one per round trip.
type Violations struct {
	list []FieldViolation
}

// Add records a violation.
func (v *Violations) Add(field, description string) {
	v.list = append(v.list, FieldViolation{Field: field, Description: description})
}

// Len returns the number of violations recorded.
func (v *Violations) Len() int { return len(v.list) }

// Err returns nil when nothing was recorded, and a KindInvalidArgument error otherwise. The
// message names the first violation and how many more there are.
func (v *Violations) Err() error {
	if len(v.list) == 0 {
		return nil
	}
	first := v.list[0]
	msg := first.Field + ": " + first.Description
	if n := len(v.list) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return &Error{Kind: KindInvalidArgument, Message: msg, Fields: append([]FieldViolation(nil), v.list...)}
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// KindOf returns the kind of the first *Error in err's chain, and KindInternal when there is
// none: an error nobody classified is a bug until proven otherwise.
func KindOf(err error) Kind {
	if e, ok := As(err); ok {
		return e.Kind
	}
	return KindInternal
}

// Is reports whether err's chain holds an *Error of the given kind.
func Is(err error, kind Kind) bool {
	e, ok := As(err)
	return ok && e.Kind == kind
}
