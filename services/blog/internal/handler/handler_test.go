package handler_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
	"github.com/basaltplatform/basalt/services/blog/internal/handler"
	"github.com/basaltplatform/basalt/services/blog/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// env is a blog service running on the real kernel wiring, with an Authority standing in for
// auth and authz (and, unless the audit service is down, audit).
type env struct {
	auth *authority.Authority
	url  string
	svc  *service.Service
}

// start runs the service, built with opts. With auditDown, its audit events stay in its outbox
// table, where the tests read them: the relay cannot deliver (and so delete) them.
func start(t *testing.T, auditDown bool, opts ...service.Option) *env {
	t.Helper()
	a := authority.New(t)
	ctx := context.Background()
	cfg := a.ServiceConfig(t, "blog")
	if auditDown {
		cfg.Discovery.Static["audit"] = []string{closedURL(t)}
	}
	svc, err := service.New(ctx, cfg, testkit.LogWriter(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(svc.DB, svc.Outbox)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	svc.Server.Mount(blogv1connect.NewBlogServiceHandler(handler.New(st, svc.Guard, svc.Outbox), svc.Server.HandlerOptions()...))
	testkit.Serve(t, svc)
	return &env{auth: a, url: svc.Server.URL(), svc: svc}
}

// closedURL is the address of a port nobody listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// protocols are the client configurations scenarios run through.
var protocols = map[string][]connect.ClientOption{
	"connect": nil,
	"grpc":    {connect.WithGRPC()},
}

// as returns a client that calls with a user's bearer token ("" for none).
func (e *env) as(t *testing.T, token string, opts ...connect.ClientOption) blogv1connect.BlogServiceClient {
	if token != "" {
		opts = append(opts, connect.WithInterceptors(authn.Bearer(token)))
	}
	return blogv1connect.NewBlogServiceClient(testkit.H2CClient(t), e.url, opts...)
}

// member returns the token of a new subject holding blog.posts.create, as the member role
// gives every signed-up user, and the subject.
func (e *env) member(t *testing.T) (token, subject string) {
	t.Helper()
	token, subject = e.user(t)
	e.auth.Grant(subject, "blog.posts.create", "")
	return token, subject
}

// user returns the token of a new subject holding no permission, and the subject.
func (e *env) user(t *testing.T) (token, subject string) {
	t.Helper()
	subject = uuid.Must(uuid.NewV7()).String()
	return e.auth.Token(t, subject), subject
}

// manager returns the token of a new subject holding blog.posts.manage on resource ("" for
// everywhere).
func (e *env) manager(t *testing.T, resource string) string {
	t.Helper()
	token, subject := e.user(t)
	e.auth.Grant(subject, handler.PermManagePosts, resource)
	return token
}

func (e *env) create(t *testing.T, token, title, body string) *blogv1.Post {
	t.Helper()
	res, err := e.as(t, token).CreatePost(context.Background(), connect.NewRequest(&blogv1.CreatePostRequest{Title: title, Body: body}))
	if err != nil {
		t.Fatalf("CreatePost(%q): %v", title, err)
	}
	return res.Msg.GetPost()
}

// outbox returns the events waiting in the service's outbox table, in the order written.
func (e *env) outbox(t *testing.T) []*auditv1.Event {
	t.Helper()
	rows, err := e.svc.DB.SQL().QueryContext(context.Background(), `SELECT payload FROM basalt_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []*auditv1.Event
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		ev := &auditv1.Event{}
		if err := proto.Unmarshal(payload, ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// postActions returns the actions of the blog.post.* events about the post in the outbox.
func (e *env) postActions(t *testing.T, postID string) []string {
	t.Helper()
	var out []string
	for _, ev := range e.outbox(t) {
		if strings.HasPrefix(ev.GetAction(), "blog.post.") && ev.GetResource().GetId() == postID {
			if ev.GetResource().GetType() != handler.ResourceType || ev.GetService() != "blog" || ev.GetOutcome() != auditv1.Outcome_OUTCOME_SUCCESS {
				t.Errorf("event %v: want a successful event of the blog service on a post", ev)
			}
			out = append(out, ev.GetAction())
		}
	}
	return out
}

// denials counts the authz.denied events about the post's resource in the outbox.
func (e *env) denials(t *testing.T, postID string) int {
	t.Helper()
	n := 0
	for _, ev := range e.outbox(t) {
		if ev.GetAction() == "authz.denied" && ev.GetMetadata()["resource"] == "blog/post/"+postID {
			n++
		}
	}
	return n
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

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	token, author := e.member(t)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			longTitle := strings.Repeat("é", handler.MaxTitleChars)
			res, err := e.as(t, token, opts...).CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "  " + longTitle + " ", Body: strings.Repeat("b", handler.MaxBodyBytes)}))
			if err != nil {
				t.Fatal(err)
			}
			p := res.Msg.GetPost()
			if len(p.GetPostId()) != 36 || p.GetPostId()[14] != '7' || p.GetAuthorId() != author || p.GetTitle() != longTitle ||
				len(p.GetBody()) != handler.MaxBodyBytes || !p.GetCreateTime().AsTime().Equal(p.GetUpdateTime().AsTime()) ||
				time.Since(p.GetCreateTime().AsTime()) > time.Minute {
				t.Fatalf("created %v; want a UUIDv7, the caller as author, the trimmed title and the body", p.GetPostId())
			}
			// Reading needs no token.
			got, err := e.as(t, "", opts...).GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: p.GetPostId()}))
			if err != nil || !proto.Equal(got.Msg.GetPost(), p) {
				t.Fatalf("GetPost = %v, %v; want the post as created", got.Msg.GetPost().GetPostId(), err)
			}
			if acts := e.postActions(t, p.GetPostId()); len(acts) != 1 || acts[0] != handler.ActionCreate {
				t.Fatalf("outbox events of the post: %v, want [%s]", acts, handler.ActionCreate)
			}
			for _, ev := range e.outbox(t) {
				if ev.GetResource().GetId() == p.GetPostId() && (ev.GetActor().GetSubject() != author || ev.GetMetadata()["author_id"] != author) {
					t.Fatalf("the create event %v must name the author as actor", ev)
				}
			}
		})
	}
}

func TestCreateNeedsAUserWithThePermission(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	member, _ := e.member(t)
	stranger, _ := e.user(t)
	tokens, err := authn.NewServiceTokens("importer", []byte(authority.InternalSecret))
	if err != nil {
		t.Fatal(err)
	}
	e.auth.Grant(authn.ServiceSubject("importer"), "blog.posts.create", "")
	asService := blogv1connect.NewBlogServiceClient(testkit.H2CClient(t), e.url, connect.WithInterceptors(authn.NewClientCredentials(tokens)))
	tests := []struct {
		name   string
		client blogv1connect.BlogServiceClient
		want   connect.Code
	}{
		{"no token", e.as(t, ""), connect.CodeUnauthenticated},
		{"a forged token", e.as(t, "not.a.token"), connect.CodeUnauthenticated},
		{"a user without blog.posts.create", e.as(t, stranger), connect.CodePermissionDenied},
		{"a service, which is nobody to name as author", asService, connect.CodeUnauthenticated},
		{"a member", e.as(t, member), 0},
	}
	// The parallel calls all end before the checks that follow the group.
	t.Run("calls", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := tt.client.CreatePost(context.Background(), connect.NewRequest(&blogv1.CreatePostRequest{Title: tt.name}))
				if connect.CodeOf(err) != tt.want && !(tt.want == 0 && err == nil) {
					t.Fatalf("CreatePost = %v, want %v", err, tt.want)
				}
			})
		}
	})
	t.Run("only the member's post was recorded", func(t *testing.T) {
		var created []string
		for _, ev := range e.outbox(t) {
			if ev.GetAction() == handler.ActionCreate {
				created = append(created, ev.GetResource().GetId())
			}
		}
		if len(created) != 1 {
			t.Fatalf("%d create events, want 1", len(created))
		}
	})
}

func TestInputIsValidatedWithClearFields(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	token, _ := e.member(t)
	p := e.create(t, token, "A valid post", "its body")
	client := e.as(t, token)
	str := func(s string) *blogv1.Post { return &blogv1.Post{PostId: p.GetPostId(), Title: s} }
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"create without a title", func() error {
			_, err := client.CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "   ", Body: "x"}))
			return err
		}, "title"},
		{"create with a long title", func() error {
			_, err := client.CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: strings.Repeat("a", handler.MaxTitleChars+1)}))
			return err
		}, "title"},
		{"create with a control character in the title", func() error {
			_, err := client.CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "a\x07b"}))
			return err
		}, "title"},
		{"create with a long body", func() error {
			_, err := client.CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "t", Body: strings.Repeat("b", handler.MaxBodyBytes+1)}))
			return err
		}, "body"},
		{"create with NUL in the body", func() error {
			_, err := client.CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "t", Body: "a\x00b"}))
			return err
		}, "body"},
		{"get a malformed id", func() error {
			_, err := client.GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: "nope"}))
			return err
		}, "post_id"},
		{"get an upper-case id", func() error {
			_, err := client.GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: strings.ToUpper(p.GetPostId())}))
			return err
		}, "post_id"},
		{"list with a negative page size", func() error {
			_, err := client.ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{PageSize: -1}))
			return err
		}, "page_size"},
		{"list with a page size over 100", func() error {
			_, err := client.ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{PageSize: 101}))
			return err
		}, "page_size"},
		{"list by a malformed author", func() error {
			_, err := client.ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{AuthorId: "ada"}))
			return err
		}, "author_id"},
		{"list with a made-up token", func() error {
			_, err := client.ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{PageToken: "bm90IGEgdG9rZW4"}))
			return err
		}, "page_token"},
		{"update a malformed id", func() error {
			_, err := client.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{Post: &blogv1.Post{PostId: "nope", Title: "t"}}))
			return err
		}, "post.post_id"},
		{"update without a post", func() error {
			_, err := client.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{}))
			return err
		}, "post.post_id"},
		{"update nothing", func() error {
			_, err := client.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{Post: str("")}))
			return err
		}, "update_mask"},
		{"update the author", func() error {
			_, err := client.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{Post: str("t"), UpdateMask: mask("author_id")}))
			return err
		}, "update_mask"},
		{"update the title to nothing", func() error {
			_, err := client.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{Post: str(""), UpdateMask: mask("title")}))
			return err
		}, "post.title"},
		{"update the body to too much", func() error {
			_, err := client.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{
				Post: &blogv1.Post{PostId: p.GetPostId(), Body: strings.Repeat("b", handler.MaxBodyBytes+1)}, UpdateMask: mask("body"),
			}))
			return err
		}, "post.body"},
		{"delete a malformed id", func() error {
			_, err := client.DeletePost(ctx, connect.NewRequest(&blogv1.DeletePostRequest{PostId: "nope"}))
			return err
		}, "post_id"},
	}
	// The parallel calls all end before the checks that follow the group.
	t.Run("calls", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				err := tt.call()
				if connect.CodeOf(err) != connect.CodeInvalidArgument || fieldViolation(err) != tt.field {
					t.Fatalf("got %v (field %q), want invalid_argument on %s", err, fieldViolation(err), tt.field)
				}
			})
		}
	})
	t.Run("refused writes record nothing", func(t *testing.T) {
		// Runs after the parallel subtests above have finished.
		if acts := e.postActions(t, p.GetPostId()); len(acts) != 1 {
			t.Fatalf("events of the post: %v, want only its creation", acts)
		}
		for _, ev := range e.outbox(t) {
			if ev.GetAction() == handler.ActionCreate && ev.GetResource().GetId() != p.GetPostId() {
				t.Fatalf("an invalid post was recorded: %v", ev)
			}
		}
	})
}

func TestUnknownPostsAreNotFound(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	token, _ := e.member(t)
	manager := e.manager(t, "")
	unknown := "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b"
	title := "t"
	// The parallel calls all end before the checks that follow the group.
	t.Run("calls", func(t *testing.T) {
		for name, opts := range protocols {
			for who, tok := range map[string]string{"member": token, "manager": manager} {
				t.Run(name+"/"+who, func(t *testing.T) {
					t.Parallel()
					c := e.as(t, tok, opts...)
					if _, err := c.GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: unknown})); connect.CodeOf(err) != connect.CodeNotFound {
						t.Errorf("GetPost: %v, want not_found", err)
					}
					if _, err := c.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{Post: &blogv1.Post{PostId: unknown, Title: title}})); connect.CodeOf(err) != connect.CodeNotFound {
						t.Errorf("UpdatePost: %v, want not_found", err)
					}
					if _, err := c.DeletePost(ctx, connect.NewRequest(&blogv1.DeletePostRequest{PostId: unknown})); connect.CodeOf(err) != connect.CodeNotFound {
						t.Errorf("DeletePost: %v, want not_found", err)
					}
				})
			}
		}
	})
	t.Run("nothing was recorded", func(t *testing.T) {
		for _, ev := range e.outbox(t) {
			if strings.HasPrefix(ev.GetAction(), "blog.") || ev.GetAction() == "authz.denied" {
				t.Fatalf("a call on an unknown post recorded %v", ev)
			}
		}
	})
}

func TestOnlyTheAuthorOrAManagerChangesAPost(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	author, authorID := e.member(t)
	other, _ := e.member(t)
	manager := e.manager(t, "")

	tests := []struct {
		name string
		// token returns the caller's token for the post with id ("" for none).
		token func(t *testing.T, postID string) string
		want  connect.Code
	}{
		{"the author", func(*testing.T, string) string { return author }, 0},
		{"another member", func(*testing.T, string) string { return other }, connect.CodePermissionDenied},
		{"a manager", func(*testing.T, string) string { return manager }, 0},
		{"a manager of this post only", func(t *testing.T, id string) string { return e.manager(t, "blog/post/"+id) }, 0},
		{"a manager of another post", func(t *testing.T, _ string) string {
			return e.manager(t, "blog/post/0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b")
		}, connect.CodePermissionDenied},
		{"an anonymous caller", func(*testing.T, string) string { return "" }, connect.CodeUnauthenticated},
	}
	for name, opts := range protocols {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				p := e.create(t, author, "A post for "+tt.name, "the body")
				c := e.as(t, tt.token(t, p.GetPostId()), opts...)
				title := "Changed by " + tt.name
				upd, err := c.UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{
					Post: &blogv1.Post{PostId: p.GetPostId(), Title: title}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}},
				}))
				if connect.CodeOf(err) != tt.want && !(tt.want == 0 && err == nil) {
					t.Fatalf("UpdatePost = %v, want %v", err, tt.want)
				}
				_, delErr := c.DeletePost(ctx, connect.NewRequest(&blogv1.DeletePostRequest{PostId: p.GetPostId()}))
				if connect.CodeOf(delErr) != tt.want && !(tt.want == 0 && delErr == nil) {
					t.Fatalf("DeletePost = %v, want %v", delErr, tt.want)
				}
				got, getErr := e.as(t, "").GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: p.GetPostId()}))
				acts := e.postActions(t, p.GetPostId())
				if tt.want == 0 {
					if upd.Msg.GetPost().GetTitle() != title || upd.Msg.GetPost().GetAuthorId() != authorID || upd.Msg.GetPost().GetBody() != "the body" {
						t.Fatalf("updated post %v", upd.Msg.GetPost())
					}
					if connect.CodeOf(getErr) != connect.CodeNotFound {
						t.Fatalf("GetPost after the delete: %v, want not_found", getErr)
					}
					if strings.Join(acts, " ") != "blog.post.create blog.post.update blog.post.delete" {
						t.Fatalf("events %v, want create, update and delete", acts)
					}
					return
				}
				if getErr != nil || got.Msg.GetPost().GetTitle() != p.GetTitle() {
					t.Fatalf("the post after refused changes: %v, %v; want it unchanged", got, getErr)
				}
				if len(acts) != 1 || acts[0] != handler.ActionCreate {
					t.Fatalf("events %v, want only the creation", acts)
				}
				if n := e.denials(t, p.GetPostId()); tt.want == connect.CodePermissionDenied && n != 2 {
					t.Fatalf("%d authz.denied events on the post, want 2", n)
				}
			})
		}
	}
}

func TestUpdateFollowsTheMask(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	token, _ := e.member(t)
	p := e.create(t, token, "First title", "First body")
	c := e.as(t, token)
	update := func(post *blogv1.Post, paths ...string) *blogv1.Post {
		t.Helper()
		post.PostId = p.GetPostId()
		req := &blogv1.UpdatePostRequest{Post: post}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		res, err := c.UpdatePost(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetPost()
	}
	steps := []struct {
		name        string
		post        *blogv1.Post
		paths       []string
		title, body string
		event       string // the fields the update event names; "" for no event
	}{
		{"the mask names the title only", &blogv1.Post{Title: " Second title ", Body: "ignored"}, []string{"title"}, "Second title", "First body", "title"},
		{"no mask: the fields set", &blogv1.Post{Body: "Second body"}, nil, "Second title", "Second body", "body"},
		{"a star replaces both", &blogv1.Post{Title: "Third title"}, []string{"*"}, "Third title", "", "title,body"},
		{"the same values change nothing", &blogv1.Post{Title: "Third title"}, []string{"title", "body"}, "Third title", "", ""},
	}
	last := p
	for _, s := range steps {
		before := len(e.postActions(t, p.GetPostId()))
		got := update(s.post, s.paths...)
		if got.GetTitle() != s.title || got.GetBody() != s.body {
			t.Fatalf("%s: got title %q body %q, want %q %q", s.name, got.GetTitle(), got.GetBody(), s.title, s.body)
		}
		var evs []*auditv1.Event
		for _, ev := range e.outbox(t) {
			if ev.GetAction() == handler.ActionUpdate && ev.GetResource().GetId() == p.GetPostId() {
				evs = append(evs, ev)
			}
		}
		after := len(e.postActions(t, p.GetPostId()))
		switch {
		case s.event == "" && (after != before || !got.GetUpdateTime().AsTime().Equal(last.GetUpdateTime().AsTime())):
			t.Fatalf("%s: an update that changes nothing wrote an event or moved update_time", s.name)
		case s.event != "" && (after != before+1 || evs[len(evs)-1].GetMetadata()["fields"] != s.event):
			t.Fatalf("%s: events %d→%d, last %v; want one naming %q", s.name, before, after, evs, s.event)
		case s.event != "" && !got.GetUpdateTime().AsTime().After(last.GetUpdateTime().AsTime()):
			t.Fatalf("%s: update_time did not move", s.name)
		}
		if !got.GetCreateTime().AsTime().Equal(p.GetCreateTime().AsTime()) {
			t.Fatalf("%s: create_time changed", s.name)
		}
		last = got
	}
}

func TestListPostsNewestFirstWithStablePages(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	ada, adaID := e.member(t)
	bob, bobID := e.member(t)
	for i := range 5 {
		e.create(t, ada, "ada "+strconv.Itoa(i), "")
		if i < 2 {
			e.create(t, bob, "bob "+strconv.Itoa(i), "")
		}
	}
	anonymous := e.as(t, "")
	list := func(req *blogv1.ListPostsRequest) ([]string, string) {
		t.Helper()
		res, err := anonymous.ListPosts(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		var titles []string
		for _, p := range res.Msg.GetPosts() {
			titles = append(titles, p.GetTitle())
		}
		return titles, res.Msg.GetNextPageToken()
	}

	var seen []string
	token := ""
	for page := 0; ; page++ {
		titles, next := list(&blogv1.ListPostsRequest{PageSize: 2, PageToken: token, AuthorId: adaID})
		seen = append(seen, titles...)
		if page == 0 {
			// A post added mid-listing is newer than everything listed: it does not shift the
			// pages that follow.
			e.create(t, ada, "ada 5", "")
		}
		if token = next; token == "" {
			break
		}
	}
	if got := strings.Join(seen, ","); got != "ada 4,ada 3,ada 2,ada 1,ada 0" {
		t.Fatalf("ada's posts page by page: %s", got)
	}
	if all, next := list(&blogv1.ListPostsRequest{}); strings.Join(all, ",") != "ada 5,ada 4,ada 3,ada 2,bob 1,ada 1,bob 0,ada 0" || next != "" {
		t.Fatalf("every post: %v (next %q), want newest first", all, next)
	}
	if bobs, _ := list(&blogv1.ListPostsRequest{AuthorId: bobID}); strings.Join(bobs, ",") != "bob 1,bob 0" {
		t.Fatalf("bob's posts: %v", bobs)
	}
	if none, next := list(&blogv1.ListPostsRequest{AuthorId: uuid.Must(uuid.NewV7()).String()}); len(none) != 0 || next != "" {
		t.Fatalf("the posts of someone who wrote none: %v %q", none, next)
	}
	_, adaToken := list(&blogv1.ListPostsRequest{PageSize: 1, AuthorId: adaID})
	_, err := anonymous.ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{PageSize: 1, PageToken: adaToken, AuthorId: bobID}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || fieldViolation(err) != "page_token" {
		t.Fatalf("a token used with another author: %v, want invalid_argument on page_token", err)
	}
}

func TestEventsReachTheAuditService(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	ctx := context.Background()
	token, author := e.member(t)
	p := e.create(t, token, "Relayed", "")
	title := "Relayed again"
	if _, err := e.as(t, token).UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{Post: &blogv1.Post{PostId: p.GetPostId(), Title: title}})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.as(t, token).DeletePost(ctx, connect.NewRequest(&blogv1.DeletePostRequest{PostId: p.GetPostId()})); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the three events reach audit", func() bool {
		var acts []string
		for _, ev := range e.auth.Events() {
			if ev.GetResource().GetId() == p.GetPostId() && ev.GetActor().GetSubject() == author {
				acts = append(acts, ev.GetAction())
			}
		}
		return strings.Join(acts, " ") == "blog.post.create blog.post.update blog.post.delete"
	})
	testkit.Eventually(t, 10*time.Second, "the outbox empties", func() bool { return len(e.outbox(t)) == 0 })
}
