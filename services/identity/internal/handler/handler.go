// Package handler implements the IdentityService API.
package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/pagetoken"
	"github.com/basaltplatform/basalt/services/identity/ent"
	"github.com/basaltplatform/basalt/services/identity/ent/user"
	"github.com/basaltplatform/basalt/services/identity/internal/password"
	"github.com/basaltplatform/basalt/services/identity/internal/store"
)

// Permissions the handler checks itself, beyond those the contract names.
const (
	PermReadUsers   = "identity.users.read"
	PermManageUsers = "identity.users.manage"
)

// SessionRevoker ends a user's sessions; the generated AuthService client has it.
type SessionRevoker interface {
	RevokeUserSessions(context.Context, *connect.Request[authv1.RevokeUserSessionsRequest]) (*connect.Response[authv1.RevokeUserSessionsResponse], error)
}

// Administrators lists the users who hold the admin role everywhere; the generated
// AuthzService client has it.
type Administrators interface {
	ListAdministrators(context.Context, *connect.Request[authzv1.ListAdministratorsRequest]) (*connect.Response[authzv1.ListAdministratorsResponse], error)
}

// Guard checks permissions; *permission.Guard has it.
type Guard interface {
	Allowed(ctx context.Context, permission, resource string) (bool, error)
	Require(ctx context.Context, permission, resource string) error
}

// Hasher hashes and verifies passwords; *password.Hasher has it.
type Hasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (ok, rehash bool, err error)
	VerifyDummy(ctx context.Context, password string) error
}

// Server implements basalt.identity.v1.IdentityService.
type Server struct {
	store    *store.Store
	hasher   Hasher
	guard    Guard
	outbox   *outbox.Outbox
	sessions SessionRevoker
	admins   Administrators
	lockout  store.Lockout
	now      func() time.Time
	deliver  func(context.Context) error
}

var _ identityv1connect.IdentityServiceHandler = (*Server)(nil)

// Option configures New.
type Option func(*Server)

// WithClock replaces the clock (the lockout tests use it instead of sleeping).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithGrantDelivery makes user creation try to deliver its queued roles at once, so a new
// user holds them when the call returns; deliver's failures are left to the grant relay.
func WithGrantDelivery(deliver func(context.Context) error) Option {
	return func(s *Server) { s.deliver = deliver }
}

// WithLockout sets the brute-force policy (default: 5 failures in 15 minutes lock for 15).
func WithLockout(l store.Lockout) Option { return func(s *Server) { s.lockout = l } }

// New returns the API over its collaborators: sessions is the auth service, which ends a
// user's sessions; admins is the authz service, asked before a user is disabled or deleted.
func New(st *store.Store, hasher Hasher, guard Guard, ob *outbox.Outbox, sessions SessionRevoker, admins Administrators, opts ...Option) *Server {
	s := &Server{
		store: st, hasher: hasher, guard: guard, outbox: ob, sessions: sessions, admins: admins,
		lockout: store.Lockout{MaxFailures: 5, Window: 15 * time.Minute, Duration: 15 * time.Minute},
		now:     time.Now,
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// CreateUser creates a user; the contract requires identity.users.create.
func (s *Server) CreateUser(ctx context.Context, req *connect.Request[identityv1.CreateUserRequest]) (*connect.Response[identityv1.CreateUserResponse], error) {
	u, err := s.create(ctx, req.Msg.GetEmail(), req.Msg.GetPassword(), req.Msg.GetDisplayName(), req.Msg.GetEmailVerified(), "admin", nil)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.CreateUserResponse{User: toProto(u)}), nil
}

// RegisterUser creates a user for the auth service's Register.
func (s *Server) RegisterUser(ctx context.Context, req *connect.Request[identityv1.RegisterUserRequest]) (*connect.Response[identityv1.RegisterUserResponse], error) {
	u, err := s.create(ctx, req.Msg.GetEmail(), req.Msg.GetPassword(), req.Msg.GetDisplayName(), false, "register", []string{MemberRole})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.RegisterUserResponse{User: toProto(u)}), nil
}

// The roles the identity service gives users it creates for the platform's own flows.
const (
	MemberRole = "member"
	AdminRole  = "admin"
)

// Create validates, hashes and stores a new user; via says how it came ("admin", "register",
// "bootstrap"); roles are queued for the authz service with the user.
func (s *Server) create(ctx context.Context, email, pw, displayName string, verified bool, via string, roles []string) (*ent.User, error) {
	email, displayName = NormalizeEmail(email), normalizeDisplayName(displayName)
	var v errs.Violations
	checkEmail(&v, "email", email)
	checkPassword(&v, "password", pw)
	checkDisplayName(&v, "display_name", displayName)
	if err := v.Err(); err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	u, err := s.store.Create(ctx, store.NewUser{ID: id.String(), Email: email, DisplayName: displayName, PasswordHash: hash, EmailVerified: verified},
		store.Change{Roles: roles, Events: func(u *ent.User) []*auditv1.Event {
			return []*auditv1.Event{s.outbox.Event(ctx, "identity.user.created", outbox.Success, "user", u.ID, map[string]string{"via": via})}
		}})
	if err == nil && len(roles) > 0 && s.deliver != nil {
		_ = s.deliver(ctx)
	}
	return u, err
}

// Bootstrap makes sure the administrator with email exists, creating it with password and
// queuing the admin role when it does not; an existing administrator's password is left
// alone. It reports whether it created the user.
func (s *Server) Bootstrap(ctx context.Context, email, pw string) (*ent.User, bool, error) {
	if u, err := s.store.ByEmail(ctx, NormalizeEmail(email)); err == nil {
		return u, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	u, err := s.create(ctx, email, pw, "Administrator", true, "bootstrap", []string{AdminRole})
	if errors.Is(err, store.ErrEmailTaken) {
		// Another instance created it first.
		u, err = s.store.ByEmail(ctx, NormalizeEmail(email))
		return u, false, err
	}
	return u, err == nil, err
}

// GetUser returns the caller's own user, or any user with identity.users.read.
func (s *Server) GetUser(ctx context.Context, req *connect.Request[identityv1.GetUserRequest]) (*connect.Response[identityv1.GetUserResponse], error) {
	id := req.Msg.GetUserId()
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := s.selfOr(ctx, id, PermReadUsers); err != nil {
		return nil, err
	}
	u, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.GetUserResponse{User: toProto(u)}), nil
}

// GetCurrentUser returns the caller's own user.
func (s *Server) GetCurrentUser(ctx context.Context, _ *connect.Request[identityv1.GetCurrentUserRequest]) (*connect.Response[identityv1.GetCurrentUserResponse], error) {
	p, ok := authn.PrincipalFrom(ctx)
	if !ok {
		return nil, errs.Unauthenticated("a user's access token is required")
	}
	u, err := s.store.Get(ctx, p.Subject)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.GetCurrentUserResponse{User: toProto(u)}), nil
}

// UpdateUser changes a display name (self or manager) or a status (manager).
func (s *Server) UpdateUser(ctx context.Context, req *connect.Request[identityv1.UpdateUserRequest]) (*connect.Response[identityv1.UpdateUserResponse], error) {
	id := req.Msg.GetUserId()
	if err := checkID(id); err != nil {
		return nil, err
	}
	var v errs.Violations
	var name *string
	if req.Msg.DisplayName != nil {
		n := normalizeDisplayName(req.Msg.GetDisplayName())
		checkDisplayName(&v, "display_name", n)
		name = &n
	}
	var status string
	if req.Msg.Status != nil {
		switch req.Msg.GetStatus() {
		case identityv1.UserStatus_USER_STATUS_ACTIVE:
			status = "active"
		case identityv1.UserStatus_USER_STATUS_DISABLED:
			status = "disabled"
		default:
			v.Add("status", "must be USER_STATUS_ACTIVE or USER_STATUS_DISABLED")
		}
	}
	if name == nil && status == "" && v.Len() == 0 {
		v.Add("user", "set display_name or status")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if status != "" {
		if err := s.guard.Require(ctx, PermManageUsers, "identity/user/"+id); err != nil {
			return nil, err
		}
	} else if err := s.selfOr(ctx, id, PermManageUsers); err != nil {
		return nil, err
	}
	u, err := s.update(ctx, id, name, status)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.UpdateUserResponse{User: toProto(u)}), nil
}

// DisableUser disables a user and ends their sessions.
func (s *Server) DisableUser(ctx context.Context, req *connect.Request[identityv1.DisableUserRequest]) (*connect.Response[identityv1.DisableUserResponse], error) {
	id := req.Msg.GetUserId()
	if err := checkID(id); err != nil {
		return nil, err
	}
	u, err := s.update(ctx, id, nil, "disabled")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.DisableUserResponse{User: toProto(u)}), nil
}

// update applies a display name and/or status. Disabling ends the user's sessions before the
// change commits: if they cannot be ended, the user stays as they were.
func (s *Server) update(ctx context.Context, id string, name *string, status string) (*ent.User, error) {
	var changed []string
	var disabling, enabling bool
	var administrators func(context.Context) ([]string, error)
	if status == "disabled" {
		administrators = s.administrators
	}
	return s.store.Update(ctx, id, func(cur *ent.User, upd *ent.UserUpdateOne) error {
		if name != nil && *name != cur.DisplayName {
			upd.SetDisplayName(*name)
			changed = append(changed, "display_name")
		}
		if status != "" && status != string(cur.Status) {
			upd.SetStatus(user.Status(status))
			changed = append(changed, "status")
			disabling, enabling = status == "disabled", status == "active"
		}
		return nil
	}, store.Change{
		Events: func(u *ent.User) []*auditv1.Event {
			action := "identity.user.updated"
			switch {
			case disabling:
				action = "identity.user.disabled"
			case enabling:
				action = "identity.user.enabled"
			case len(changed) == 0:
				return nil
			}
			return []*auditv1.Event{s.outbox.Event(ctx, action, outbox.Success, "user", u.ID, map[string]string{"fields": strings.Join(changed, ",")})}
		},
		BeforeCommit: func(ctx context.Context, u *ent.User) error {
			if !disabling {
				return nil
			}
			return s.revokeSessions(ctx, u.ID, "user_disabled")
		},
		Administrators: administrators,
	})
}

// DeleteUser deletes a user and ends their sessions.
func (s *Server) DeleteUser(ctx context.Context, req *connect.Request[identityv1.DeleteUserRequest]) (*connect.Response[identityv1.DeleteUserResponse], error) {
	id := req.Msg.GetUserId()
	if err := checkID(id); err != nil {
		return nil, err
	}
	err := s.store.Delete(ctx, id, store.Change{
		Events: func(u *ent.User) []*auditv1.Event {
			return []*auditv1.Event{s.outbox.Event(ctx, "identity.user.deleted", outbox.Success, "user", u.ID, nil)}
		},
		BeforeCommit:   func(ctx context.Context, u *ent.User) error { return s.revokeSessions(ctx, u.ID, "user_deleted") },
		Administrators: s.administrators,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.DeleteUserResponse{}), nil
}

// ChangePassword replaces the caller's password and ends all their sessions.
func (s *Server) ChangePassword(ctx context.Context, req *connect.Request[identityv1.ChangePasswordRequest]) (*connect.Response[identityv1.ChangePasswordResponse], error) {
	p, ok := authn.PrincipalFrom(ctx)
	if !ok {
		return nil, errs.Unauthenticated("a user's access token is required")
	}
	var v errs.Violations
	if req.Msg.GetCurrentPassword() == "" {
		v.Add("current_password", "is required")
	}
	checkPassword(&v, "new_password", req.Msg.GetNewPassword())
	if err := v.Err(); err != nil {
		return nil, err
	}
	u, err := s.store.Get(ctx, p.Subject)
	if err != nil {
		return nil, err
	}
	// The current password is checked like a login, lockout included, so a stolen access
	// token cannot be used to guess it.
	if _, err := s.verify(ctx, u.Email, req.Msg.GetCurrentPassword(), u); err != nil {
		if errs.Is(err, errs.KindUnauthenticated) {
			return nil, errs.Invalid("current_password", "is not the current password")
		}
		return nil, err
	}
	hash, err := s.hasher.Hash(ctx, req.Msg.GetNewPassword())
	if err != nil {
		return nil, err
	}
	_, err = s.store.Update(ctx, u.ID, func(_ *ent.User, upd *ent.UserUpdateOne) error {
		upd.SetPasswordHash(hash)
		return nil
	}, store.Change{
		Events: func(u *ent.User) []*auditv1.Event {
			return []*auditv1.Event{s.outbox.Event(ctx, "identity.password.changed", outbox.Success, "user", u.ID, nil)}
		},
		BeforeCommit: func(ctx context.Context, u *ent.User) error { return s.revokeSessions(ctx, u.ID, "password_changed") },
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.ChangePasswordResponse{}), nil
}

// VerifyCredentials checks an email and password for the auth service.
func (s *Server) VerifyCredentials(ctx context.Context, req *connect.Request[identityv1.VerifyCredentialsRequest]) (*connect.Response[identityv1.VerifyCredentialsResponse], error) {
	email := NormalizeEmail(req.Msg.GetEmail())
	var v errs.Violations
	checkEmail(&v, "email", email)
	if req.Msg.GetPassword() == "" {
		v.Add("password", "is required")
	} else if len(req.Msg.GetPassword()) > 4*password.MaxLength {
		v.Add("password", "is too long")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	u, err := s.verify(ctx, email, req.Msg.GetPassword(), nil)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.VerifyCredentialsResponse{User: toProto(u)}), nil
}

// ErrBadCredentials is the one answer to an unknown email and to a wrong password.
var ErrBadCredentials = errs.Unauthenticated("the email or password is wrong")

// verify checks pw for email under the lockout policy. known, when set, is the user already
// loaded. An unknown email does the same hashing work as a wrong password and counts towards
// the same lockout, so neither timing nor locking tells which emails have accounts.
func (s *Server) verify(ctx context.Context, email, pw string, known *ent.User) (*ent.User, error) {
	// Throttle times are stored in milliseconds; so is now, so retry delays come out exact.
	now := s.now().Truncate(time.Millisecond)
	key := store.ThrottleKey(email)
	until, err := s.store.LockedUntil(ctx, key, now)
	if err != nil {
		return nil, err
	}
	if !until.IsZero() {
		return nil, lockedError(until.Sub(now))
	}
	u := known
	if u == nil {
		u, err = s.store.ByEmail(ctx, email)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	ok, rehash := false, false
	if u != nil {
		ok, rehash, err = s.hasher.Verify(ctx, pw, u.PasswordHash)
	} else {
		err = s.hasher.VerifyDummy(ctx, pw)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		locked, err := s.store.RecordFailure(ctx, key, now, s.lockout, func(until time.Time) *auditv1.Event {
			md := map[string]string{"failures": fmt.Sprint(s.lockout.MaxFailures), "until": until.UTC().Format(time.RFC3339)}
			return s.outbox.Event(ctx, "identity.credentials.locked", outbox.Denied, "credentials", key[:16], md)
		})
		if err != nil {
			return nil, err
		}
		if !locked.IsZero() {
			return nil, lockedError(locked.Sub(now))
		}
		return nil, ErrBadCredentials
	}
	if u.Status != "active" {
		return nil, errs.PermissionDenied("the account is disabled")
	}
	if err := s.store.ResetFailures(ctx, key); err != nil {
		return nil, err
	}
	if rehash {
		// Best effort: the login succeeds either way, and the next one tries again.
		if hash, err := s.hasher.Hash(ctx, pw); err == nil {
			_ = s.store.SetPasswordHash(ctx, u.ID, hash)
		}
	}
	return u, nil
}

func lockedError(retry time.Duration) error {
	return errs.ResourceExhausted(retry, "too many failed attempts; try again in %s", retry.Round(time.Second))
}

// ListUsers lists users; the contract requires identity.users.read.
func (s *Server) ListUsers(ctx context.Context, req *connect.Request[identityv1.ListUsersRequest]) (*connect.Response[identityv1.ListUsersResponse], error) {
	var v errs.Violations
	size := int(req.Msg.GetPageSize())
	switch {
	case size < 0 || size > 100:
		v.Add("page_size", "must be between 1 and 100")
	case size == 0:
		size = 20
	}
	f := store.Filter{EmailPrefix: NormalizeEmail(req.Msg.GetEmailPrefix())}
	if len(f.EmailPrefix) > 254 {
		v.Add("email_prefix", "must be at most 254 characters")
	}
	switch req.Msg.GetStatus() {
	case identityv1.UserStatus_USER_STATUS_UNSPECIFIED:
	case identityv1.UserStatus_USER_STATUS_ACTIVE:
		f.Status = "active"
	case identityv1.UserStatus_USER_STATUS_DISABLED:
		f.Status = "disabled"
	default:
		v.Add("status", "is not a user status")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	after, err := decodeToken(req.Msg.GetPageToken(), f)
	if err != nil {
		return nil, err
	}
	users, more, err := s.store.List(ctx, f, after, size)
	if err != nil {
		return nil, err
	}
	res := &identityv1.ListUsersResponse{Users: make([]*identityv1.User, len(users))}
	for i, u := range users {
		res.Users[i] = toProto(u)
	}
	if more {
		res.NextPageToken = encodeToken(users[len(users)-1].ID, f)
	}
	return connect.NewResponse(res), nil
}

// selfOr allows the call when the caller is the user id, or holds perm.
func (s *Server) selfOr(ctx context.Context, id, perm string) error {
	if p, ok := authn.PrincipalFrom(ctx); ok && p.Subject == id {
		return nil
	}
	return s.guard.Require(ctx, perm, "identity/user/"+id)
}

// administrators asks the authz service who holds the admin role everywhere. It fails closed:
// when authz cannot answer, no user is disabled or deleted.
func (s *Server) administrators(ctx context.Context) ([]string, error) {
	res, err := s.admins.ListAdministrators(ctx, connect.NewRequest(&authzv1.ListAdministratorsRequest{}))
	if err != nil {
		return nil, errs.Unavailable(err, "the administrators could not be listed, so nothing was changed; retry later")
	}
	return res.Msg.GetUserIds(), nil
}

// maxUserIDs is the most ids one FilterActiveUsers call may carry, as the contract says.
const maxUserIDs = 1000

// FilterActiveUsers returns those of the given users who exist and are active, for the authz
// service's guard on revoking the admin role.
func (s *Server) FilterActiveUsers(ctx context.Context, req *connect.Request[identityv1.FilterActiveUsersRequest]) (*connect.Response[identityv1.FilterActiveUsersResponse], error) {
	ids := req.Msg.GetUserIds()
	if err := checkIDs(ids, maxUserIDs); err != nil {
		return nil, err
	}
	active, err := s.store.ActiveAmong(ctx, ids)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&identityv1.FilterActiveUsersResponse{UserIds: active}), nil
}

// maxProfiles is the most ids one LookupProfiles call may carry, as the contract says: the
// largest page of posts a client may show.
const maxProfiles = 100

// LookupProfiles returns the public profiles of the given users that exist, in the order the
// request first names them.
func (s *Server) LookupProfiles(ctx context.Context, req *connect.Request[identityv1.LookupProfilesRequest]) (*connect.Response[identityv1.LookupProfilesResponse], error) {
	ids := req.Msg.GetUserIds()
	if err := checkIDs(ids, maxProfiles); err != nil {
		return nil, err
	}
	users, err := s.store.Profiles(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*ent.User, len(users))
	for _, u := range users {
		byID[u.ID] = u
	}
	res := &identityv1.LookupProfilesResponse{Profiles: make([]*identityv1.Profile, 0, len(users))}
	for _, id := range ids {
		if u, ok := byID[id]; ok {
			res.Profiles = append(res.Profiles, &identityv1.Profile{UserId: u.ID, DisplayName: u.DisplayName})
			delete(byID, id) // An id named again is answered once.
		}
	}
	return connect.NewResponse(res), nil
}

// checkIDs validates a request's user_ids: 1 to most of them, each a user id.
func checkIDs(ids []string, most int) error {
	if len(ids) == 0 || len(ids) > most {
		return errs.Invalid("user_ids", fmt.Sprintf("must hold 1 to %d user ids", most))
	}
	for i, id := range ids {
		if checkID(id) != nil {
			return errs.Invalid(fmt.Sprintf("user_ids[%d]", i), "must be a user id (a UUID)")
		}
	}
	return nil
}

func (s *Server) revokeSessions(ctx context.Context, userID, reason string) error {
	_, err := s.sessions.RevokeUserSessions(ctx, connect.NewRequest(&authv1.RevokeUserSessionsRequest{UserId: userID, Reason: reason}))
	if err != nil {
		return errs.Unavailable(err, "the user's sessions could not be ended, so nothing was changed; retry later")
	}
	return nil
}

// Page tokens carry the last id returned, bound to the filters they belong to.
func encodeToken(lastID string, f store.Filter) string {
	return pagetoken.Encode(filterScope(f), []byte(lastID))
}

func decodeToken(token string, f store.Filter) (string, error) {
	pos, err := pagetoken.Decode(token, filterScope(f))
	if err != nil || pos == nil {
		return "", err
	}
	if len(pos) != 36 {
		return "", pagetoken.Invalid()
	}
	return string(pos), nil
}

func filterScope(f store.Filter) string {
	return fmt.Sprintf("users|%q|%q", f.EmailPrefix, f.Status)
}

var statuses = map[string]identityv1.UserStatus{
	"active":   identityv1.UserStatus_USER_STATUS_ACTIVE,
	"disabled": identityv1.UserStatus_USER_STATUS_DISABLED,
}

func toProto(u *ent.User) *identityv1.User {
	return &identityv1.User{
		Id:            u.ID,
		Email:         u.Email,
		DisplayName:   u.DisplayName,
		Status:        statuses[string(u.Status)],
		EmailVerified: u.EmailVerified,
		CreateTime:    timestamppb.New(u.CreateTime),
		UpdateTime:    timestamppb.New(u.UpdateTime),
	}
}
