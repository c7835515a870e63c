package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// blogJourney is a post's life through the gateway over gRPC, as a business service's users
// see it: members write and change their own posts, anyone reads them, other members cannot
// touch them, the administrator can, and the audit log tells who did what.
func blogJourney(t *testing.T, p *platform) {
	ctx := context.Background()
	admin := p.adminToken(t) // a fresh token: the platform's first may be near its expiry by now
	gw := p.url("gateway")
	opts := []connect.ClientOption{connect.WithGRPC(), asClient(nextClientIP())}
	with := func(token string) []connect.ClientOption {
		if token == "" {
			return opts
		}
		return append(slices.Clone(opts), connect.WithInterceptors(authn.Bearer(token)))
	}
	auth := authv1connect.NewAuthServiceClient(testkit.H2CClient(t), gw, opts...)
	blog := func(token string) blogv1connect.BlogServiceClient {
		return blogv1connect.NewBlogServiceClient(testkit.H2CClient(t), gw, with(token)...)
	}

	// Two members sign up; the author logs in again, as a returning user would.
	reg, err := auth.Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "blogger@example.com", Password: "a blogger's password", DisplayName: "Blogger"}))
	if err != nil {
		t.Fatal(err)
	}
	authorID := reg.Msg.GetUser().GetId()
	login, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: "blogger@example.com", Password: "a blogger's password"}))
	if err != nil {
		t.Fatal(err)
	}
	author := login.Msg.GetTokens().GetAccessToken()
	rivalReg, err := auth.Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "rival@example.com", Password: "a rival's password", DisplayName: "Rival"}))
	if err != nil {
		t.Fatal(err)
	}
	rival := rivalReg.Msg.GetTokens().GetAccessToken()

	// The member role lets a new user write at once.
	created, err := blog(author).CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "Hello, Basalt", Body: "The first post."}))
	if err != nil {
		t.Fatalf("CreatePost as a new member: %v", err)
	}
	post := created.Msg.GetPost()
	if post.GetAuthorId() != authorID {
		t.Fatalf("the post's author is %q, want %q", post.GetAuthorId(), authorID)
	}
	if _, err := blog("").CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "Anonymous"})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("CreatePost without a token: %v, want unauthenticated", err)
	}

	// Anyone reads it, without a token.
	listed, err := blog("").ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{AuthorId: authorID}))
	if err != nil || len(listed.Msg.GetPosts()) != 1 || listed.Msg.GetPosts()[0].GetPostId() != post.GetPostId() {
		t.Fatalf("ListPosts without a token = %v, %v; want the new post", listed, err)
	}
	status, body := rest(t, http.MethodGet, gw+"/v1/posts/"+post.GetPostId(), "", map[string]string{"X-Forwarded-For": nextClientIP()})
	if status != http.StatusOK || !strings.Contains(body, `"title":"Hello, Basalt"`) {
		t.Fatalf("GET /v1/posts/{id} without a token = %d %s", status, body)
	}

	// The author changes it; another member may neither change nor delete it.
	upd, err := blog(author).UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{
		Post: &blogv1.Post{PostId: post.GetPostId(), Title: "Hello again, Basalt"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}},
	}))
	if err != nil || upd.Msg.GetPost().GetTitle() != "Hello again, Basalt" || upd.Msg.GetPost().GetBody() != "The first post." {
		t.Fatalf("UpdatePost by the author = %v, %v", upd, err)
	}
	if _, err := blog(rival).UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{
		Post: &blogv1.Post{PostId: post.GetPostId(), Title: "Defaced"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}},
	})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("UpdatePost by another member: %v, want permission_denied", err)
	}
	if _, err := blog(rival).DeletePost(ctx, connect.NewRequest(&blogv1.DeletePostRequest{PostId: post.GetPostId()})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("DeletePost by another member: %v, want permission_denied", err)
	}
	got, err := blog("").GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: post.GetPostId()}))
	if err != nil || got.Msg.GetPost().GetTitle() != "Hello again, Basalt" {
		t.Fatalf("the post after the refused changes = %v, %v", got, err)
	}
	// The administrator's "*" holds blog.posts.manage: moderation works on anyone's post.
	if _, err := blog(admin).UpdatePost(ctx, connect.NewRequest(&blogv1.UpdatePostRequest{
		Post: &blogv1.Post{PostId: post.GetPostId(), Body: "The first post, moderated."}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"body"}},
	})); err != nil {
		t.Fatalf("UpdatePost by the administrator: %v", err)
	}

	// The audit log has the post's story, and its chain verifies.
	audit := auditv1connect.NewAuditServiceClient(testkit.H2CClient(t), gw, with(admin)...)
	events := func() []*auditv1.Event {
		res, err := audit.ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{Filter: &auditv1.EventFilter{ResourceType: "post", ResourceId: post.GetPostId()}}))
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		return res.Msg.GetEvents()
	}
	story := func() string {
		var acts []string
		for _, ev := range slices.Backward(events()) { // newest first: reversed, oldest first
			acts = append(acts, ev.GetAction()+" by "+ev.GetActor().GetSubject())
		}
		return strings.Join(acts, ", ")
	}
	me, err := identityv1connect.NewIdentityServiceClient(testkit.H2CClient(t), gw, with(admin)...).GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	adminID := me.Msg.GetUser().GetId()
	want := "blog.post.create by " + authorID + ", blog.post.update by " + authorID + ", blog.post.update by " + adminID
	testkit.Eventually(t, 20*time.Second, "the post's events reach the audit log", func() bool { return story() == want })
	for _, ev := range events() {
		if ev.GetService() != "blog" || ev.GetOutcome() != auditv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("event %v: want a successful event of the blog service", ev)
		}
	}
	verify, err := audit.VerifyLog(ctx, connect.NewRequest(&auditv1.VerifyLogRequest{}))
	if err != nil || !verify.Msg.GetOk() {
		t.Fatalf("VerifyLog = %v, %v", verify, err)
	}

	// The author deletes it: it is gone for everyone, and the deletion is logged too.
	if _, err := blog(author).DeletePost(ctx, connect.NewRequest(&blogv1.DeletePostRequest{PostId: post.GetPostId()})); err != nil {
		t.Fatalf("DeletePost by the author: %v", err)
	}
	if _, err := blog("").GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: post.GetPostId()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetPost after the delete: %v, want not_found", err)
	}
	testkit.Eventually(t, 20*time.Second, "the deletion reaches the audit log", func() bool {
		return story() == want+", blog.post.delete by "+authorID
	})

	blogOverREST(t, gw, author, authorID)
}

// blogOverREST is a post's life over the REST routes, as curl or a browser's fetch sends them:
// every call is also checked against the OpenAPI document (rest).
func blogOverREST(t *testing.T, gw, author, authorID string) {
	ip := map[string]string{"X-Forwarded-For": nextClientIP()}
	as := map[string]string{"X-Forwarded-For": ip["X-Forwarded-For"], "Authorization": "Bearer " + author}
	if status, body := rest(t, http.MethodPost, gw+"/v1/posts", `{"title":"Over REST"}`, ip); status != http.StatusUnauthorized {
		t.Fatalf("POST /v1/posts without a token = %d %s, want 401", status, body)
	}
	status, body := rest(t, http.MethodPost, gw+"/v1/posts", `{"title":"Over REST","body":"Written with curl."}`, as)
	var created struct {
		Post struct {
			PostID string `json:"postId"`
		} `json:"post"`
	}
	if err := json.Unmarshal([]byte(body), &created); status != http.StatusOK || err != nil || created.Post.PostID == "" {
		t.Fatalf("POST /v1/posts = %d %s (%v)", status, body, err)
	}
	id := created.Post.PostID
	if status, body := rest(t, http.MethodGet, gw+"/v1/posts?authorId="+authorID+"&pageSize=5", "", ip); status != http.StatusOK || !strings.Contains(body, id) {
		t.Fatalf("GET /v1/posts?authorId= = %d %s, want the new post", status, body)
	}
	if status, body := rest(t, http.MethodPatch, gw+"/v1/posts/"+id+"?updateMask=title", `{"title":"Over REST, edited"}`, as); status != http.StatusOK || !strings.Contains(body, `"title":"Over REST, edited"`) || !strings.Contains(body, "Written with curl.") {
		t.Fatalf("PATCH /v1/posts/{id} = %d %s, want the title changed and the body kept", status, body)
	}
	if status, body := rest(t, http.MethodDelete, gw+"/v1/posts/"+id, "", as); status != http.StatusOK {
		t.Fatalf("DELETE /v1/posts/{id} = %d %s", status, body)
	}
	if status, body := rest(t, http.MethodGet, gw+"/v1/posts/"+id, "", ip); status != http.StatusNotFound {
		t.Fatalf("GET /v1/posts/{id} after the delete = %d %s, want 404", status, body)
	}
}
