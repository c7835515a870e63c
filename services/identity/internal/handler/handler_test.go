package handler_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
	"github.com/basaltplatform/basalt/services/identity/internal/grants"
	"github.com/basaltplatform/basalt/services/identity/internal/handler"
	"github.com/basaltplatform/basalt/services/identity/internal/password"
	"github.com/basaltplatform/basalt/services/identity/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// countingHasher counts the key derivations behind each operation.
type countingHasher struct {
	*password.Hasher
	verifies atomic.Int64
}

func (c *countingHasher) Verify(ctx context.Context, pw, enc string) (bool, bool, error) {
	c.verifies.Add(1)
	return c.Hasher.Verify(ctx, pw, enc)
}

func (c *countingHasher) VerifyDummy(ctx context.Context, pw string) error {
	c.verifies.Add(1)
	return c.Hasher.VerifyDummy(ctx, pw)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is an identity service running on the real kernel wiring, with an Authority standing in
// for auth, authz and audit.
type env struct {
	auth   *authority.Authority
	url    string
	clock  *clock
	hasher *countingHasher
	svc    *service.Service
}

func start(t *testing.T) *env {
	t.Helper()
	a := authority.New(t)
	ctx := context.Background()
	svc, err := service.New(ctx, a.ServiceConfig(t, "identity"), testkit.LogWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(svc.DB, svc.Outbox)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{auth: a, clock: &clock{t: time.Now()}, hasher: &countingHasher{Hasher: password.NewHasher(password.Default, 4)}, svc: svc}
	authz := rpcclient.For(svc.RPC, "authz", authzv1connect.NewAuthzServiceClient)
	api := handler.New(st, e.hasher, svc.Guard, svc.Outbox, rpcclient.For(svc.RPC, "auth", authv1connect.NewAuthServiceClient), authz,
		handler.WithClock(e.clock.now), handler.WithLockout(store.Lockout{MaxFailures: 3, Window: time.Minute, Duration: 5 * time.Minute}),
		handler.WithGrantDelivery(func(ctx context.Context) error { return grants.DeliverDue(ctx, st, authz, testkit.Logger(t)) }))
	svc.Server.Mount(identityv1connect.NewIdentityServiceHandler(api, svc.Server.HandlerOptions()...))
	testkit.Serve(t, svc)
	e.url = svc.Server.URL()
	return e
}

// protocols are the client configurations every scenario runs through.
var protocols = map[string][]connect.ClientOption{
	"connect": nil,
	"grpc":    {connect.WithGRPC()},
}

// as returns a client that calls with a user's bearer token ("" for none).
func (e *env) as(t *testing.T, token string, opts ...connect.ClientOption) identityv1connect.IdentityServiceClient {
	if token != "" {
		opts = append(opts, connect.WithInterceptors(authn.Bearer(token)))
	}
	return identityv1connect.NewIdentityServiceClient(testkit.H2CClient(t), e.url, opts...)
}

// asAuth returns a client that calls as the auth service.
func (e *env) asAuth(t *testing.T, opts ...connect.ClientOption) identityv1connect.IdentityServiceClient {
	return e.asService(t, "auth", opts...)
}

// asService returns a client that calls with the service credential of the named service.
func (e *env) asService(t *testing.T, name string, opts ...connect.ClientOption) identityv1connect.IdentityServiceClient {
	t.Helper()
	tokens, err := authn.NewServiceTokens(name, []byte(authority.InternalSecret))
	if err != nil {
		t.Fatal(err)
	}
	return identityv1connect.NewIdentityServiceClient(testkit.H2CClient(t), e.url, append(opts, connect.WithInterceptors(authn.NewClientCredentials(tokens)))...)
}

// admin returns a token of a subject holding every identity permission.
func (e *env) admin(t *testing.T) string {
	for _, p := range []string{"identity.users.create", "identity.users.read", "identity.users.manage"} {
		e.auth.Grant("admin-1", p, "")
	}
	return e.auth.Token(t, "admin-1")
}

// register creates a user through RegisterUser, as the auth service does.
func (e *env) register(t *testing.T, email, pw string) *identityv1.User {
	t.Helper()
	res, err := e.asAuth(t).RegisterUser(context.Background(), connect.NewRequest(&identityv1.RegisterUserRequest{Email: email, Password: pw, DisplayName: "Ada"}))
	if err != nil {
		t.Fatalf("RegisterUser(%s): %v", email, err)
	}
	return res.Msg.GetUser()
}

func fieldViolation(err error) string {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return ""
	}
	for _, d := range cerr.Details() {
		if v, derr := d.Value(); derr == nil {
			if br, ok := v.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				return br.GetFieldViolations()[0].GetField()
			}
		}
	}
	return ""
}

func TestCreateUserNeedsThePermissionAndNormalisesTheEmail(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	admin := e.admin(t)
	member := e.auth.Token(t, "member-1")
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			req := &identityv1.CreateUserRequest{Email: "  Grace.Hopper@Example.COM ", Password: "a long enough password", DisplayName: " Grace ", EmailVerified: true}
			req.Email = "  Grace." + name + "@Example.COM "
			if _, err := e.as(t, member, opts...).CreateUser(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("a member creating a user: %v, want permission_denied", err)
			}
			if _, err := e.as(t, "", opts...).CreateUser(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("an anonymous caller: %v, want unauthenticated", err)
			}
			res, err := e.as(t, admin, opts...).CreateUser(ctx, connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			u := res.Msg.GetUser()
			if u.GetEmail() != "grace."+name+"@example.com" || u.GetDisplayName() != "Grace" || !u.GetEmailVerified() ||
				u.GetStatus() != identityv1.UserStatus_USER_STATUS_ACTIVE || len(u.GetId()) != 36 || u.GetId()[14] != '7' {
				t.Fatalf("created %v; want a normalised email and a UUIDv7 id", u)
			}
			_, err = e.as(t, admin, opts...).CreateUser(ctx, connect.NewRequest(&identityv1.CreateUserRequest{
				Email: "GRACE." + name + "@example.com", Password: "another long password", DisplayName: "G",
			}))
			if connect.CodeOf(err) != connect.CodeAlreadyExists {
				t.Fatalf("the same email in other case: %v, want already_exists", err)
			}
		})
	}
}

func TestInputIsValidatedWithClearFields(t *testing.T) {
	t.Parallel()
	e := start(t)
	admin := e.admin(t)
	tests := []struct {
		name  string
		req   *identityv1.CreateUserRequest
		field string
	}{
		{"no email", &identityv1.CreateUserRequest{Password: "long enough pw", DisplayName: "A"}, "email"},
		{"not an email", &identityv1.CreateUserRequest{Email: "ada", Password: "long enough pw", DisplayName: "A"}, "email"},
		{"display name in the email", &identityv1.CreateUserRequest{Email: "Ada <ada@example.com>", Password: "long enough pw", DisplayName: "A"}, "email"},
		{"short password", &identityv1.CreateUserRequest{Email: "ada@example.com", Password: "short", DisplayName: "A"}, "password"},
		{"common password", &identityv1.CreateUserRequest{Email: "ada@example.com", Password: "password123", DisplayName: "A"}, "password"},
		{"no display name", &identityv1.CreateUserRequest{Email: "ada@example.com", Password: "long enough pw", DisplayName: "  "}, "display_name"},
		{"control characters", &identityv1.CreateUserRequest{Email: "ada@example.com", Password: "long enough pw", DisplayName: "A\x07"}, "display_name"},
	}
	for name, opts := range protocols {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				_, err := e.as(t, admin, opts...).CreateUser(context.Background(), connect.NewRequest(tt.req))
				if connect.CodeOf(err) != connect.CodeInvalidArgument || fieldViolation(err) != tt.field {
					t.Fatalf("got %v (field %q), want invalid_argument on %s", err, fieldViolation(err), tt.field)
				}
			})
		}
	}
}

func TestConcurrentRegistrationsOfOneEmailCreateOneUser(t *testing.T) {
	t.Parallel()
	e := start(t)
	client := e.asAuth(t)
	var wg sync.WaitGroup
	var created, exists atomic.Int64
	for range 8 {
		wg.Go(func() {
			_, err := client.RegisterUser(context.Background(), connect.NewRequest(&identityv1.RegisterUserRequest{Email: "race@example.com", Password: "a long enough password", DisplayName: "R"}))
			switch {
			case err == nil:
				created.Add(1)
			case connect.CodeOf(err) == connect.CodeAlreadyExists:
				exists.Add(1)
			default:
				t.Errorf("unexpected: %v", err)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 || exists.Load() != 7 {
		t.Fatalf("%d created, %d already_exists; want 1 and 7", created.Load(), exists.Load())
	}
}

func TestUnknownEmailAndWrongPasswordLookAlike(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.register(t, "known@example.com", "the right password")
	client := e.asAuth(t)
	verify := func(email, pw string) (int64, error) {
		before := e.hasher.verifies.Load()
		_, err := client.VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: email, Password: pw}))
		return e.hasher.verifies.Load() - before, err
	}
	workWrong, errWrong := verify("known@example.com", "a wrong password")
	workUnknown, errUnknown := verify("unknown@example.com", "a wrong password")
	var cw, cu *connect.Error
	if !errors.As(errWrong, &cw) || !errors.As(errUnknown, &cu) {
		t.Fatalf("errors %v / %v", errWrong, errUnknown)
	}
	if cw.Code() != connect.CodeUnauthenticated || cw.Code() != cu.Code() || cw.Message() != cu.Message() {
		t.Fatalf("wrong password answered %v %q, unknown email %v %q; they must be the same", cw.Code(), cw.Message(), cu.Code(), cu.Message())
	}
	if workWrong != 1 || workUnknown != 1 {
		t.Fatalf("argon2 derivations: wrong password %d, unknown email %d; both must do exactly one", workWrong, workUnknown)
	}
	if n, err := verify("known@example.com", "the right password"); err != nil || n != 1 {
		t.Fatalf("the right password: %v (%d derivations)", err, n)
	}
}

func retryAfter(err error) time.Duration {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return 0
	}
	for _, d := range cerr.Details() {
		if v, derr := d.Value(); derr == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				return ri.GetRetryDelay().AsDuration()
			}
		}
	}
	return 0
}

func TestLockoutRefusesEvenTheRightPasswordUntilTheWindowPasses(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.register(t, "victim@example.com", "the right password")
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			client := e.asAuth(t, opts...)
			verify := func(email, pw string) error {
				_, err := client.VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: email, Password: pw}))
				return err
			}
			for i := range 2 {
				if err := verify("victim@example.com", "guess"+strconv.Itoa(i)); connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Fatalf("failure %d: %v", i, err)
				}
			}
			// The third failure reaches the limit and locks the email.
			err := verify("victim@example.com", "guess3")
			if connect.CodeOf(err) != connect.CodeResourceExhausted || retryAfter(err) != 5*time.Minute {
				t.Fatalf("the failure that locks: %v (retry %s), want resource_exhausted with 5m", err, retryAfter(err))
			}
			e.clock.add(time.Minute)
			err = verify("victim@example.com", "the right password")
			if connect.CodeOf(err) != connect.CodeResourceExhausted || retryAfter(err) != 4*time.Minute {
				t.Fatalf("the right password while locked: %v (retry %s), want resource_exhausted with 4m left", err, retryAfter(err))
			}
			e.clock.add(4*time.Minute + time.Second)
			if err := verify("victim@example.com", "the right password"); err != nil {
				t.Fatalf("after the lock: %v", err)
			}
		})
	}
	// An email without an account locks the same way, so locking reveals nothing.
	client := e.asAuth(t)
	var last error
	for i := range 3 {
		_, last = client.VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "nobody@example.com", Password: "guess" + strconv.Itoa(i)}))
	}
	if connect.CodeOf(last) != connect.CodeResourceExhausted {
		t.Fatalf("an unknown email after three failures: %v, want resource_exhausted", last)
	}
	testkit.Eventually(t, 10*time.Second, "lock events reach audit", func() bool {
		n := 0
		for _, a := range e.auth.Actions() {
			if a == "identity.credentials.locked" {
				n++
			}
		}
		return n == 3
	})
}

func TestConcurrentFailuresAreAllCounted(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.register(t, "target@example.com", "the right password")
	client := e.asAuth(t)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			_, _ = client.VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "target@example.com", Password: "wrong" + strconv.Itoa(i)}))
		})
	}
	wg.Wait()
	_, err := client.VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "target@example.com", Password: "the right password"}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("after 6 concurrent failures (limit 3): %v, want locked", err)
	}
}

func TestOnlyAuthMayVerifyCredentials(t *testing.T) {
	t.Parallel()
	e := start(t)
	_, err := e.asService(t, "blog").VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "a@example.com", Password: "x"}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("blog calling VerifyCredentials: %v, want permission_denied", err)
	}
	user := e.auth.Token(t, "u-1")
	_, err = e.as(t, user).VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "a@example.com", Password: "x"}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a user calling VerifyCredentials: %v, want unauthenticated", err)
	}
}

func TestSelfServiceAndAdministration(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	ada := e.register(t, "ada@example.com", "ada's long password")
	bob := e.register(t, "bob@example.com", "bob's long password")
	adaTok := e.auth.Token(t, ada.GetId())
	admin := e.admin(t)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			me, err := e.as(t, adaTok, opts...).GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
			if err != nil || me.Msg.GetUser().GetId() != ada.GetId() {
				t.Fatalf("GetCurrentUser = %v, %v", me, err)
			}
			if _, err := e.as(t, adaTok, opts...).GetUser(ctx, connect.NewRequest(&identityv1.GetUserRequest{UserId: ada.GetId()})); err != nil {
				t.Fatalf("reading oneself: %v", err)
			}
			if _, err := e.as(t, adaTok, opts...).GetUser(ctx, connect.NewRequest(&identityv1.GetUserRequest{UserId: bob.GetId()})); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("reading another user: %v, want permission_denied", err)
			}
			if _, err := e.as(t, admin, opts...).GetUser(ctx, connect.NewRequest(&identityv1.GetUserRequest{UserId: "nope"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("a malformed id: %v", err)
			}
			if _, err := e.as(t, admin, opts...).GetUser(ctx, connect.NewRequest(&identityv1.GetUserRequest{UserId: "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b"})); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("an unknown id: %v", err)
			}
			name := "Ada " + name
			res, err := e.as(t, adaTok, opts...).UpdateUser(ctx, connect.NewRequest(&identityv1.UpdateUserRequest{UserId: ada.GetId(), DisplayName: &name}))
			if err != nil || res.Msg.GetUser().GetDisplayName() != name {
				t.Fatalf("renaming oneself: %v, %v", res, err)
			}
			disabled := identityv1.UserStatus_USER_STATUS_DISABLED
			if _, err := e.as(t, adaTok, opts...).UpdateUser(ctx, connect.NewRequest(&identityv1.UpdateUserRequest{UserId: ada.GetId(), Status: &disabled})); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("changing one's own status: %v, want permission_denied", err)
			}
			if _, err := e.as(t, adaTok, opts...).UpdateUser(ctx, connect.NewRequest(&identityv1.UpdateUserRequest{UserId: bob.GetId(), DisplayName: &name})); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("renaming another user: %v, want permission_denied", err)
			}
		})
	}
}

func TestDisablingEndsSessionsOrChangesNothing(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	admin := e.admin(t)
	u := e.register(t, "carol@example.com", "carol's long password")
	client := e.as(t, admin)

	e.auth.FailRevocations(true)
	_, err := client.DisableUser(ctx, connect.NewRequest(&identityv1.DisableUserRequest{UserId: u.GetId()}))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("disabling while auth is down: %v, want unavailable", err)
	}
	got, err := client.GetUser(ctx, connect.NewRequest(&identityv1.GetUserRequest{UserId: u.GetId()}))
	if err != nil || got.Msg.GetUser().GetStatus() != identityv1.UserStatus_USER_STATUS_ACTIVE {
		t.Fatalf("a user whose sessions could not be ended must stay active: %v %v", got, err)
	}

	e.auth.FailRevocations(false)
	res, err := client.DisableUser(ctx, connect.NewRequest(&identityv1.DisableUserRequest{UserId: u.GetId()}))
	if err != nil || res.Msg.GetUser().GetStatus() != identityv1.UserStatus_USER_STATUS_DISABLED {
		t.Fatalf("DisableUser = %v, %v", res, err)
	}
	revs := e.auth.Revocations()
	if len(revs) != 1 || revs[0].GetUserId() != u.GetId() || revs[0].GetReason() != "user_disabled" {
		t.Fatalf("revocations = %v", revs)
	}
	_, err = e.asAuth(t).VerifyCredentials(ctx, connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "carol@example.com", Password: "carol's long password"}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a disabled user's right password: %v, want permission_denied", err)
	}

	if _, err := client.DeleteUser(ctx, connect.NewRequest(&identityv1.DeleteUserRequest{UserId: u.GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetUser(ctx, connect.NewRequest(&identityv1.GetUserRequest{UserId: u.GetId()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("a deleted user: %v", err)
	}
	if revs := e.auth.Revocations(); len(revs) != 2 || revs[1].GetReason() != "user_deleted" {
		t.Fatalf("revocations after delete = %v", revs)
	}
	testkit.Eventually(t, 10*time.Second, "the events reach audit", func() bool {
		acts := map[string]bool{}
		for _, a := range e.auth.Actions() {
			acts[a] = true
		}
		return acts["identity.user.created"] && acts["identity.user.disabled"] && acts["identity.user.deleted"]
	})
	for _, ev := range e.auth.Events() {
		if ev.GetAction() == "identity.user.disabled" && ev.GetActor().GetSubject() != "admin-1" {
			t.Fatalf("the disable event names %q as actor, want admin-1", ev.GetActor().GetSubject())
		}
	}
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	u := e.register(t, "dan@example.com", "dan's old password")
	tok := e.auth.Token(t, u.GetId())
	client := e.as(t, tok)

	_, err := client.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "not it", NewPassword: "dan's new password"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || fieldViolation(err) != "current_password" {
		t.Fatalf("wrong current password: %v", err)
	}
	_, err = client.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "dan's old password", NewPassword: "qwertyuiop"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || fieldViolation(err) != "new_password" {
		t.Fatalf("a common new password: %v", err)
	}
	if _, err := client.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "dan's old password", NewPassword: "dan's new password"})); err != nil {
		t.Fatal(err)
	}
	if revs := e.auth.Revocations(); len(revs) != 1 || revs[0].GetReason() != "password_changed" {
		t.Fatalf("revocations = %v", revs)
	}
	verify := func(pw string) error {
		_, err := e.asAuth(t).VerifyCredentials(ctx, connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "dan@example.com", Password: pw}))
		return err
	}
	if err := verify("dan's new password"); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	if err := verify("dan's old password"); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the old password: %v", err)
	}
}

func TestEndedSessionsAreRefusedImmediately(t *testing.T) {
	t.Parallel()
	e := start(t)
	u := e.register(t, "eve@example.com", "eve's long password")
	tok := e.auth.TokenForSession(t, u.GetId(), "session-1")
	client := e.as(t, tok)
	if _, err := client.GetCurrentUser(context.Background(), connect.NewRequest(&identityv1.GetCurrentUserRequest{})); err != nil {
		t.Fatal(err)
	}
	e.auth.EndSession("session-1")
	if _, err := client.GetCurrentUser(context.Background(), connect.NewRequest(&identityv1.GetCurrentUserRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a token of an ended session: %v, want unauthenticated", err)
	}
}

func TestListUsersIsStableWhileUsersAreAdded(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	admin := e.admin(t)
	for i := range 5 {
		e.register(t, "list"+strconv.Itoa(i)+"@example.com", "a long enough password")
	}
	e.register(t, "other@example.com", "a long enough password")
	client := e.as(t, admin)
	var seen []string
	token := ""
	for page := 0; ; page++ {
		res, err := client.ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{PageSize: 2, PageToken: token, EmailPrefix: "LIST"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range res.Msg.GetUsers() {
			seen = append(seen, u.GetEmail())
		}
		if page == 0 {
			// Users added mid-listing come after everything listed so far.
			e.register(t, "list5@example.com", "a long enough password")
		}
		token = res.Msg.GetNextPageToken()
		if token == "" {
			break
		}
	}
	want := []string{"list0@example.com", "list1@example.com", "list2@example.com", "list3@example.com", "list4@example.com", "list5@example.com"}
	if len(seen) != len(want) {
		t.Fatalf("listed %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("listed %v, want %v", seen, want)
		}
	}
	first, err := client.ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{PageSize: 1, EmailPrefix: "list"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{PageSize: 1, PageToken: first.Msg.GetNextPageToken()}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a token used with other filters: %v", err)
	}
	member := e.auth.Token(t, "member-2")
	if _, err := e.as(t, member).ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a member listing users: %v", err)
	}
}

func TestRegisteredUsersGetTheMemberRoleBeforeTheCallReturns(t *testing.T) {
	t.Parallel()
	e := start(t)
	u := e.register(t, "member@example.com", "a long enough password")
	if roles := e.auth.Roles(u.GetId()); len(roles) != 1 || roles[0] != handler.MemberRole {
		t.Fatalf("roles of a registered user = %v, want [member]", roles)
	}
}

func TestBootstrapCreatesTheAdministratorOnce(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := authn.WithCaller(context.Background(), "identity")
	st := store.New(e.svc.DB, e.svc.Outbox)
	api := handler.New(st, e.hasher, e.svc.Guard, e.svc.Outbox, nil, nil)
	u, created, err := api.Bootstrap(ctx, "Root@Example.com", "the bootstrap password")
	if err != nil || !created || u.Email != "root@example.com" || !u.EmailVerified {
		t.Fatalf("first Bootstrap = %+v, %v, %v", u, created, err)
	}
	// Without delivery wired in, the admin role waits in the queue for the relay.
	if n, err := st.PendingGrants(context.Background()); err != nil || n != 1 {
		t.Fatalf("pending grants = %d, %v; want the admin role queued", n, err)
	}
	again, created, err := api.Bootstrap(ctx, "root@example.com", "a different password")
	if err != nil || created || again.ID != u.ID {
		t.Fatalf("second Bootstrap = %+v, %v, %v; want the same user, not created", again, created, err)
	}
	if _, err := e.asAuth(t).VerifyCredentials(context.Background(), connect.NewRequest(&identityv1.VerifyCredentialsRequest{Email: "root@example.com", Password: "the bootstrap password"})); err != nil {
		t.Fatalf("the bootstrap password was replaced: %v", err)
	}
}
