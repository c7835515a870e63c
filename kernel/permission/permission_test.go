package permission_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/permission"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// grants is an authz peer over a real Connect server answering Check from a fixed table, and
// counting the calls it gets.
type grants struct {
	authzv1connect.UnimplementedAuthzServiceHandler
	mu      sync.Mutex
	allowed map[string]bool // subject|permission|resource
	calls   int
}

func (g *grants) Check(_ context.Context, req *connect.Request[authzv1.CheckRequest]) (*connect.Response[authzv1.CheckResponse], error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	k := req.Msg.GetSubject() + "|" + req.Msg.GetPermission() + "|" + req.Msg.GetResource()
	return connect.NewResponse(&authzv1.CheckResponse{Allowed: g.allowed[k]}), nil
}

func (g *grants) set(k string, v bool) { g.mu.Lock(); g.allowed[k] = v; g.mu.Unlock() }
func (g *grants) count() int           { g.mu.Lock(); defer g.mu.Unlock(); return g.calls }

func startGrants(t *testing.T) (*grants, authzv1connect.AuthzServiceClient) {
	t.Helper()
	g := &grants{allowed: map[string]bool{}}
	srv, err := server.New("authz", testkit.HTTPConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(authzv1connect.NewAuthzServiceHandler(g, srv.HandlerOptions()...))
	testkit.Serve(t, srv)
	return g, authzv1connect.NewAuthzServiceClient(testkit.H2CClient(t), srv.URL())
}

// events records what a Guard reports.
type events struct {
	mu   sync.Mutex
	list []*auditv1.Event
}

func (e *events) Record(_ context.Context, evs ...*auditv1.Event) error {
	e.mu.Lock()
	e.list = append(e.list, evs...)
	e.mu.Unlock()
	return nil
}

func (e *events) all() []*auditv1.Event { e.mu.Lock(); defer e.mu.Unlock(); return e.list }

func user(id string) context.Context {
	return authn.WithPrincipal(context.Background(), authn.Principal{Subject: id})
}

func TestRemoteCachesAnswersForTheirTTL(t *testing.T) {
	t.Parallel()
	g, client := startGrants(t)
	g.set("u1|blog.posts.create|", true)
	r := permission.NewRemote(client, 100, 300*time.Millisecond)
	ctx := context.Background()
	for range 5 {
		ok, err := r.Check(ctx, "u1", "blog.posts.create", "")
		if err != nil || !ok {
			t.Fatalf("Check = %v, %v", ok, err)
		}
	}
	if g.count() != 1 {
		t.Fatalf("%d remote checks for one question within the ttl, want 1", g.count())
	}
	g.set("u1|blog.posts.create|", false)
	testkit.Eventually(t, 5*time.Second, "a revoked grant is seen once the ttl passes", func() bool {
		ok, err := r.Check(ctx, "u1", "blog.posts.create", "")
		return err == nil && !ok
	})
}

func TestGuardRequiresAndRecordsDenials(t *testing.T) {
	t.Parallel()
	g, client := startGrants(t)
	g.set("u1|blog.posts.manage|blog/post/9", true)
	rec := &events{}
	guard := permission.NewGuard("blog", permission.NewRemote(client, 100, time.Second), rec, testkit.Logger(t))

	if err := guard.Require(user("u1"), "blog.posts.manage", "blog/post/9"); err != nil {
		t.Fatalf("granted on the resource: %v", err)
	}
	err := guard.Require(user("u1"), "blog.posts.manage", "blog/post/10")
	if errs.KindOf(err) != errs.KindPermissionDenied {
		t.Fatalf("another resource: %v, want permission_denied", err)
	}
	if err := guard.Require(context.Background(), "blog.posts.manage", ""); errs.KindOf(err) != errs.KindUnauthenticated {
		t.Fatalf("nobody acting: %v, want unauthenticated", err)
	}
	got := rec.all()
	if len(got) != 1 {
		t.Fatalf("%d denial events, want 1", len(got))
	}
	ev := got[0]
	if ev.GetAction() != "authz.denied" || ev.GetOutcome() != auditv1.Outcome_OUTCOME_DENIED || ev.GetActor().GetSubject() != "u1" ||
		ev.GetMetadata()["permission"] != "blog.posts.manage" || ev.GetMetadata()["resource"] != "blog/post/10" {
		t.Fatalf("denial event = %v", ev)
	}
}

// createUser is a handler at a real contract procedure that names a permission.
type createUser struct {
	identityv1connect.UnimplementedIdentityServiceHandler
}

func (createUser) CreateUser(context.Context, *connect.Request[identityv1.CreateUserRequest]) (*connect.Response[identityv1.CreateUserResponse], error) {
	return connect.NewResponse(&identityv1.CreateUserResponse{User: &identityv1.User{Id: "new"}}), nil
}

func (createUser) GetCurrentUser(ctx context.Context, _ *connect.Request[identityv1.GetCurrentUserRequest]) (*connect.Response[identityv1.GetCurrentUserResponse], error) {
	return connect.NewResponse(&identityv1.GetCurrentUserResponse{User: &identityv1.User{Id: authn.Subject(ctx)}}), nil
}

// asUser puts the user named in the X-Test-User header on the context, standing in for the
// authentication interceptor, which has tests of its own.
type asUser struct{}

func (asUser) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if u := req.Header().Get("X-Test-User"); u != "" {
			ctx = authn.WithPrincipal(ctx, authn.Principal{Subject: u})
		}
		return next(ctx, req)
	}
}
func (asUser) WrapStreamingClient(n connect.StreamingClientFunc) connect.StreamingClientFunc {
	return n
}
func (asUser) WrapStreamingHandler(n connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return n
}

func TestInterceptorEnforcesTheContractsPermission(t *testing.T) {
	t.Parallel()
	g, authzClient := startGrants(t)
	g.set("admin-1|identity.users.create|", true)
	rec := &events{}
	guard := permission.NewGuard("identity", permission.NewRemote(authzClient, 100, time.Second), rec, nil)
	srv, err := server.New("identity", testkit.HTTPConfig(), server.WithInterceptors(asUser{}, permission.NewInterceptor(guard)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(identityv1connect.NewIdentityServiceHandler(createUser{}, srv.HandlerOptions()...))
	testkit.Serve(t, srv)

	for name, opts := range map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}} {
		t.Run(name, func(t *testing.T) {
			client := identityv1connect.NewIdentityServiceClient(testkit.H2CClient(t), srv.URL(), opts...)
			call := func(u string) error {
				req := connect.NewRequest(&identityv1.CreateUserRequest{})
				req.Header().Set("X-Test-User", u)
				_, err := client.CreateUser(context.Background(), req)
				return err
			}
			if err := call("admin-1"); err != nil {
				t.Fatalf("admin: %v", err)
			}
			if err := call("member-1"); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("member: %v, want permission_denied", err)
			}
			// A method without a permission in its contract is not checked at all.
			req := connect.NewRequest(&identityv1.GetCurrentUserRequest{})
			req.Header().Set("X-Test-User", "member-1")
			if _, err := client.GetCurrentUser(context.Background(), req); err != nil {
				t.Fatalf("a method without a permission: %v", err)
			}
		})
	}
	for _, ev := range rec.all() {
		if ev.GetMetadata()["procedure"] != identityv1connect.IdentityServiceCreateUserProcedure {
			t.Fatalf("denial event lacks the procedure: %v", ev)
		}
	}
	if len(rec.all()) != 2 {
		t.Fatalf("%d denials recorded, want one per protocol", len(rec.all()))
	}
}
