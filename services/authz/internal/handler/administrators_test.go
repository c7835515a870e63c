package handler_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/authz/internal/handler"
)

func assignAdmin(t testing.TB, c authzv1connect.AuthzServiceClient, subject string) {
	t.Helper()
	if _, err := c.AssignRole(context.Background(), connect.NewRequest(&authzv1.AssignRoleRequest{Subject: subject, Role: "admin"})); err != nil {
		t.Fatalf("AssignRole(%s, admin): %v", subject, err)
	}
}

func revokeAdmin(c authzv1connect.AuthzServiceClient, subject string) error {
	_, err := c.RevokeRole(context.Background(), connect.NewRequest(&authzv1.RevokeRoleRequest{Subject: subject, Role: "admin"}))
	return err
}

// wantLastAdministrator fails unless err is the refusal to take the last active administrator:
// failed_precondition with the handler's message and nothing else.
func wantLastAdministrator(t testing.TB, err error, what string) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeFailedPrecondition || cerr.Message() != handler.ErrLastAdministrator.Message {
		t.Fatalf("%s: %v, want failed_precondition %q", what, err, handler.ErrLastAdministrator.Message)
	}
}

// administrators lists the subjects bound to admin everywhere.
func administrators(t testing.TB, c authzv1connect.AuthzServiceClient) []string {
	t.Helper()
	res, err := c.ListRoleBindings(context.Background(), connect.NewRequest(&authzv1.ListRoleBindingsRequest{Role: "admin", PageSize: 100}))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range res.Msg.GetBindings() {
		if b.GetResource() == "" {
			out = append(out, b.GetSubject())
		}
	}
	slices.Sort(out)
	return out
}

// TestTheLastActiveAdministratorKeepsTheRole revokes the admin role in every situation the
// rule distinguishes: the only holder, another active holder, another holder who is disabled,
// and holders that are services. A refusal changes nothing: the binding stays, checks still
// pass, and no revocation is audited.
func TestTheLastActiveAdministratorKeepsTheRole(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	blog := c.as(t, 0, "blog")
	var revoked []string // subjects whose revocations succeeded, as audit must record them
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			admin := c.as(t, 0, adminID, opts...)
			wantLastAdministrator(t, revokeAdmin(admin, adminID), "the only holder revoking their own role")

			// A service bound to the role is no administrator.
			service := "service:ops-" + name
			assignAdmin(t, admin, service)
			wantLastAdministrator(t, revokeAdmin(admin, adminID), "the only user holder, beside a service")

			// A holder who is disabled is no administrator either; revoking theirs loses nothing.
			disabled := uuid.NewString()
			assignAdmin(t, admin, disabled)
			c.auth.SetActive(disabled, false)
			wantLastAdministrator(t, revokeAdmin(admin, adminID), "the only active holder, beside a disabled one")
			if err := revokeAdmin(admin, disabled); err != nil {
				t.Fatalf("revoking from a disabled holder: %v", err)
			}
			revoked = append(revoked, disabled)

			// With another active holder, either may lose the role, even by their own hand.
			other := uuid.NewString()
			assignAdmin(t, admin, other)
			if err := revokeAdmin(admin, adminID); err != nil {
				t.Fatalf("revoking one's own role beside another active administrator: %v", err)
			}
			revoked = append(revoked, adminID)
			otherClient := c.as(t, 0, other, opts...)
			wantLastAdministrator(t, revokeAdmin(otherClient, other), "the other, now the only holder")
			assignAdmin(t, otherClient, adminID)
			if err := revokeAdmin(admin, other); err != nil {
				t.Fatalf("revoking another active administrator's role: %v", err)
			}
			revoked = append(revoked, other)

			// Services are not guarded.
			if err := revokeAdmin(admin, service); err != nil {
				t.Fatalf("revoking a service's admin role: %v", err)
			}
			revoked = append(revoked, service)

			// Every refusal left the role where it was.
			if got := administrators(t, admin); !slices.Equal(got, []string{adminID}) {
				t.Fatalf("administrators = %v, want [%s]", got, adminID)
			}
			if !check(t, blog, adminID, "identity.users.manage", "") {
				t.Fatal("the administrator lost their permissions")
			}
		})
	}
	// Events leave in the order they were written, so once the successful revocations' have
	// arrived, a refused one's would have too.
	var got []string
	testkit.Eventually(t, 10*time.Second, "the revocations reach audit", func() bool {
		got = got[:0]
		for _, ev := range c.auth.Events() {
			if ev.GetAction() == "authz.role.revoked" {
				got = append(got, ev.GetResource().GetId())
			}
		}
		return len(got) >= len(revoked)
	})
	slices.Sort(got)
	slices.Sort(revoked)
	if !slices.Equal(got, revoked) {
		t.Fatalf("revocations audited for %v, want only the successful ones, for %v", got, revoked)
	}
}

// TestDeletingOrNarrowingTheAdminRoleIsRefused: the other ways of losing the administrators.
func TestDeletingOrNarrowingTheAdminRoleIsRefused(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	ctx := context.Background()
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			admin := c.as(t, 0, adminID, opts...)
			if _, err := admin.DeleteRole(ctx, connect.NewRequest(&authzv1.DeleteRoleRequest{Name: "admin"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("deleting the admin role: %v, want failed_precondition", err)
			}
			_, err := admin.UpdateRole(ctx, connect.NewRequest(&authzv1.UpdateRoleRequest{
				Role: &authzv1.Role{Name: "admin", Permissions: []string{"authz.roles.manage"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}},
			}))
			if connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("taking * from the admin role: %v, want failed_precondition", err)
			}
		})
	}
}

// TestRevokingTheAdminRoleFailsClosedWithoutIdentity: when the identity service cannot say
// who is active, the admin role is not revoked, and other roles are revoked as ever.
func TestRevokingTheAdminRoleFailsClosedWithoutIdentity(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	ctx := context.Background()
	other := uuid.NewString()
	assignAdmin(t, c.as(t, 0, adminID), other)
	c.auth.Fail(identityv1connect.IdentityServiceFilterActiveUsersProcedure, true)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			admin := c.as(t, 0, adminID, opts...)
			if err := revokeAdmin(admin, other); connect.CodeOf(err) != connect.CodeUnavailable {
				t.Fatalf("revoking the admin role while identity is down: %v, want unavailable", err)
			}
			member := uuid.NewString()
			if _, err := admin.AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: member, Role: "member"})); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.RevokeRole(ctx, connect.NewRequest(&authzv1.RevokeRoleRequest{Subject: member, Role: "member"})); err != nil {
				t.Fatalf("revoking another role while identity is down: %v", err)
			}
		})
	}
	if got := administrators(t, c.as(t, 0, adminID)); len(got) != 2 {
		t.Fatalf("administrators after the outage = %v, want both", got)
	}
	c.auth.Fail(identityv1connect.IdentityServiceFilterActiveUsersProcedure, false)
	if err := revokeAdmin(c.as(t, 0, adminID), other); err != nil {
		t.Fatalf("revoking once identity is back: %v", err)
	}
}

// TestConcurrentRevocationsLeaveOneAdministrator revokes the admin role from both of two
// administrators at once, each on its own instance, ten times: every time exactly one
// revocation succeeds and the other is refused.
func TestConcurrentRevocationsLeaveOneAdministrator(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2, true)
	ctx := context.Background()
	// The revocations come from a role manager who is no administrator, so the race decides
	// nothing about the callers' own permissions.
	manager := uuid.NewString()
	root := c.as(t, 0, adminID)
	if _, err := root.CreateRole(ctx, connect.NewRequest(&authzv1.CreateRoleRequest{Role: &authzv1.Role{Name: "role-manager", Permissions: []string{"authz.roles.manage"}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := root.AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: manager, Role: "role-manager"})); err != nil {
		t.Fatal(err)
	}
	survivor := adminID
	names := []string{"connect", "grpc"}
	for round := range 10 {
		opts := protocols[names[round%2]]
		clients := []authzv1connect.AuthzServiceClient{c.as(t, 0, manager, opts...), c.as(t, 1, manager, opts...)}
		pair := []string{uuid.NewString(), uuid.NewString()}
		for _, a := range pair {
			assignAdmin(t, clients[0], a)
		}
		if err := revokeAdmin(clients[0], survivor); err != nil {
			t.Fatalf("round %d: revoking the last round's survivor beside two others: %v", round, err)
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range pair {
			wg.Go(func() {
				<-start
				errs[i] = revokeAdmin(clients[i], pair[i])
			})
		}
		close(start)
		wg.Wait()
		switch {
		case errs[0] == nil && errs[1] != nil:
			wantLastAdministrator(t, errs[1], "the second of two concurrent revocations")
			survivor = pair[1]
		case errs[1] == nil && errs[0] != nil:
			wantLastAdministrator(t, errs[0], "the second of two concurrent revocations")
			survivor = pair[0]
		default:
			t.Fatalf("round %d: concurrent revocations answered %v and %v; exactly one must succeed", round, errs[0], errs[1])
		}
		if got := administrators(t, clients[1]); !slices.Equal(got, []string{survivor}) {
			t.Fatalf("round %d: administrators = %v, want [%s]", round, got, survivor)
		}
	}
}

// TestListAdministratorsIsForIdentity lists users holding admin everywhere, and only for the
// identity service.
func TestListAdministratorsIsForIdentity(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	ctx := context.Background()
	admin := c.as(t, 0, adminID)
	other := uuid.NewString()
	assignAdmin(t, admin, other)
	assignAdmin(t, admin, "service:ops")
	if _, err := admin.AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: memberID, Role: "admin", Resource: "blog/post/1"})); err != nil {
		t.Fatal(err)
	}
	want := []string{adminID, other}
	slices.Sort(want)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			res, err := c.as(t, 0, "identity", opts...).ListAdministrators(ctx, connect.NewRequest(&authzv1.ListAdministratorsRequest{}))
			if err != nil || !slices.Equal(res.Msg.GetUserIds(), want) {
				t.Fatalf("ListAdministrators = %v, %v; want the users bound everywhere, %v", res, err, want)
			}
			if _, err := c.as(t, 0, "blog", opts...).ListAdministrators(ctx, connect.NewRequest(&authzv1.ListAdministratorsRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("blog listing administrators: %v, want permission_denied", err)
			}
			if _, err := c.as(t, 0, adminID, opts...).ListAdministrators(ctx, connect.NewRequest(&authzv1.ListAdministratorsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("a user listing administrators: %v, want unauthenticated", err)
			}
		})
	}
}
