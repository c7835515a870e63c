// Package handler implements the AuthzService API.
package handler

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/pagetoken"
	"github.com/basaltplatform/basalt/services/authz/ent"
	"github.com/basaltplatform/basalt/services/authz/internal/index"
	"github.com/basaltplatform/basalt/services/authz/internal/store"
)

// PermManageRoles is the permission every role administration method needs.
const PermManageRoles = "authz.roles.manage"

// Users says which users are active; the generated IdentityService client has it.
type Users interface {
	FilterActiveUsers(context.Context, *connect.Request[identityv1.FilterActiveUsersRequest]) (*connect.Response[identityv1.FilterActiveUsersResponse], error)
}

// Server implements basalt.authz.v1.AuthzService.
type Server struct {
	store  *store.Store
	index  *index.Index
	sync   *index.Syncer
	outbox *outbox.Outbox
	users  Users
	now    func() time.Time
}

var _ authzv1connect.AuthzServiceHandler = (*Server)(nil)

// New returns the API. users is the identity service, asked before the admin role is revoked.
func New(st *store.Store, ix *index.Index, sync *index.Syncer, ob *outbox.Outbox, users Users) *Server {
	return &Server{store: st, index: ix, sync: sync, outbox: ob, users: users, now: time.Now}
}

var (
	rolePattern     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	userPattern     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	servicePattern  = regexp.MustCompile(`^service:[a-z][a-z0-9_-]{0,62}$`)
	resourcePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}(/[A-Za-z0-9_.:@-]{1,128}){0,7}$`)
)

func checkSubject(v *errs.Violations, field, subject string) {
	if !userPattern.MatchString(subject) && !servicePattern.MatchString(subject) {
		v.Add(field, `must be a user id or "service:<name>"`)
	}
}

func checkResource(v *errs.Violations, field, resource string) {
	if resource != "" && (len(resource) > 256 || !resourcePattern.MatchString(resource)) {
		v.Add(field, `must be a resource path such as "blog/post/123"`)
	}
}

func checkRoleName(v *errs.Violations, field, name string) {
	if !rolePattern.MatchString(name) {
		v.Add(field, "must be a lower-case name of 1 to 63 letters, digits and dashes")
	}
}

func checkRoleBody(v *errs.Violations, description string, permissions []string) {
	if utf8.RuneCountInString(description) > 500 {
		v.Add("role.description", "must be at most 500 characters")
	}
	if len(permissions) > 100 {
		v.Add("role.permissions", "must hold at most 100 permissions")
	}
	for i, p := range permissions {
		if !index.ValidGrant(p) {
			v.Add(fmt.Sprintf("role.permissions[%d]", i), `must be "*", "<service>.*", "<service>.<resource>.*" or "<service>.<resource>.<verb>"`)
		}
	}
}

func normalizePermissions(ps []string) []string {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

// CreateRole creates a role.
func (s *Server) CreateRole(ctx context.Context, req *connect.Request[authzv1.CreateRoleRequest]) (*connect.Response[authzv1.CreateRoleResponse], error) {
	r := req.Msg.GetRole()
	var v errs.Violations
	checkRoleName(&v, "role.name", r.GetName())
	checkRoleBody(&v, r.GetDescription(), r.GetPermissions())
	if err := v.Err(); err != nil {
		return nil, err
	}
	created, rev, err := s.store.CreateRole(ctx, &ent.Role{ID: r.GetName(), Description: r.GetDescription(), Permissions: normalizePermissions(r.GetPermissions())},
		func(r *ent.Role) []*auditv1.Event {
			return []*auditv1.Event{s.outbox.Event(ctx, "authz.role.created", outbox.Success, "role", r.ID, map[string]string{"permissions": strings.Join(r.Permissions, " ")})}
		})
	if err != nil {
		return nil, err
	}
	if err := s.sync.Changed(ctx, rev); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.CreateRoleResponse{Role: toRole(created)}), nil
}

// GetRole returns a role.
func (s *Server) GetRole(ctx context.Context, req *connect.Request[authzv1.GetRoleRequest]) (*connect.Response[authzv1.GetRoleResponse], error) {
	var v errs.Violations
	checkRoleName(&v, "name", req.Msg.GetName())
	if err := v.Err(); err != nil {
		return nil, err
	}
	r, err := s.store.Role(ctx, req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.GetRoleResponse{Role: toRole(r)}), nil
}

// ListRoles lists roles by name.
func (s *Server) ListRoles(ctx context.Context, req *connect.Request[authzv1.ListRolesRequest]) (*connect.Response[authzv1.ListRolesResponse], error) {
	size, err := pageSize(req.Msg.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(req.Msg.GetPageToken(), "roles")
	if err != nil {
		return nil, err
	}
	roles, more, err := s.store.Roles(ctx, after, size)
	if err != nil {
		return nil, err
	}
	res := &authzv1.ListRolesResponse{}
	for _, r := range roles {
		res.Roles = append(res.Roles, toRole(r))
	}
	if more {
		res.NextPageToken = encodeToken(roles[len(roles)-1].ID, "roles")
	}
	return connect.NewResponse(res), nil
}

// UpdateRole changes a role's description or permissions.
func (s *Server) UpdateRole(ctx context.Context, req *connect.Request[authzv1.UpdateRoleRequest]) (*connect.Response[authzv1.UpdateRoleResponse], error) {
	r := req.Msg.GetRole()
	var v errs.Violations
	checkRoleName(&v, "role.name", r.GetName())
	paths := req.Msg.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		v.Add("update_mask", `must list "description" and/or "permissions"`)
	}
	for _, p := range paths {
		if p != "description" && p != "permissions" {
			v.Add("update_mask", fmt.Sprintf("%q cannot be updated", p))
		}
	}
	checkRoleBody(&v, r.GetDescription(), r.GetPermissions())
	if err := v.Err(); err != nil {
		return nil, err
	}
	var changed []string
	updated, rev, err := s.store.UpdateRole(ctx, r.GetName(), func(cur *ent.Role, upd *ent.RoleUpdateOne) error {
		for _, p := range paths {
			switch p {
			case "description":
				upd.SetDescription(r.GetDescription())
			case "permissions":
				if cur.ID == store.AdminRole {
					// Changing admin could leave nobody able to administer anything.
					return errs.FailedPrecondition("the admin role's permissions cannot be changed")
				}
				upd.SetPermissions(normalizePermissions(r.GetPermissions()))
			}
			changed = append(changed, p)
		}
		return nil
	}, func(r *ent.Role) []*auditv1.Event {
		return []*auditv1.Event{s.outbox.Event(ctx, "authz.role.updated", outbox.Success, "role", r.ID,
			map[string]string{"fields": strings.Join(changed, ","), "permissions": strings.Join(r.Permissions, " ")})}
	})
	if err != nil {
		return nil, err
	}
	if err := s.sync.Changed(ctx, rev); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.UpdateRoleResponse{Role: toRole(updated)}), nil
}

// DeleteRole deletes a role.
func (s *Server) DeleteRole(ctx context.Context, req *connect.Request[authzv1.DeleteRoleRequest]) (*connect.Response[authzv1.DeleteRoleResponse], error) {
	var v errs.Violations
	checkRoleName(&v, "name", req.Msg.GetName())
	if err := v.Err(); err != nil {
		return nil, err
	}
	rev, err := s.store.DeleteRole(ctx, req.Msg.GetName(), func(r *ent.Role) []*auditv1.Event {
		return []*auditv1.Event{s.outbox.Event(ctx, "authz.role.deleted", outbox.Success, "role", r.ID, nil)}
	})
	if err != nil {
		return nil, err
	}
	if err := s.sync.Changed(ctx, rev); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.DeleteRoleResponse{}), nil
}

// AssignRole binds a role.
func (s *Server) AssignRole(ctx context.Context, req *connect.Request[authzv1.AssignRoleRequest]) (*connect.Response[authzv1.AssignRoleResponse], error) {
	b, err := s.assign(ctx, req.Msg.GetSubject(), req.Msg.GetRole(), req.Msg.GetResource())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.AssignRoleResponse{Binding: b}), nil
}

// GrantRole binds a role everywhere, for the platform's own flows.
func (s *Server) GrantRole(ctx context.Context, req *connect.Request[authzv1.GrantRoleRequest]) (*connect.Response[authzv1.GrantRoleResponse], error) {
	b, err := s.assign(ctx, req.Msg.GetSubject(), req.Msg.GetRole(), "")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.GrantRoleResponse{Binding: b}), nil
}

func (s *Server) assign(ctx context.Context, subject, role, resource string) (*authzv1.RoleBinding, error) {
	var v errs.Violations
	checkSubject(&v, "subject", subject)
	checkRoleName(&v, "role", role)
	checkResource(&v, "resource", resource)
	if err := v.Err(); err != nil {
		return nil, err
	}
	b, _, rev, err := s.store.Assign(ctx, subject, role, resource, s.now(), func(b *ent.RoleBinding) []*auditv1.Event {
		return []*auditv1.Event{s.outbox.Event(ctx, "authz.role.assigned", outbox.Success, "subject", b.Subject,
			map[string]string{"role": b.Role, "resource": b.Resource})}
	})
	if err != nil {
		return nil, err
	}
	if err := s.sync.Changed(ctx, rev); err != nil {
		return nil, err
	}
	return toBinding(b), nil
}

// RevokeRole removes a binding.
func (s *Server) RevokeRole(ctx context.Context, req *connect.Request[authzv1.RevokeRoleRequest]) (*connect.Response[authzv1.RevokeRoleResponse], error) {
	var v errs.Violations
	checkSubject(&v, "subject", req.Msg.GetSubject())
	checkRoleName(&v, "role", req.Msg.GetRole())
	checkResource(&v, "resource", req.Msg.GetResource())
	if err := v.Err(); err != nil {
		return nil, err
	}
	var keep store.Keep
	if req.Msg.GetRole() == store.AdminRole && req.Msg.GetResource() == "" && userPattern.MatchString(req.Msg.GetSubject()) {
		keep = s.keepAnAdministrator(req.Msg.GetSubject())
	}
	rev, err := s.store.Revoke(ctx, req.Msg.GetSubject(), req.Msg.GetRole(), req.Msg.GetResource(), keep, func(b *ent.RoleBinding) []*auditv1.Event {
		return []*auditv1.Event{s.outbox.Event(ctx, "authz.role.revoked", outbox.Success, "subject", b.Subject,
			map[string]string{"role": b.Role, "resource": b.Resource})}
	})
	if err != nil {
		return nil, err
	}
	if err := s.sync.Changed(ctx, rev); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.RevokeRoleResponse{}), nil
}

// ErrLastAdministrator refuses to revoke the admin role from the last active user holding it.
var ErrLastAdministrator = errs.FailedPrecondition("the last active administrator cannot lose the admin role; give it to another active user first")

// maxUserIDs is the most user ids one FilterActiveUsers call may carry, as the contract says.
const maxUserIDs = 1000

// keepAnAdministrator guards revoking the admin role everywhere from subject, a user: it
// refuses when subject is active and none of the role's other holders is an active user.
// Services bound to the role do not count, nor do users the identity service does not know or
// has disabled; revoking from such a user loses no active administrator and is allowed.
func (s *Server) keepAnAdministrator(subject string) store.Keep {
	return func(ctx context.Context, others []string) error {
		ids := []string{subject}
		for _, o := range others {
			if userPattern.MatchString(o) {
				ids = append(ids, o)
			}
		}
		active, err := s.activeUsers(ctx, ids)
		if err != nil {
			return err
		}
		if !active[subject] || len(active) > 1 {
			return nil
		}
		return ErrLastAdministrator
	}
}

// activeUsers asks the identity service which of ids are active users. It fails closed: when
// identity cannot answer, neither can the caller.
func (s *Server) activeUsers(ctx context.Context, ids []string) (map[string]bool, error) {
	asked := map[string]bool{}
	for _, id := range ids {
		asked[id] = true
	}
	active := map[string]bool{}
	for chunk := range slices.Chunk(ids, maxUserIDs) {
		res, err := s.users.FilterActiveUsers(ctx, connect.NewRequest(&identityv1.FilterActiveUsersRequest{UserIds: chunk}))
		if err != nil {
			return nil, errs.Unavailable(err, "whether the administrators are active could not be checked; retry later")
		}
		for _, id := range res.Msg.GetUserIds() {
			if asked[id] {
				active[id] = true
			}
		}
	}
	return active, nil
}

// ListAdministrators lists the users bound to the admin role everywhere, from the stored
// bindings, for the identity service's guard on disabling and deleting users.
func (s *Server) ListAdministrators(ctx context.Context, _ *connect.Request[authzv1.ListAdministratorsRequest]) (*connect.Response[authzv1.ListAdministratorsResponse], error) {
	subjects, err := s.store.Holders(ctx, store.AdminRole)
	if err != nil {
		return nil, err
	}
	res := &authzv1.ListAdministratorsResponse{}
	for _, subject := range subjects {
		if userPattern.MatchString(subject) {
			res.UserIds = append(res.UserIds, subject)
		}
	}
	return connect.NewResponse(res), nil
}

// ListRoleBindings lists bindings of a subject and/or a role.
func (s *Server) ListRoleBindings(ctx context.Context, req *connect.Request[authzv1.ListRoleBindingsRequest]) (*connect.Response[authzv1.ListRoleBindingsResponse], error) {
	var v errs.Violations
	if req.Msg.GetSubject() != "" {
		checkSubject(&v, "subject", req.Msg.GetSubject())
	}
	if req.Msg.GetRole() != "" {
		checkRoleName(&v, "role", req.Msg.GetRole())
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	size, err := pageSize(req.Msg.GetPageSize())
	if err != nil {
		return nil, err
	}
	scope := "bindings|" + req.Msg.GetSubject() + "|" + req.Msg.GetRole()
	after, err := decodeToken(req.Msg.GetPageToken(), scope)
	if err != nil {
		return nil, err
	}
	bs, more, err := s.store.Bindings(ctx, req.Msg.GetSubject(), req.Msg.GetRole(), after, size)
	if err != nil {
		return nil, err
	}
	res := &authzv1.ListRoleBindingsResponse{}
	for _, b := range bs {
		res.Bindings = append(res.Bindings, toBinding(b))
	}
	if more {
		res.NextPageToken = encodeToken(bs[len(bs)-1].ID, scope)
	}
	return connect.NewResponse(res), nil
}

// mayAsk allows questions about subject: from any service, from the subject itself, and from
// holders of authz.roles.manage.
func (s *Server) mayAsk(ctx context.Context, subject string) error {
	if _, ok := authn.CallerFrom(ctx); ok {
		return nil
	}
	asker := authn.Subject(ctx)
	if asker == "" {
		return errs.Unauthenticated("an access token is required")
	}
	if asker == subject || s.index.Check(asker, PermManageRoles, "") {
		return nil
	}
	return errs.PermissionDenied("only the subject itself, or a holder of %q, may ask about it", PermManageRoles)
}

func (s *Server) check(ctx context.Context, c *authzv1.CheckRequest, field string, v *errs.Violations) bool {
	checkSubject(v, field+"subject", c.GetSubject())
	if !index.ValidCheck(c.GetPermission()) {
		v.Add(field+"permission", "must be <service>.<resource>.<verb> without wildcards")
	}
	checkResource(v, field+"resource", c.GetResource())
	return s.index.Check(c.GetSubject(), c.GetPermission(), c.GetResource())
}

// Check answers one question from the index.
func (s *Server) Check(ctx context.Context, req *connect.Request[authzv1.CheckRequest]) (*connect.Response[authzv1.CheckResponse], error) {
	var v errs.Violations
	allowed := s.check(ctx, req.Msg, "", &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := s.mayAsk(ctx, req.Msg.GetSubject()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.CheckResponse{Allowed: allowed}), nil
}

// BatchCheck answers up to 100 questions, in order.
func (s *Server) BatchCheck(ctx context.Context, req *connect.Request[authzv1.BatchCheckRequest]) (*connect.Response[authzv1.BatchCheckResponse], error) {
	checks := req.Msg.GetChecks()
	if len(checks) == 0 || len(checks) > 100 {
		return nil, errs.Invalid("checks", "must hold 1 to 100 checks")
	}
	var v errs.Violations
	res := &authzv1.BatchCheckResponse{Results: make([]*authzv1.CheckResponse, len(checks))}
	for i, c := range checks {
		res.Results[i] = &authzv1.CheckResponse{Allowed: s.check(ctx, c, fmt.Sprintf("checks[%d].", i), &v)}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	for _, c := range checks {
		if err := s.mayAsk(ctx, c.GetSubject()); err != nil {
			return nil, err
		}
	}
	return connect.NewResponse(res), nil
}

// ListSubjectPermissions lists a subject's effective permissions.
func (s *Server) ListSubjectPermissions(ctx context.Context, req *connect.Request[authzv1.ListSubjectPermissionsRequest]) (*connect.Response[authzv1.ListSubjectPermissionsResponse], error) {
	var v errs.Violations
	checkSubject(&v, "subject", req.Msg.GetSubject())
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := s.mayAsk(ctx, req.Msg.GetSubject()); err != nil {
		return nil, err
	}
	res := &authzv1.ListSubjectPermissionsResponse{}
	for _, g := range s.index.Grants(req.Msg.GetSubject()) {
		res.Grants = append(res.Grants, &authzv1.Grant{Permission: g.Permission, Resource: g.Resource, Role: g.Role})
	}
	return connect.NewResponse(res), nil
}

// Sync catches this instance up with a revision another instance committed.
func (s *Server) Sync(ctx context.Context, req *connect.Request[authzv1.SyncRequest]) (*connect.Response[authzv1.SyncResponse], error) {
	if req.Msg.GetRevision() < 0 {
		return nil, errs.Invalid("revision", "must not be negative")
	}
	if err := s.sync.CatchUp(ctx, req.Msg.GetRevision()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&authzv1.SyncResponse{Revision: s.index.Revision()}), nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n < 0 || n > 100:
		return 0, errs.Invalid("page_size", "must be between 1 and 100")
	case n == 0:
		return 50, nil
	}
	return int(n), nil
}

// Page tokens carry the last key returned, bound to the listing they belong to.
func encodeToken(last, scope string) string {
	return pagetoken.Encode(scope, []byte(last))
}

func decodeToken(token, scope string) (string, error) {
	pos, err := pagetoken.Decode(token, scope)
	return string(pos), err
}

func toRole(r *ent.Role) *authzv1.Role {
	return &authzv1.Role{
		Name: r.ID, Description: r.Description, Permissions: r.Permissions, Builtin: r.Builtin,
		CreateTime: timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
}

func toBinding(b *ent.RoleBinding) *authzv1.RoleBinding {
	return &authzv1.RoleBinding{Subject: b.Subject, Role: b.Role, Resource: b.Resource, CreateTime: timestamppb.New(b.CreateTime)}
}
