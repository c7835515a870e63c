// Package authority stands in for the platform's other services in tests of one service. See
// Authority.
package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// InternalSecret is the service credential secret Authority and the services under test share.
var InternalSecret = strings.Repeat("t", 32)

// Issuer and Audience are what Authority's tokens carry.
const (
	Issuer   = "https://basalt.test"
	Audience = "basalt"
)

// Authority stands in for the platform's other services in one test server, so that one
// service can be tested through its real wiring (kernel/service): as auth it publishes a JWKS,
// issues access tokens and answers session checks and revocations; as authz it answers
// permission checks from a table and lists who holds the admin role; as audit it collects
// events; as identity it keeps accounts in memory and says which users are active (all but
// those SetActive turned off). Fail makes any of its methods answer unavailable. Services talk to it over real HTTP/2 with real
// service credentials; the end-to-end tests run the real services together.
type Authority struct {
	authv1connect.UnimplementedAuthServiceHandler
	authzv1connect.UnimplementedAuthzServiceHandler
	auditv1connect.UnimplementedAuditServiceHandler
	identityv1connect.UnimplementedIdentityServiceHandler

	// URL is the server's base URL.
	URL string

	key      jwk.Key
	public   jwk.Set
	services *authn.ServiceTokens

	mu          sync.Mutex
	grants      map[string]bool // subject|permission|resource
	roles       map[string][]string
	ended       map[string]bool // session ids
	revocations []*authv1.RevokeUserSessionsRequest
	failing     map[string]bool // procedures
	inactive    map[string]bool // user ids
	events      map[string]*auditv1.Event
	order       []string
	users       map[string]*account // by email
	lockedFor   time.Duration
}

type account struct {
	user     *identityv1.User
	password string
}

// New starts an Authority until the test ends.
func New(t testing.TB) *Authority {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, "test-key")
	_ = key.Set(jwk.AlgorithmKey, jwa.EdDSA)
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	tokens, err := authn.NewServiceTokens("authority", []byte(InternalSecret))
	if err != nil {
		t.Fatal(err)
	}
	a := &Authority{key: key, public: set, services: tokens, grants: map[string]bool{}, roles: map[string][]string{},
		ended: map[string]bool{}, events: map[string]*auditv1.Event{}, users: map[string]*account{},
		failing: map[string]bool{}, inactive: map[string]bool{}}

	// A real kernel server with the kernel's authentication, so internal methods need service
	// credentials here as they do in the real services.
	srv, err := newAuthorityServer(a)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, srv)
	a.URL = srv.URL()
	return a
}

// Token issues an access token for subject with a new session id.
func (a *Authority) Token(t testing.TB, subject string) string {
	t.Helper()
	return a.TokenForSession(t, subject, uuid.NewString())
}

// TokenForSession issues an access token for subject in session sid.
func (a *Authority) TokenForSession(t testing.TB, subject, sid string) string {
	t.Helper()
	now := time.Now()
	tok, err := authn.Issue(a.key, authn.AccessClaims{
		Issuer: Issuer, Audience: Audience, Subject: subject, SessionID: sid, TokenID: uuid.NewString(),
		IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Grant lets subject hold permission (on resource, "" for everywhere).
func (a *Authority) Grant(subject, permission, resource string) {
	a.mu.Lock()
	a.grants[subject+"|"+permission+"|"+resource] = true
	a.mu.Unlock()
}

// EndSession makes session checks of sid answer inactive.
func (a *Authority) EndSession(sid string) {
	a.mu.Lock()
	a.ended[sid] = true
	a.mu.Unlock()
}

// FailRevocations makes RevokeUserSessions fail (or succeed again).
func (a *Authority) FailRevocations(fail bool) {
	a.Fail(authv1connect.AuthServiceRevokeUserSessionsProcedure, fail)
}

// Fail makes calls of procedure ("/basalt.auth.v1.AuthService/RevokeUserSessions", as the
// generated constants name it) answer unavailable, as a service that is down would, or answer
// again.
func (a *Authority) Fail(procedure string, fail bool) {
	a.mu.Lock()
	a.failing[procedure] = fail
	a.mu.Unlock()
}

func (a *Authority) fails(procedure string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failing[procedure]
}

// Bind gives subject role, as GrantRole would.
func (a *Authority) Bind(subject, role string) {
	a.mu.Lock()
	a.roles[subject] = append(a.roles[subject], role)
	a.mu.Unlock()
}

// SetActive makes FilterActiveUsers count the user id as active or not; every id is active
// until it is turned off.
func (a *Authority) SetActive(userID string, active bool) {
	a.mu.Lock()
	a.inactive[userID] = !active
	a.mu.Unlock()
}

// Revocations returns the RevokeUserSessions calls received.
func (a *Authority) Revocations() []*authv1.RevokeUserSessionsRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*authv1.RevokeUserSessionsRequest(nil), a.revocations...)
}

// Roles returns the roles GrantRole gave subject.
func (a *Authority) Roles(subject string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.roles[subject]...)
}

// Events returns the audit events received, in arrival order, without duplicates.
func (a *Authority) Events() []*auditv1.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*auditv1.Event, 0, len(a.order))
	for _, id := range a.order {
		out = append(out, a.events[id])
	}
	return out
}

// Actions returns the actions of the events received.
func (a *Authority) Actions() []string {
	var out []string
	for _, ev := range a.Events() {
		out = append(out, ev.GetAction())
	}
	return out
}

// ServiceConfig returns a service configuration for name that stores its data in a fresh
// PostgreSQL schema of the package database and finds auth, authz and audit at the Authority.
func (a *Authority) ServiceConfig(t testing.TB, name string) config.Service {
	t.Helper()
	return config.Service{
		Name:        name,
		Environment: "development",
		HTTP:        testkit.HTTPConfig(),
		Database:    testkit.Database(t, name),
		Discovery: config.Discovery{
			Static: map[string][]string{"auth": {a.URL}, "authz": {a.URL}, "audit": {a.URL}, "identity": {a.URL}},
		},
		Log:       config.Log{Format: "text"},
		Telemetry: config.Telemetry{SampleRatio: 1},
		Auth: config.Auth{
			InternalSecret:     config.NewSecret(InternalSecret),
			Issuer:             Issuer,
			Audience:           Audience,
			SessionCheck:       true,
			SessionCacheTTL:    0,
			PermissionCacheTTL: 0,
		},
		Outbox: config.Outbox{Interval: 20 * time.Millisecond, BatchSize: 100, MaxBackoff: time.Second},
	}
}

// CheckSession answers from the ended sessions.
func (a *Authority) CheckSession(_ context.Context, req *connect.Request[authv1.CheckSessionRequest]) (*connect.Response[authv1.CheckSessionResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return connect.NewResponse(&authv1.CheckSessionResponse{Active: !a.ended[req.Msg.GetSessionId()]}), nil
}

// RevokeUserSessions records the call.
func (a *Authority) RevokeUserSessions(_ context.Context, req *connect.Request[authv1.RevokeUserSessionsRequest]) (*connect.Response[authv1.RevokeUserSessionsResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revocations = append(a.revocations, req.Msg)
	return connect.NewResponse(&authv1.RevokeUserSessionsResponse{Revoked: 1}), nil
}

// Check answers from the grants table.
func (a *Authority) Check(_ context.Context, req *connect.Request[authzv1.CheckRequest]) (*connect.Response[authzv1.CheckResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := req.Msg
	allowed := a.grants[m.GetSubject()+"|"+m.GetPermission()+"|"] || (m.GetResource() != "" && a.grants[m.GetSubject()+"|"+m.GetPermission()+"|"+m.GetResource()])
	return connect.NewResponse(&authzv1.CheckResponse{Allowed: allowed}), nil
}

// GrantRole records the role.
func (a *Authority) GrantRole(_ context.Context, req *connect.Request[authzv1.GrantRoleRequest]) (*connect.Response[authzv1.GrantRoleResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roles[req.Msg.GetSubject()] = append(a.roles[req.Msg.GetSubject()], req.Msg.GetRole())
	return connect.NewResponse(&authzv1.GrantRoleResponse{Binding: &authzv1.RoleBinding{Subject: req.Msg.GetSubject(), Role: req.Msg.GetRole()}}), nil
}

// ListAdministrators lists the subjects that hold the admin role, sorted.
func (a *Authority) ListAdministrators(_ context.Context, _ *connect.Request[authzv1.ListAdministratorsRequest]) (*connect.Response[authzv1.ListAdministratorsResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := &authzv1.ListAdministratorsResponse{}
	for subject, roles := range a.roles {
		if slices.Contains(roles, "admin") {
			res.UserIds = append(res.UserIds, subject)
		}
	}
	slices.Sort(res.UserIds)
	return connect.NewResponse(res), nil
}

// FilterActiveUsers answers every asked id that SetActive has not turned off, each once, sorted.
func (a *Authority) FilterActiveUsers(_ context.Context, req *connect.Request[identityv1.FilterActiveUsersRequest]) (*connect.Response[identityv1.FilterActiveUsersResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := &identityv1.FilterActiveUsersResponse{}
	for _, id := range req.Msg.GetUserIds() {
		if !a.inactive[id] {
			res.UserIds = append(res.UserIds, id)
		}
	}
	slices.Sort(res.UserIds)
	res.UserIds = slices.Compact(res.UserIds)
	return connect.NewResponse(res), nil
}

// Record collects events, deduplicating by id as the audit service does.
func (a *Authority) Record(_ context.Context, req *connect.Request[auditv1.RecordRequest]) (*connect.Response[auditv1.RecordResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range req.Msg.GetEvents() {
		if _, dup := a.events[ev.GetId()]; !dup {
			a.events[ev.GetId()] = ev
			a.order = append(a.order, ev.GetId())
		}
	}
	return connect.NewResponse(&auditv1.RecordResponse{}), nil
}

// RegisterUser keeps an account in memory. Passwords are compared in the clear: the real
// hashing and its properties are the identity service's, tested there.
func (a *Authority) RegisterUser(_ context.Context, req *connect.Request[identityv1.RegisterUserRequest]) (*connect.Response[identityv1.RegisterUserResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	email := strings.ToLower(strings.TrimSpace(req.Msg.GetEmail()))
	if email == "" || len(req.Msg.GetPassword()) < 8 {
		return nil, errs.Invalid("password", "must be at least 8 characters")
	}
	if _, ok := a.users[email]; ok {
		return nil, errs.AlreadyExists("a user with this email already exists")
	}
	u := &identityv1.User{Id: uuid.Must(uuid.NewV7()).String(), Email: email, DisplayName: req.Msg.GetDisplayName(), Status: identityv1.UserStatus_USER_STATUS_ACTIVE}
	a.users[email] = &account{user: u, password: req.Msg.GetPassword()}
	return connect.NewResponse(&identityv1.RegisterUserResponse{User: u}), nil
}

// VerifyCredentials checks an in-memory account; LockLogins makes it answer as a locked email.
func (a *Authority) VerifyCredentials(_ context.Context, req *connect.Request[identityv1.VerifyCredentialsRequest]) (*connect.Response[identityv1.VerifyCredentialsResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lockedFor > 0 {
		return nil, errs.ResourceExhausted(a.lockedFor, "too many failed attempts; try again later")
	}
	acc, ok := a.users[strings.ToLower(strings.TrimSpace(req.Msg.GetEmail()))]
	if !ok || acc.password != req.Msg.GetPassword() {
		return nil, errs.Unauthenticated("the email or password is wrong")
	}
	return connect.NewResponse(&identityv1.VerifyCredentialsResponse{User: acc.user}), nil
}

// LockLogins makes credential checks answer resource_exhausted with retry (0 lifts it).
func (a *Authority) LockLogins(retry time.Duration) {
	a.mu.Lock()
	a.lockedFor = retry
	a.mu.Unlock()
}

func (a *Authority) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a.public)
}

func newAuthorityServer(a *Authority) (*server.Server, error) {
	keys := authn.NewStaticKeys(a.public)
	verifier := authn.NewVerifier(keys, Issuer, Audience)
	srv, err := server.New("authority", testkit.HTTPConfig(), server.WithInterceptors(authn.NewInterceptor(verifier, a.services), outage{a}))
	if err != nil {
		return nil, err
	}
	srv.Mount(authv1connect.NewAuthServiceHandler(a, srv.HandlerOptions()...))
	srv.Mount(authzv1connect.NewAuthzServiceHandler(a, srv.HandlerOptions()...))
	srv.Mount(auditv1connect.NewAuditServiceHandler(a, srv.HandlerOptions()...))
	srv.Mount(identityv1connect.NewIdentityServiceHandler(a, srv.HandlerOptions()...))
	srv.Handle("GET "+authn.JWKSPath, http.HandlerFunc(a.serveJWKS))
	return srv, nil
}

// outage answers the procedures Fail names with unavailable.
type outage struct{ a *Authority }

func (o outage) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if o.a.fails(req.Spec().Procedure) {
			return nil, errs.Unavailable(nil, "the service is down")
		}
		return next(ctx, req)
	}
}

func (o outage) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o outage) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
