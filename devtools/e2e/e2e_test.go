// Package e2e runs the platform's services as real processes on PostgreSQL and Consul and tests
// what crosses service boundaries.
package e2e_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// platform is every service running as its own process on the package's PostgreSQL database,
// registered in the package's Consul agent.
type platform struct {
	// output keeps every process's log lines, for scenarios that check what a process logged.
	output  *testkit.Buffer
	procs   map[string]*launcher.Process
	binDir  string
	env     []string
	logs    *launcher.Logs
	dataDir string
}

func startPlatform(t *testing.T) *platform {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	procs, err := launcher.Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := launcher.AssignPorts(procs, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	p := &platform{procs: map[string]*launcher.Process{}, binDir: t.TempDir(), dataDir: t.TempDir()}
	var out bytes.Buffer
	if err := launcher.Build(context.Background(), root, os.Environ(), &out, p.binDir, procs); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	base := append(os.Environ(),
		"DATABASE_URL="+testkit.DatabaseURL(t),
		"CONSUL_HTTP_ADDR="+testkit.Consul(t),
		"BASALT_CHECK_INTERVAL=1s", "BASALT_CHECK_TIMEOUT=500ms",
		"BASALT_OUTBOX_MAX_BACKOFF=500ms", "BASALT_OUTBOX_INTERVAL=100ms",
		// A second at most for another service to notice a role change.
		"BASALT_PERMISSION_CACHE_TTL=1s",
		"BASALT_GATEWAY_CONFIG="+gatewayConfigFile(t),
	)
	p.env, err = launcher.Environment(base, procs, p.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	p.output = &testkit.Buffer{}
	p.logs = launcher.NewLogs(io.MultiWriter(testkit.LogWriter(t), p.output), procs)
	for _, proc := range procs {
		p.procs[proc.Name] = proc
		if err := proc.Start(p.binDir, p.env, p.logs); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = launcher.StopAll(procs, 30*time.Second) })
	if err := launcher.WaitReady(context.Background(), procs, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *platform) url(name string) string { return p.procs[name].URL }

func gatewayConfigFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(gatewayConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *platform) secret(t *testing.T, name string) string {
	t.Helper()
	v, err := launcher.Secret(p.dataDir, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var protocols = map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}

func (p *platform) auth(t *testing.T, opts ...connect.ClientOption) authv1connect.AuthServiceClient {
	return authv1connect.NewAuthServiceClient(testkit.H2CClient(t), p.url("auth"), opts...)
}

func (p *platform) identity(t *testing.T, token string, opts ...connect.ClientOption) identityv1connect.IdentityServiceClient {
	return identityv1connect.NewIdentityServiceClient(testkit.H2CClient(t), p.url("identity"), append(opts, connect.WithInterceptors(authn.Bearer(token)))...)
}

func (p *platform) authz(t *testing.T, token string, opts ...connect.ClientOption) authzv1connect.AuthzServiceClient {
	return authzv1connect.NewAuthzServiceClient(testkit.H2CClient(t), p.url("authz"), append(opts, connect.WithInterceptors(authn.Bearer(token)))...)
}

func (p *platform) audit(t *testing.T, token string, opts ...connect.ClientOption) auditv1connect.AuditServiceClient {
	return auditv1connect.NewAuditServiceClient(testkit.H2CClient(t), p.url("audit"), append(opts, connect.WithInterceptors(authn.Bearer(token)))...)
}

func (p *platform) adminToken(t *testing.T) string {
	t.Helper()
	res, err := p.auth(t).Login(context.Background(), connect.NewRequest(&authv1.LoginRequest{Email: launcher.DefaultAdminEmail, Password: p.secret(t, "BASALT_ADMIN_PASSWORD")}))
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	return res.Msg.GetTokens().GetAccessToken()
}

// TestPlatform runs the cross-service scenarios one after another on one platform: starting
// the processes is the slow part, and one scenario stops and restarts the audit service.
func TestPlatform(t *testing.T) {
	p := startPlatform(t)
	admin := p.adminToken(t)
	ctx := context.Background()
	// The admin role reaches authz through identity's grant relay shortly after start-up.
	testkit.Eventually(t, 30*time.Second, "the administrator holds the admin role", func() bool {
		_, err := p.identity(t, admin).ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{}))
		return err == nil
	})

	t.Run("the last active administrator cannot be disabled, deleted or lose the admin role", func(t *testing.T) {
		me, err := p.identity(t, admin).GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		root := me.Msg.GetUser().GetId()
		// A second administrator, disabled: identity asks authz who the administrators are, and
		// lets this one go because the bootstrap administrator is active.
		reg, err := p.auth(t).Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "second-admin@example.com", Password: "a second administrator", DisplayName: "S"}))
		if err != nil {
			t.Fatal(err)
		}
		second := reg.Msg.GetUser().GetId()
		if _, err := p.authz(t, admin).AssignRole(ctx, connect.NewRequest(&authzv1.AssignRoleRequest{Subject: second, Role: "admin"})); err != nil {
			t.Fatal(err)
		}
		if _, err := p.identity(t, admin).DisableUser(ctx, connect.NewRequest(&identityv1.DisableUserRequest{UserId: second})); err != nil {
			t.Fatalf("disabling a second administrator: %v", err)
		}
		for name, opts := range protocols {
			refused := func(what string, err error) {
				t.Helper()
				if connect.CodeOf(err) != connect.CodeFailedPrecondition {
					t.Fatalf("%s: %s of the bootstrap administrator: %v, want failed_precondition", name, what, err)
				}
			}
			_, err := p.identity(t, admin, opts...).DisableUser(ctx, connect.NewRequest(&identityv1.DisableUserRequest{UserId: root}))
			refused("DisableUser", err)
			_, err = p.identity(t, admin, opts...).DeleteUser(ctx, connect.NewRequest(&identityv1.DeleteUserRequest{UserId: root}))
			refused("DeleteUser", err)
			// authz asks identity who is active: the second administrator is not.
			_, err = p.authz(t, admin, opts...).RevokeRole(ctx, connect.NewRequest(&authzv1.RevokeRoleRequest{Subject: root, Role: "admin"}))
			refused("RevokeRole", err)
		}
		if _, err := p.identity(t, admin).ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{})); err != nil {
			t.Fatalf("the bootstrap administrator after the refusals: %v", err)
		}
	})

	t.Run("a password change ends every session at once", func(t *testing.T) {
		for name, opts := range protocols {
			email := "pw-" + name + "@example.com"
			reg, err := p.auth(t, opts...).Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: email, Password: "the first password", DisplayName: "P"}))
			if err != nil {
				t.Fatal(err)
			}
			other, err := p.auth(t, opts...).Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: email, Password: "the first password"}))
			if err != nil {
				t.Fatal(err)
			}
			me := p.identity(t, reg.Msg.GetTokens().GetAccessToken(), opts...)
			if _, err := me.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "the first password", NewPassword: "the second password"})); err != nil {
				t.Fatal(err)
			}
			// The other session's access token is refused by identity at once (its session
			// check is uncached here only up to the cache's few seconds, so allow for that).
			testkit.Eventually(t, 10*time.Second, "the other session's token is refused", func() bool {
				_, err := p.identity(t, other.Msg.GetTokens().GetAccessToken(), opts...).GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
				return connect.CodeOf(err) == connect.CodeUnauthenticated
			})
			if _, err := p.auth(t, opts...).Refresh(ctx, connect.NewRequest(&authv1.RefreshRequest{RefreshToken: other.Msg.GetTokens().GetRefreshToken()})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("the other session's refresh token after the change: %v", err)
			}
			if _, err := p.auth(t, opts...).Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: email, Password: "the second password"})); err != nil {
				t.Fatalf("the new password: %v", err)
			}
		}
	})

	t.Run("a disabled user cannot log in and loses their sessions", func(t *testing.T) {
		reg, err := p.auth(t).Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "off@example.com", Password: "a password to lose", DisplayName: "O"}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.identity(t, admin).DisableUser(ctx, connect.NewRequest(&identityv1.DisableUserRequest{UserId: reg.Msg.GetUser().GetId()})); err != nil {
			t.Fatal(err)
		}
		if _, err := p.auth(t).Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "off@example.com", Password: "a password to lose"})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("a disabled user's login: %v", err)
		}
		testkit.Eventually(t, 10*time.Second, "the disabled user's token is refused", func() bool {
			_, err := p.identity(t, reg.Msg.GetTokens().GetAccessToken()).GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
			return connect.CodeOf(err) == connect.CodeUnauthenticated
		})
	})

	t.Run("a member is denied administration and the denial is audited", func(t *testing.T) {
		reg, err := p.auth(t).Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "nosy@example.com", Password: "a nosy password", DisplayName: "N"}))
		if err != nil {
			t.Fatal(err)
		}
		member := reg.Msg.GetTokens().GetAccessToken()
		if _, err := p.identity(t, member).ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("a member listing users: %v", err)
		}
		if _, err := p.audit(t, member).ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("a member reading the audit log: %v", err)
		}
		testkit.Eventually(t, 20*time.Second, "both denials reach the audit log", func() bool {
			res, err := p.audit(t, admin).ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{Filter: &auditv1.EventFilter{
				Action: "authz.denied", ActorSubject: reg.Msg.GetUser().GetId(),
			}}))
			return err == nil && len(res.Msg.GetEvents()) == 2
		})
	})

	t.Run("events written while audit is down arrive once it is back, each once", func(t *testing.T) {
		count := func() int64 { return testkit.QueryInt(t, `SELECT count(*) FROM audit.events`) }
		settle := func() int64 {
			// Wait until nothing more arrives for a second.
			last := count()
			for {
				time.Sleep(time.Second)
				n := count()
				if n == last {
					return n
				}
				last = n
			}
		}
		before := settle()
		if err := p.procs["audit"].Stop(30 * time.Second); err != nil {
			t.Fatalf("stopping audit: %v", err)
		}
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				email := "outage" + string(rune('a'+i)) + "@example.com"
				if _, err := p.auth(t).Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: email, Password: "registered while audit is down", DisplayName: "D"})); err != nil {
					t.Errorf("registering while audit is down: %v", err)
				}
			})
		}
		wg.Wait()
		if count() != before {
			t.Fatal("events reached a stopped audit service")
		}
		if err := p.procs["audit"].Start(p.binDir, p.env, p.logs); err != nil {
			t.Fatal(err)
		}
		if err := launcher.WaitReady(ctx, []*launcher.Process{p.procs["audit"]}, time.Minute); err != nil {
			t.Fatal(err)
		}
		// Each registration is three events: identity.user.created, authz.role.assigned (the
		// member role) and auth.register.
		want := before + 15
		testkit.Eventually(t, 60*time.Second, "the queued events arrive", func() bool { return count() >= want })
		if got := settle(); got != want {
			t.Fatalf("the log grew by %d events, want exactly 15", got-before)
		}
		if dup := testkit.QueryInt(t, `SELECT count(*) - count(DISTINCT id) FROM audit.events`); dup != 0 {
			t.Fatalf("%d duplicated events", dup)
		}
		res, err := p.audit(t, admin).VerifyLog(ctx, connect.NewRequest(&auditv1.VerifyLogRequest{}))
		if err != nil || !res.Msg.GetOk() || res.Msg.GetEventsChecked() != want {
			t.Fatalf("VerifyLog after the outage = %v, %v", res, err)
		}
	})

	gatewayScenarios(t, p, admin)

	t.Run("a blog post's life through the gateway", func(t *testing.T) { blogJourney(t, p) })

	t.Run("a grpc-go program calls the gateway with the generated stubs", func(t *testing.T) { grpcGoClient(t, p) })
}
