// Package handler implements the BlogService API.
package handler

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/pagetoken"
	"github.com/basaltplatform/basalt/services/blog/ent"
	"github.com/basaltplatform/basalt/services/blog/internal/store"
)

// PermManagePosts lets its holder change and delete posts of other authors. The handler checks
// it itself, on the post's resource path, since the contract cannot say "the author, or".
const PermManagePosts = "blog.posts.manage"

// The audit actions of the blog's writes; their resource type is ResourceType.
const (
	ActionCreate = "blog.post.create"
	ActionUpdate = "blog.post.update"
	ActionDelete = "blog.post.delete"
	ResourceType = "post"
)

// Guard checks permissions and records refusals; *permission.Guard has it.
type Guard interface {
	Allowed(ctx context.Context, permission, resource string) (bool, error)
	Deny(ctx context.Context, permission, resource string)
}

// Handler implements basalt.blog.v1.BlogService.
type Handler struct {
	store  *store.Store
	guard  Guard
	outbox *outbox.Outbox
}

var _ blogv1connect.BlogServiceHandler = (*Handler)(nil)

// New returns the API over its collaborators.
func New(st *store.Store, guard Guard, ob *outbox.Outbox) *Handler {
	return &Handler{store: st, guard: guard, outbox: ob}
}

// CreatePost publishes a post by the calling user; the contract requires blog.posts.create.
func (h *Handler) CreatePost(ctx context.Context, req *connect.Request[blogv1.CreatePostRequest]) (*connect.Response[blogv1.CreatePostResponse], error) {
	p, ok := authn.PrincipalFrom(ctx)
	if !ok {
		// A service holding the permission still has no user to name as the author.
		return nil, errs.Unauthenticated("a user's access token is required")
	}
	title, body := normalizeTitle(req.Msg.GetTitle()), req.Msg.GetBody()
	var v errs.Violations
	checkTitle(&v, "title", title)
	checkBody(&v, "body", body)
	if err := v.Err(); err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	created, err := h.store.Create(ctx, store.NewPost{ID: id.String(), AuthorID: p.Subject, Title: title, Body: body},
		h.event(ctx, ActionCreate, nil))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&blogv1.CreatePostResponse{Post: toProto(created)}), nil
}

// GetPost returns a post to anyone.
func (h *Handler) GetPost(ctx context.Context, req *connect.Request[blogv1.GetPostRequest]) (*connect.Response[blogv1.GetPostResponse], error) {
	if err := checkID("post_id", req.Msg.GetPostId()); err != nil {
		return nil, err
	}
	p, err := h.store.Get(ctx, req.Msg.GetPostId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&blogv1.GetPostResponse{Post: toProto(p)}), nil
}

// ListPosts lists posts newest first to anyone.
func (h *Handler) ListPosts(ctx context.Context, req *connect.Request[blogv1.ListPostsRequest]) (*connect.Response[blogv1.ListPostsResponse], error) {
	var v errs.Violations
	size := int(req.Msg.GetPageSize())
	switch {
	case size < 0 || size > 100:
		v.Add("page_size", "must be between 1 and 100")
	case size == 0:
		size = 20
	}
	f := store.Filter{AuthorID: req.Msg.GetAuthorId()}
	if f.AuthorID != "" && !isID(f.AuthorID) {
		v.Add("author_id", "must be a user id (a UUID)")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	before, err := decodeToken(req.Msg.GetPageToken(), f)
	if err != nil {
		return nil, err
	}
	posts, more, err := h.store.List(ctx, f, before, size)
	if err != nil {
		return nil, err
	}
	res := &blogv1.ListPostsResponse{Posts: make([]*blogv1.Post, len(posts))}
	for i, p := range posts {
		res.Posts[i] = toProto(p)
	}
	if more {
		res.NextPageToken = encodeToken(posts[len(posts)-1].ID, f)
	}
	return connect.NewResponse(res), nil
}

// UpdatePost changes the title and/or body of a post, as update_mask says.
func (h *Handler) UpdatePost(ctx context.Context, req *connect.Request[blogv1.UpdatePostRequest]) (*connect.Response[blogv1.UpdatePostResponse], error) {
	in := req.Msg.GetPost()
	var v errs.Violations
	if !isID(in.GetPostId()) {
		v.Add("post.post_id", "must be a post id (a UUID)")
	}
	var setTitle, setBody bool
	paths := req.Msg.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		// AIP-134: without a mask, the fields the request sets are the ones to change.
		setTitle, setBody = in.GetTitle() != "", in.GetBody() != ""
		if !setTitle && !setBody {
			v.Add("update_mask", `must list "title" and/or "body", or post must carry a new title or body`)
		}
	}
	for _, p := range paths {
		switch p {
		case "title":
			setTitle = true
		case "body":
			setBody = true
		case "*":
			setTitle, setBody = true, true
		default:
			v.Add("update_mask", fmt.Sprintf(`%q cannot be updated; only "title" and "body" can`, p))
		}
	}
	title, body := normalizeTitle(in.GetTitle()), in.GetBody()
	if setTitle {
		checkTitle(&v, "post.title", title)
	}
	if setBody {
		checkBody(&v, "post.body", body)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := h.authorize(ctx, in.GetPostId()); err != nil {
		return nil, err
	}
	var changed []string
	updated, err := h.store.Update(ctx, in.GetPostId(), func(cur *ent.Post, upd *ent.PostUpdateOne) (bool, error) {
		if setTitle && title != cur.Title {
			upd.SetTitle(title)
			changed = append(changed, "title")
		}
		if setBody && body != cur.Body {
			upd.SetBody(body)
			changed = append(changed, "body")
		}
		return len(changed) > 0, nil
	}, func(p *ent.Post) []*auditv1.Event {
		return h.event(ctx, ActionUpdate, map[string]string{"fields": strings.Join(changed, ",")})(p)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&blogv1.UpdatePostResponse{Post: toProto(updated)}), nil
}

// DeletePost deletes a post.
func (h *Handler) DeletePost(ctx context.Context, req *connect.Request[blogv1.DeletePostRequest]) (*connect.Response[blogv1.DeletePostResponse], error) {
	id := req.Msg.GetPostId()
	if err := checkID("post_id", id); err != nil {
		return nil, err
	}
	if err := h.authorize(ctx, id); err != nil {
		return nil, err
	}
	if err := h.store.Delete(ctx, id, h.event(ctx, ActionDelete, nil)); err != nil {
		return nil, err
	}
	return connect.NewResponse(&blogv1.DeletePostResponse{}), nil
}

// authorize allows a change of the post with id to its author, and to anyone holding
// blog.posts.manage on it; a refusal is recorded as an authz.denied audit event. The post must
// exist: posts are public, so not_found tells nobody anything new. The author of a post never
// changes, so the decision stays true for the write that follows.
func (h *Handler) authorize(ctx context.Context, id string) error {
	p, err := h.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if who, ok := authn.PrincipalFrom(ctx); ok && who.Subject == p.AuthorID {
		return nil
	}
	resource := "blog/post/" + p.ID
	allowed, err := h.guard.Allowed(ctx, PermManagePosts, resource)
	if err != nil {
		return err
	}
	if !allowed {
		h.guard.Deny(ctx, PermManagePosts, resource)
		return errs.PermissionDenied("only the post's author, or a holder of the permission %q, may change it", PermManagePosts)
	}
	return nil
}

// event returns the audit event of action on the post written, naming its author (metadata
// adds to that).
func (h *Handler) event(ctx context.Context, action string, metadata map[string]string) store.Events {
	return func(p *ent.Post) []*auditv1.Event {
		md := map[string]string{"author_id": p.AuthorID}
		for k, v := range metadata {
			md[k] = v
		}
		return []*auditv1.Event{h.outbox.Event(ctx, action, outbox.Success, ResourceType, p.ID, md)}
	}
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
	if !isID(string(pos)) {
		return "", pagetoken.Invalid()
	}
	return string(pos), nil
}

func filterScope(f store.Filter) string {
	return fmt.Sprintf("posts|%q", f.AuthorID)
}

func toProto(p *ent.Post) *blogv1.Post {
	return &blogv1.Post{
		PostId:     p.ID,
		AuthorId:   p.AuthorID,
		Title:      p.Title,
		Body:       p.Body,
		CreateTime: timestamppb.New(p.CreateTime),
		UpdateTime: timestamppb.New(p.UpdateTime),
	}
}
