package errs_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/basaltplatform/basalt/kernel/errs"
)

func TestKindOfFollowsTheChain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want errs.Kind
	}{
		{"plain error is internal", errors.New("boom"), errs.KindInternal},
		{"domain error", errs.NotFound("user %q", "x"), errs.KindNotFound},
		{"wrapped domain error", fmt.Errorf("store: %w", errs.AlreadyExists("email taken")), errs.KindAlreadyExists},
		{"joined", errors.Join(errors.New("a"), errs.Unauthenticated("no token")), errs.KindUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := errs.KindOf(tt.err); got != tt.want {
				t.Fatalf("KindOf = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestViolationsCollectsEveryField(t *testing.T) {
	t.Parallel()
	var v errs.Violations
	if v.Err() != nil {
		t.Fatal("no violations must be no error")
	}
	v.Add("email", "must be an address")
	v.Add("password", "too short")
	e, ok := errs.As(v.Err())
	if !ok || e.Kind != errs.KindInvalidArgument || len(e.Fields) != 2 {
		t.Fatalf("got %#v", v.Err())
	}
	if e.Message != "email: must be an address (and 1 more)" {
		t.Fatalf("message = %q", e.Message)
	}
}

func TestCauseStaysOutOfTheMessage(t *testing.T) {
	t.Parallel()
	cause := errors.New("pq: password authentication failed for user admin")
	e := errs.Unavailable(cause, "the database is unavailable")
	if e.Message != "the database is unavailable" {
		t.Fatalf("message = %q", e.Message)
	}
	if !errors.Is(e, cause) {
		t.Fatal("the cause must stay reachable for logs")
	}
}
