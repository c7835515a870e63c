package handler_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// administrator registers a user who holds the admin role at authz, with the identity
// permissions it grants, and returns them with an access token.
func (e *env) administrator(t *testing.T, email string) (*identityv1.User, string) {
	t.Helper()
	u := e.register(t, email, "an administrator's password")
	e.auth.Bind(u.GetId(), "admin")
	for _, p := range []string{"identity.users.create", "identity.users.read", "identity.users.manage"} {
		e.auth.Grant(u.GetId(), p, "")
	}
	return u, e.auth.Token(t, u.GetId())
}

// takeOuts are the three ways of taking a user out of the active ones, with the word a refusal
// uses for each.
var takeOuts = []struct {
	name, what string
	do         func(identityv1connect.IdentityServiceClient, string) error
}{
	{"DisableUser", "disabled", func(c identityv1connect.IdentityServiceClient, id string) error {
		_, err := c.DisableUser(context.Background(), connect.NewRequest(&identityv1.DisableUserRequest{UserId: id}))
		return err
	}},
	{"UpdateUser", "disabled", func(c identityv1connect.IdentityServiceClient, id string) error {
		disabled := identityv1.UserStatus_USER_STATUS_DISABLED
		_, err := c.UpdateUser(context.Background(), connect.NewRequest(&identityv1.UpdateUserRequest{UserId: id, Status: &disabled}))
		return err
	}},
	{"DeleteUser", "deleted", func(c identityv1connect.IdentityServiceClient, id string) error {
		_, err := c.DeleteUser(context.Background(), connect.NewRequest(&identityv1.DeleteUserRequest{UserId: id}))
		return err
	}},
}

// wantLastAdministrator fails unless err refuses to take the last active administrator, saying
// so in words a client can act on.
func wantLastAdministrator(t *testing.T, err error, what, situation string) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeFailedPrecondition ||
		!strings.HasPrefix(cerr.Message(), "the last active administrator cannot be "+what+";") {
		t.Fatalf("%s: %v, want failed_precondition: the last active administrator cannot be %s", situation, err, what)
	}
}

func (e *env) status(t *testing.T, id string) identityv1.UserStatus {
	t.Helper()
	res, err := e.as(t, e.admin(t)).GetUser(context.Background(), connect.NewRequest(&identityv1.GetUserRequest{UserId: id}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return identityv1.UserStatus_USER_STATUS_UNSPECIFIED
	}
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetUser().GetStatus()
}

// TestTheLastActiveAdministratorStays disables and deletes administrators in every situation
// the rule distinguishes, in each of the three ways: alone, an administrator cannot go, even by
// their own hand; beside another active one, either may; beside a disabled one, they cannot.
// A refusal changes nothing: the user stays active, keeps their sessions, and nothing is
// audited.
func TestTheLastActiveAdministratorStays(t *testing.T) {
	t.Parallel()
	e := start(t)
	root, rootTok := e.administrator(t, "root@example.com")
	var gone []string // administrators taken out, as audit must record them
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			self := e.as(t, rootTok, opts...)
			for _, to := range takeOuts {
				wantLastAdministrator(t, to.do(self, root.GetId()), to.what, "the only administrator, "+to.name+" of oneself")
			}

			for i, to := range takeOuts {
				other, otherTok := e.administrator(t, name+"-self-"+strconv.Itoa(i)+"@example.com")
				if err := to.do(e.as(t, otherTok, opts...), other.GetId()); err != nil {
					t.Fatalf("%s of oneself beside another active administrator: %v", to.name, err)
				}
				gone = append(gone, other.GetId())
			}

			disabled, _ := e.administrator(t, name+"-disabled@example.com")
			if err := takeOuts[0].do(self, disabled.GetId()); err != nil {
				t.Fatalf("disabling another administrator: %v", err)
			}
			gone = append(gone, disabled.GetId())
			for _, to := range takeOuts {
				wantLastAdministrator(t, to.do(self, root.GetId()), to.what, "the only active administrator beside a disabled one, "+to.name)
			}
			if err := takeOuts[2].do(self, disabled.GetId()); err != nil {
				t.Fatalf("deleting a disabled administrator: %v", err)
			}
			gone = append(gone, disabled.GetId())
		})
	}
	if got := e.status(t, root.GetId()); got != identityv1.UserStatus_USER_STATUS_ACTIVE {
		t.Fatalf("the refused administrator is %v, want active", got)
	}
	for _, r := range e.auth.Revocations() {
		if r.GetUserId() == root.GetId() {
			t.Fatalf("the refused administrator's sessions were ended: %v", r)
		}
	}
	// Events leave in the order they were written, so once those of the administrators who
	// went have arrived, any of a refusal would have too.
	var got []string
	testkit.Eventually(t, 10*time.Second, "the events reach audit", func() bool {
		got = got[:0]
		for _, ev := range e.auth.Events() {
			if ev.GetAction() == "identity.user.disabled" || ev.GetAction() == "identity.user.deleted" {
				got = append(got, ev.GetResource().GetId())
			}
		}
		return len(got) >= len(gone)
	})
	slices.Sort(got)
	slices.Sort(gone)
	if !slices.Equal(got, gone) {
		t.Fatalf("disabled or deleted users audited: %v, want only %v", got, gone)
	}
}

// TestTakingUsersOutFailsClosedWithoutAuthz: when the authz service cannot say who the
// administrators are, no user is disabled or deleted, and none loses their sessions.
func TestTakingUsersOutFailsClosedWithoutAuthz(t *testing.T) {
	t.Parallel()
	e := start(t)
	u := e.register(t, "plain@example.com", "a plain user's password")
	e.auth.Fail(authzv1connect.AuthzServiceListAdministratorsProcedure, true)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			for _, to := range takeOuts {
				if err := to.do(e.as(t, e.admin(t), opts...), u.GetId()); connect.CodeOf(err) != connect.CodeUnavailable {
					t.Fatalf("%s while authz is down: %v, want unavailable", to.name, err)
				}
			}
		})
	}
	if got := e.status(t, u.GetId()); got != identityv1.UserStatus_USER_STATUS_ACTIVE {
		t.Fatalf("the user is %v, want active", got)
	}
	if revs := e.auth.Revocations(); len(revs) != 0 {
		t.Fatalf("sessions ended while nothing changed: %v", revs)
	}
	e.auth.Fail(authzv1connect.AuthzServiceListAdministratorsProcedure, false)
	if err := takeOuts[0].do(e.as(t, e.admin(t)), u.GetId()); err != nil {
		t.Fatalf("disabling once authz is back: %v", err)
	}
}

// TestConcurrentTakeOutsLeaveOneAdministrator takes both of two active administrators out at
// once, ten times, in two of the three ways: every time exactly one goes and the other is
// refused.
func TestConcurrentTakeOutsLeaveOneAdministrator(t *testing.T) {
	t.Parallel()
	e := start(t)
	survivor, _ := e.administrator(t, "root@example.com")
	names := []string{"connect", "grpc"}
	for round := range 10 {
		client := e.as(t, e.admin(t), protocols[names[round%2]]...)
		pair := []*identityv1.User{}
		for i := range 2 {
			u, _ := e.administrator(t, "round"+strconv.Itoa(round)+"-"+strconv.Itoa(i)+"@example.com")
			pair = append(pair, u)
		}
		if err := takeOuts[0].do(client, survivor.GetId()); err != nil {
			t.Fatalf("round %d: disabling the last round's survivor beside two others: %v", round, err)
		}
		ways := []int{round % 3, (round + 1) % 3}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range pair {
			wg.Go(func() {
				<-start
				errs[i] = takeOuts[ways[i]].do(client, pair[i].GetId())
			})
		}
		close(start)
		wg.Wait()
		var went int
		switch {
		case errs[0] == nil && errs[1] != nil:
			went, survivor = 0, pair[1]
		case errs[1] == nil && errs[0] != nil:
			went, survivor = 1, pair[0]
		default:
			t.Fatalf("round %d: concurrent %s and %s answered %v and %v; exactly one must succeed",
				round, takeOuts[ways[0]].name, takeOuts[ways[1]].name, errs[0], errs[1])
		}
		wantLastAdministrator(t, errs[1-went], takeOuts[ways[1-went]].what, "the second of two concurrent take-outs")
		if got := e.status(t, survivor.GetId()); got != identityv1.UserStatus_USER_STATUS_ACTIVE {
			t.Fatalf("round %d: the survivor is %v, want active", round, got)
		}
		if got := e.status(t, pair[went].GetId()); got == identityv1.UserStatus_USER_STATUS_ACTIVE {
			t.Fatalf("round %d: the administrator whose %s succeeded is still active", round, takeOuts[ways[went]].name)
		}
	}
}

// TestFilterActiveUsersIsForAuthz answers which users exist and are active, only to the authz
// service, and validates the ids.
func TestFilterActiveUsersIsForAuthz(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	active := e.register(t, "active@example.com", "an active user's password")
	disabled := e.register(t, "disabled@example.com", "a disabled user's password")
	if err := takeOuts[0].do(e.as(t, e.admin(t)), disabled.GetId()); err != nil {
		t.Fatal(err)
	}
	unknown := uuid.Must(uuid.NewV7()).String()
	tooMany := make([]string, 1001)
	for i := range tooMany {
		tooMany[i] = active.GetId()
	}
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			authz := e.asService(t, "authz", opts...)
			res, err := authz.FilterActiveUsers(ctx, connect.NewRequest(&identityv1.FilterActiveUsersRequest{UserIds: []string{disabled.GetId(), active.GetId(), unknown, active.GetId()}}))
			if err != nil || !slices.Equal(res.Msg.GetUserIds(), []string{active.GetId()}) {
				t.Fatalf("FilterActiveUsers = %v, %v; want only the active user, once", res, err)
			}
			for _, ids := range [][]string{nil, {"not-an-id"}, tooMany} {
				if _, err := authz.FilterActiveUsers(ctx, connect.NewRequest(&identityv1.FilterActiveUsersRequest{UserIds: ids})); connect.CodeOf(err) != connect.CodeInvalidArgument {
					t.Fatalf("FilterActiveUsers(%d ids): %v, want invalid_argument", len(ids), err)
				}
			}
			blog := e.asService(t, "blog", opts...)
			if _, err := blog.FilterActiveUsers(ctx, connect.NewRequest(&identityv1.FilterActiveUsersRequest{UserIds: []string{active.GetId()}})); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("blog asking: %v, want permission_denied", err)
			}
		})
	}
}
