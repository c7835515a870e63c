package handler_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/permission"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
	"github.com/basaltplatform/basalt/services/authz/internal/handler"
	"github.com/basaltplatform/basalt/services/authz/internal/index"
	"github.com/basaltplatform/basalt/services/authz/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// Subjects of the tests: user ids, as authz requires.
const (
	adminID  = "0193e6c4-0000-7000-8000-00000000000a"
	memberID = "0193e6c4-0000-7000-8000-00000000000b"
	otherID  = "0193e6c4-0000-7000-8000-00000000000c"
)

// cluster is one or more authz instances over one schema, with an Authority for the rest.
type cluster struct {
	auth *authority.Authority
	urls []string
}

// startCluster runs n authz instances on one database schema; each knows all of them through
// static discovery, as Consul would tell them.
func startCluster(t testing.TB, n int, broadcast bool) *cluster {
	t.Helper()
	a := authority.New(t)
	base := a.ServiceConfig(t, "authz")
	var urls []string
	cfgs := make([]config.Service, n)
	for i := range cfgs {
		cfgs[i] = base
		addr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
		cfgs[i].HTTP.ListenAddr = addr
		urls = append(urls, "http://"+addr)
	}
	for i := range cfgs {
		static := map[string][]string{}
		for k, v := range base.Discovery.Static {
			static[k] = v
		}
		static["authz"] = urls
		cfgs[i].Discovery.Static = static
		startInstance(t, cfgs[i], broadcast)
	}
	c := &cluster{auth: a, urls: urls}
	// The bootstrap administrator, as identity would grant it.
	if _, err := c.as(t, 0, "identity").GrantRole(context.Background(), connect.NewRequest(&authzv1.GrantRoleRequest{Subject: adminID, Role: "admin"})); err != nil {
		t.Fatal(err)
	}
	return c
}

func startInstance(t testing.TB, cfg config.Service, broadcast bool) {
	t.Helper()
	ctx := context.Background()
	svc, err := service.New(ctx, cfg, testkit.LogWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(svc.DB, svc.Outbox)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ix := index.New()
	var peers index.Peers
	if broadcast {
		peers = handler.NewPeers(svc.RPC, 2*time.Second)
	}
	syncer := index.NewSyncer(ix, st, peers, svc.DB, store.Channel, time.Hour, testkit.Logger(t))
	if err := syncer.CatchUp(ctx, 0); err != nil {
		t.Fatal(err)
	}
	svc.Go(syncer.Run)
	svc.UseChecker(permission.CheckerFunc(ix.Allowed))
	users := rpcclient.For(svc.RPC, "identity", identityv1connect.NewIdentityServiceClient)
	svc.Server.Mount(authzv1connect.NewAuthzServiceHandler(handler.New(st, ix, syncer, svc.Outbox, users), svc.Server.HandlerOptions()...))
	testkit.Serve(t, svc)
}

// as returns a client of instance i calling as who: a user id (with a token from the
// Authority) or a service name.
func (c *cluster) as(t testing.TB, i int, who string, opts ...connect.ClientOption) authzv1connect.AuthzServiceClient {
	t.Helper()
	switch {
	case uuid.Validate(who) == nil:
		opts = append(opts, connect.WithInterceptors(authn.Bearer(c.auth.Token(t, who))))
	case who == "":
	default:
		tokens, err := authn.NewServiceTokens(who, []byte(authority.InternalSecret))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, connect.WithInterceptors(authn.NewClientCredentials(tokens)))
	}
	return authzv1connect.NewAuthzServiceClient(testkit.H2CClient(t), c.urls[i], opts...)
}

var protocols = map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}

func check(t testing.TB, c authzv1connect.AuthzServiceClient, subject, perm, resource string) bool {
	t.Helper()
	res, err := c.Check(context.Background(), connect.NewRequest(&authzv1.CheckRequest{Subject: subject, Permission: perm, Resource: resource}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res.Msg.GetAllowed()
}

// TestWriteThenCheckOnAnotherInstance assigns on one instance and checks on the other at once,
// many times over, alternating assignment and revocation: every check must see the write.
func TestWriteThenCheckOnAnotherInstance(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2, true)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			writer, reader := c.as(t, 0, adminID, opts...), c.as(t, 1, "blog", opts...)
			ctx := context.Background()
			resource := "blog/post/" + name
			for i := range 10 {
				if _, err := writer.AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: memberID, Role: "admin", Resource: resource})); err != nil {
					t.Fatal(err)
				}
				if !check(t, reader, memberID, "blog.posts.delete", resource) {
					t.Fatalf("round %d: the other instance did not see the assignment", i)
				}
				if _, err := writer.RevokeRole(ctx, connect.NewRequest(&authzv1.RevokeRoleRequest{Subject: memberID, Role: "admin", Resource: resource})); err != nil {
					t.Fatal(err)
				}
				if check(t, reader, memberID, "blog.posts.delete", resource) {
					t.Fatalf("round %d: the other instance did not see the revocation", i)
				}
			}
		})
	}
}

// TestNotificationsAloneKeepInstancesInStep runs instances without the broadcast: a change
// still reaches the other instance, through PostgreSQL LISTEN/NOTIFY.
func TestNotificationsAloneKeepInstancesInStep(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2, false)
	ctx := context.Background()
	if _, err := c.as(t, 0, adminID).AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: otherID, Role: "member"})); err != nil {
		t.Fatal(err)
	}
	reader := c.as(t, 1, "blog")
	testkit.Eventually(t, 10*time.Second, "the notification reaches the other instance", func() bool {
		return check(t, reader, otherID, "blog.posts.create", "")
	})
}

func TestRoleAdministrationNeedsThePermission(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	ctx := context.Background()
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			role := &authzv1.Role{Name: "editor-" + name, Description: "Edits posts.", Permissions: []string{"blog.posts.update", "blog.posts.update", "blog.comments.*"}}
			if _, err := c.as(t, 0, memberID, opts...).CreateRole(ctx, connect.NewRequest(&authzv1.CreateRoleRequest{Role: role})); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("a member creating a role: %v", err)
			}
			if _, err := c.as(t, 0, "", opts...).ListRoles(ctx, connect.NewRequest(&authzv1.ListRolesRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("an anonymous caller: %v", err)
			}
			admin := c.as(t, 0, adminID, opts...)
			res, err := admin.CreateRole(ctx, connect.NewRequest(&authzv1.CreateRoleRequest{Role: role}))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Msg.GetRole().GetPermissions(); fmt.Sprint(got) != "[blog.comments.* blog.posts.update]" {
				t.Fatalf("permissions stored as %v; want sorted and without duplicates", got)
			}
			if _, err := admin.CreateRole(ctx, connect.NewRequest(&authzv1.CreateRoleRequest{Role: role})); connect.CodeOf(err) != connect.CodeAlreadyExists {
				t.Fatalf("creating it again: %v", err)
			}
			upd, err := admin.UpdateRole(ctx, connect.NewRequest(&authzv1.UpdateRoleRequest{
				Role: &authzv1.Role{Name: role.GetName(), Permissions: []string{"blog.*"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}},
			}))
			if err != nil || fmt.Sprint(upd.Msg.GetRole().GetPermissions()) != "[blog.*]" || upd.Msg.GetRole().GetDescription() != "Edits posts." {
				t.Fatalf("UpdateRole = %v, %v; the mask must leave the description alone", upd, err)
			}
			if _, err := admin.AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: otherID, Role: role.GetName()})); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.DeleteRole(ctx, connect.NewRequest(&authzv1.DeleteRoleRequest{Name: role.GetName()})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("deleting a bound role: %v", err)
			}
			if _, err := admin.RevokeRole(ctx, connect.NewRequest(&authzv1.RevokeRoleRequest{Subject: otherID, Role: role.GetName()})); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.DeleteRole(ctx, connect.NewRequest(&authzv1.DeleteRoleRequest{Name: role.GetName()})); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.GetRole(ctx, connect.NewRequest(&authzv1.GetRoleRequest{Name: role.GetName()})); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("a deleted role: %v", err)
			}
		})
	}
	admin := c.as(t, 0, adminID)
	if _, err := admin.DeleteRole(ctx, connect.NewRequest(&authzv1.DeleteRoleRequest{Name: "member"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("deleting a builtin role: %v", err)
	}
	_, err := admin.UpdateRole(ctx, connect.NewRequest(&authzv1.UpdateRoleRequest{
		Role: &authzv1.Role{Name: "admin", Permissions: []string{"blog.*"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"permissions"}},
	}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("narrowing the admin role: %v", err)
	}
}

func TestSeededRolesAndEffectivePermissions(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	ctx := context.Background()
	if _, err := c.as(t, 0, "auth").GrantRole(ctx, connect.NewRequest(&authzv1.GrantRoleRequest{Subject: memberID, Role: "member"})); err != nil {
		t.Fatal(err)
	}
	roles, err := c.as(t, 0, adminID).ListRoles(ctx, connect.NewRequest(&authzv1.ListRolesRequest{PageSize: 1}))
	if err != nil || roles.Msg.GetRoles()[0].GetName() != "admin" || !roles.Msg.GetRoles()[0].GetBuiltin() || roles.Msg.GetNextPageToken() == "" {
		t.Fatalf("first page of roles = %v, %v", roles, err)
	}
	next, err := c.as(t, 0, adminID).ListRoles(ctx, connect.NewRequest(&authzv1.ListRolesRequest{PageSize: 1, PageToken: roles.Msg.GetNextPageToken()}))
	if err != nil || next.Msg.GetRoles()[0].GetName() != "member" {
		t.Fatalf("second page of roles = %v, %v", next, err)
	}
	perms, err := c.as(t, 0, memberID).ListSubjectPermissions(ctx, connect.NewRequest(&authzv1.ListSubjectPermissionsRequest{Subject: memberID}))
	if err != nil || len(perms.Msg.GetGrants()) != 1 || perms.Msg.GetGrants()[0].GetPermission() != "blog.posts.create" {
		t.Fatalf("a member's permissions = %v, %v", perms, err)
	}
	if _, err := c.as(t, 0, "blog").GrantRole(ctx, connect.NewRequest(&authzv1.GrantRoleRequest{Subject: memberID, Role: "admin"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("blog granting a role: %v, want permission_denied (only auth and identity may)", err)
	}
}

func TestWhoMayAskAboutWhom(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	tests := []struct {
		name, asker, subject string
		want                 connect.Code
	}{
		{"a subject about itself", memberID, memberID, 0},
		{"a subject about another", memberID, otherID, connect.CodePermissionDenied},
		{"an administrator about another", adminID, otherID, 0},
		{"a service about anyone", "blog", otherID, 0},
		{"an anonymous caller", "", otherID, connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.as(t, 0, tt.asker).Check(context.Background(), connect.NewRequest(&authzv1.CheckRequest{Subject: tt.subject, Permission: "blog.posts.create"}))
			if (tt.want == 0 && err != nil) || (tt.want != 0 && connect.CodeOf(err) != tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBatchCheckAnswersInOrderAndValidates(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1, true)
	ctx := context.Background()
	client := c.as(t, 0, "blog")
	res, err := client.BatchCheck(ctx, connect.NewRequest(&authzv1.BatchCheckRequest{Checks: []*authzv1.CheckRequest{
		{Subject: adminID, Permission: "identity.users.manage"},
		{Subject: otherID, Permission: "identity.users.manage"},
		{Subject: adminID, Permission: "blog.posts.delete", Resource: "blog/post/1"},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, r := range res.Msg.GetResults() {
		got = append(got, r.GetAllowed())
	}
	if fmt.Sprint(got) != "[true false true]" {
		t.Fatalf("results = %v", got)
	}
	tests := []*authzv1.CheckRequest{
		{Subject: "not-a-subject", Permission: "blog.posts.create"},
		{Subject: otherID, Permission: "blog.*"},
		{Subject: otherID, Permission: "blog.posts.create", Resource: "Not A Path"},
	}
	for _, bad := range tests {
		if _, err := client.Check(ctx, connect.NewRequest(bad)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("Check(%v): %v, want invalid_argument", bad, err)
		}
	}
	if _, err := client.BatchCheck(ctx, connect.NewRequest(&authzv1.BatchCheckRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("an empty batch: %v", err)
	}
}

// BenchmarkCheckOverConnect measures a Check call from a service through the network stack:
// authentication of the service credential, the handler and the index.
func BenchmarkCheckOverConnect(b *testing.B) {
	c := startCluster(b, 1, true)
	client := c.as(b, 0, "blog")
	req := connect.NewRequest(&authzv1.CheckRequest{Subject: adminID, Permission: "blog.posts.update", Resource: "blog/post/1"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Check(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchCheck measures a batch of 100 checks in one call.
func BenchmarkBatchCheck(b *testing.B) {
	c := startCluster(b, 1, true)
	client := c.as(b, 0, "blog")
	var checks []*authzv1.CheckRequest
	for i := range 100 {
		checks = append(checks, &authzv1.CheckRequest{Subject: adminID, Permission: "blog.posts.update", Resource: "blog/post/" + strconv.Itoa(i)})
	}
	req := connect.NewRequest(&authzv1.BatchCheckRequest{Checks: checks})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.BatchCheck(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
