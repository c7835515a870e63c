// Package handler implements the AuthService API and the JWKS document.
package handler

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/clientinfo"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/services/auth/ent"
	"github.com/basaltplatform/basalt/services/auth/internal/store"
)

// Identity is what the handler needs of the identity service; its generated client has it.
type Identity interface {
	RegisterUser(context.Context, *connect.Request[identityv1.RegisterUserRequest]) (*connect.Response[identityv1.RegisterUserResponse], error)
	VerifyCredentials(context.Context, *connect.Request[identityv1.VerifyCredentialsRequest]) (*connect.Response[identityv1.VerifyCredentialsResponse], error)
}

// Signer gives the key that signs now; the key ring has it.
type Signer interface {
	Signer() (jwk.Key, error)
	JWKS() []byte
}

// Lifetimes of what the service issues.
type Lifetimes struct {
	// Access is the access token's lifetime.
	Access time.Duration
	// Session is a session's absolute lifetime, however often it is refreshed.
	Session time.Duration
}

// Server implements basalt.auth.v1.AuthService.
type Server struct {
	store     *store.Store
	identity  Identity
	keys      Signer
	outbox    *outbox.Outbox
	issuer    string
	audience  string
	lifetimes Lifetimes
	now       func() time.Time
}

var _ authv1connect.AuthServiceHandler = (*Server)(nil)

// Option configures New.
type Option func(*Server)

// WithClock replaces the clock.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New returns the API over its collaborators.
func New(st *store.Store, identity Identity, keys Signer, ob *outbox.Outbox, issuer, audience string, lt Lifetimes, opts ...Option) *Server {
	s := &Server{store: st, identity: identity, keys: keys, outbox: ob, issuer: issuer, audience: audience, lifetimes: lt, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Register creates a user through the identity service and starts their first session.
func (s *Server) Register(ctx context.Context, req *connect.Request[authv1.RegisterRequest]) (*connect.Response[authv1.RegisterResponse], error) {
	res, err := s.identity.RegisterUser(ctx, connect.NewRequest(&identityv1.RegisterUserRequest{
		Email: req.Msg.GetEmail(), Password: req.Msg.GetPassword(), DisplayName: req.Msg.GetDisplayName(),
	}))
	if err != nil {
		return nil, err
	}
	user := res.Msg.GetUser()
	tokens, err := s.startSession(ctx, user.GetId(), s.outbox.Event(as(ctx, user.GetId()), "auth.register", outbox.Success, "user", user.GetId(), nil))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.RegisterResponse{User: user, Tokens: tokens}), nil
}

// Login checks credentials with the identity service and starts a session.
func (s *Server) Login(ctx context.Context, req *connect.Request[authv1.LoginRequest]) (*connect.Response[authv1.LoginResponse], error) {
	email := strings.ToLower(strings.TrimSpace(req.Msg.GetEmail()))
	res, err := s.identity.VerifyCredentials(ctx, connect.NewRequest(&identityv1.VerifyCredentialsRequest{
		Email: req.Msg.GetEmail(), Password: req.Msg.GetPassword(),
	}))
	if err != nil {
		s.recordLoginFailure(ctx, email, err)
		return nil, err
	}
	userID := res.Msg.GetUser().GetId()
	tokens, err := s.startSession(ctx, userID, s.outbox.Event(as(ctx, userID), "auth.login", outbox.Success, "user", userID, nil))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.LoginResponse{Tokens: tokens}), nil
}

// recordLoginFailure records a refused login with the reason's code. The typed email is
// recorded (it is what an investigator searches for); the password never is.
func (s *Server) recordLoginFailure(ctx context.Context, email string, cause error) {
	code := connect.CodeOf(cause)
	if code == connect.CodeUnavailable || code == connect.CodeInternal || code == connect.CodeInvalidArgument {
		return // not a verdict on the credentials
	}
	outcome := outbox.Failure
	if code == connect.CodeResourceExhausted || code == connect.CodePermissionDenied {
		outcome = outbox.Denied
	}
	md := map[string]string{"reason": code.String()}
	if len(email) <= 254 {
		md["email"] = email
	}
	_ = s.outbox.Record(ctx, s.outbox.Event(ctx, "auth.login", outcome, "", "", md))
}

// startSession stores a session and issues its tokens.
func (s *Server) startSession(ctx context.Context, userID string, events ...*auditv1.Event) (*authv1.Tokens, error) {
	now := s.now().UTC()
	refresh, hash := newRefreshToken()
	sid := uuid.Must(uuid.NewV7()).String()
	info := clientinfo.From(ctx)
	for _, ev := range events {
		ev.Metadata = withSession(ev.Metadata, sid)
	}
	if err := s.store.StartSession(ctx, store.NewSession{
		ID: sid, UserID: userID, IP: info.IP, UserAgent: info.UserAgent,
		Now: now, Expires: now.Add(s.lifetimes.Session), RefreshHash: hash,
	}, events...); err != nil {
		return nil, err
	}
	return s.tokens(userID, sid, refresh, now)
}

func (s *Server) tokens(userID, sid, refresh string, now time.Time) (*authv1.Tokens, error) {
	key, err := s.keys.Signer()
	if err != nil {
		return nil, err
	}
	access, err := authn.Issue(key, authn.AccessClaims{
		Issuer: s.issuer, Audience: s.audience, Subject: userID, SessionID: sid,
		TokenID: uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(s.lifetimes.Access),
	})
	if err != nil {
		return nil, err
	}
	return &authv1.Tokens{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int32(s.lifetimes.Access / time.Second)}, nil
}

// Refresh exchanges a refresh token for new tokens. Presenting a spent token ends its session:
// one of the two holders is not the user.
func (s *Server) Refresh(ctx context.Context, req *connect.Request[authv1.RefreshRequest]) (*connect.Response[authv1.RefreshResponse], error) {
	hash, err := refreshHash(req.Msg.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	next, nextHash := newRefreshToken()
	sess, err := s.store.Rotate(ctx, hash, nextHash, now, func(sess *ent.Session) []*auditv1.Event {
		return []*auditv1.Event{s.outbox.Event(as(ctx, sess.UserID), "auth.refresh", outbox.Success, "session", sess.ID, nil)}
	})
	var reused *store.ReusedError
	if errors.As(err, &reused) {
		_, rerr := s.store.RevokeSession(context.WithoutCancel(ctx), reused.SessionID, "refresh_token_reused", now, func(sess *ent.Session) []*auditv1.Event {
			return []*auditv1.Event{s.outbox.Event(ctx, "auth.refresh.reuse_detected", outbox.Denied, "session", sess.ID, map[string]string{"user_id": sess.UserID})}
		})
		if rerr != nil {
			return nil, rerr
		}
		return nil, errs.Unauthenticated("the refresh token was already used; the session has ended")
	}
	if err != nil {
		return nil, err
	}
	tokens, err := s.tokens(sess.UserID, sess.ID, next, now)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.RefreshResponse{Tokens: tokens}), nil
}

// Logout ends the session of a refresh token. An unknown token is already logged out.
func (s *Server) Logout(ctx context.Context, req *connect.Request[authv1.LogoutRequest]) (*connect.Response[authv1.LogoutResponse], error) {
	hash, err := refreshHash(req.Msg.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	sess, err := s.store.SessionByRefresh(ctx, hash)
	if errors.Is(err, store.ErrInvalidRefresh) {
		return connect.NewResponse(&authv1.LogoutResponse{}), nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.revoke(ctx, sess, "logout", "auth.logout"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.LogoutResponse{}), nil
}

func (s *Server) revoke(ctx context.Context, sess *ent.Session, reason, action string) error {
	_, err := s.store.RevokeSession(ctx, sess.ID, reason, s.now().UTC(), func(sess *ent.Session) []*auditv1.Event {
		return []*auditv1.Event{s.outbox.Event(as(ctx, sess.UserID), action, outbox.Success, "session", sess.ID, map[string]string{"reason": reason})}
	})
	return err
}

// ListSessions lists the caller's active sessions.
func (s *Server) ListSessions(ctx context.Context, _ *connect.Request[authv1.ListSessionsRequest]) (*connect.Response[authv1.ListSessionsResponse], error) {
	p, ok := authn.PrincipalFrom(ctx)
	if !ok {
		return nil, errs.Unauthenticated("a user's access token is required")
	}
	sessions, err := s.store.ActiveSessions(ctx, p.Subject, s.now())
	if err != nil {
		return nil, err
	}
	res := &authv1.ListSessionsResponse{Sessions: make([]*authv1.Session, len(sessions))}
	for i, sess := range sessions {
		res.Sessions[i] = &authv1.Session{
			Id: sess.ID, CreateTime: timestamppb.New(sess.CreatedAt), LastRefreshTime: timestamppb.New(sess.LastRefreshAt),
			ExpireTime: timestamppb.New(sess.ExpiresAt), Ip: sess.IP, UserAgent: sess.UserAgent, Current: sess.ID == p.SessionID,
		}
	}
	return connect.NewResponse(res), nil
}

// RevokeSession ends one of the caller's sessions. Another user's session is not found, so
// session ids reveal nothing.
func (s *Server) RevokeSession(ctx context.Context, req *connect.Request[authv1.RevokeSessionRequest]) (*connect.Response[authv1.RevokeSessionResponse], error) {
	p, ok := authn.PrincipalFrom(ctx)
	if !ok {
		return nil, errs.Unauthenticated("a user's access token is required")
	}
	if _, err := uuid.Parse(req.Msg.GetSessionId()); err != nil {
		return nil, errs.Invalid("session_id", "must be a session id")
	}
	sess, err := s.store.Session(ctx, req.Msg.GetSessionId())
	if err != nil {
		return nil, err
	}
	if sess.UserID != p.Subject {
		return nil, store.ErrNoSession
	}
	if err := s.revoke(ctx, sess, "revoked_by_user", "auth.session.revoked"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.RevokeSessionResponse{}), nil
}

// RevokeUserSessions ends every session of a user, for the identity service.
func (s *Server) RevokeUserSessions(ctx context.Context, req *connect.Request[authv1.RevokeUserSessionsRequest]) (*connect.Response[authv1.RevokeUserSessionsResponse], error) {
	var v errs.Violations
	if _, err := uuid.Parse(req.Msg.GetUserId()); err != nil {
		v.Add("user_id", "must be a user id")
	}
	reason := req.Msg.GetReason()
	if reason == "" || len(reason) > 64 {
		v.Add("reason", "must be 1 to 64 characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	n, err := s.store.RevokeUserSessions(ctx, req.Msg.GetUserId(), reason, s.now().UTC(), func(n int) []*auditv1.Event {
		if n == 0 {
			return nil
		}
		return []*auditv1.Event{s.outbox.Event(ctx, "auth.sessions.revoked", outbox.Success, "user", req.Msg.GetUserId(),
			map[string]string{"reason": reason, "sessions": strconv.Itoa(n)})}
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.RevokeUserSessionsResponse{Revoked: int32(n)}), nil
}

// CheckSession says whether a session is active.
func (s *Server) CheckSession(ctx context.Context, req *connect.Request[authv1.CheckSessionRequest]) (*connect.Response[authv1.CheckSessionResponse], error) {
	ok, err := s.Active(ctx, req.Msg.GetSessionId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authv1.CheckSessionResponse{Active: ok}), nil
}

// Active says whether a session is active; the auth service's own authentication uses it.
func (s *Server) Active(ctx context.Context, sessionID string) (bool, error) {
	if _, err := uuid.Parse(sessionID); err != nil {
		return false, nil
	}
	return s.store.SessionActive(ctx, sessionID, s.now())
}

// ServeJWKS serves the published keys. Verifiers cache it; five minutes matches the kernel's
// cache and is far below the keys' pre-publication period.
func (s *Server) ServeJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.keys.JWKS())
}

// refreshTokenPrefix marks Basalt refresh tokens, so a leaked one is recognisable by secret
// scanners.
const refreshTokenPrefix = "brt_"

// newRefreshToken returns a refresh token (256 bits from crypto/rand) and the hash stored for
// it.
func newRefreshToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token = refreshTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

func refreshHash(token string) (string, error) {
	if !strings.HasPrefix(token, refreshTokenPrefix) || len(token) != len(refreshTokenPrefix)+43 {
		return "", errs.Invalid("refresh_token", "is not a refresh token")
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:]), nil
}

// as returns ctx acting as user, for events of a flow that has no access token yet (login,
// refresh): their actor is the user the flow is about.
func as(ctx context.Context, userID string) context.Context {
	if _, ok := authn.PrincipalFrom(ctx); ok {
		return ctx
	}
	return authn.WithPrincipal(ctx, authn.Principal{Subject: userID})
}

func withSession(md map[string]string, sid string) map[string]string {
	if md == nil {
		md = map[string]string{}
	}
	md["session_id"] = sid
	return md
}
