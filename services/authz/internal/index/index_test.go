package index_test

import (
	"fmt"
	"testing"

	"github.com/basaltplatform/basalt/services/authz/internal/index"
)

func snapshot() *index.Snapshot {
	return &index.Snapshot{
		Revision: 1,
		Roles: map[string][]string{
			"admin":       {"*"},
			"blog-admin":  {"blog.*"},
			"editor":      {"blog.posts.*"},
			"member":      {"blog.posts.create"},
			"post-owner":  {"blog.posts.update", "blog.posts.delete"},
			"folder-read": {"files.docs.read"},
		},
		Subjects: map[string][]index.Binding{
			"root":   {{Role: "admin"}},
			"bea":    {{Role: "blog-admin"}},
			"ed":     {{Role: "editor"}},
			"mo":     {{Role: "member"}, {Role: "post-owner", Resource: "blog/post/123"}},
			"reader": {{Role: "folder-read", Resource: "files/team"}},
		},
	}
}

func TestCheckWildcardsAndScopes(t *testing.T) {
	t.Parallel()
	ix := index.New()
	ix.Replace(snapshot())
	tests := []struct {
		subject, permission, resource string
		want                          bool
	}{
		{"root", "blog.posts.create", "", true},
		{"root", "authz.roles.manage", "", true},
		{"root", "anything.at.all", "blog/post/1", true},
		{"bea", "blog.posts.delete", "", true},
		{"bea", "blog.comments.create", "", true},
		{"bea", "identity.users.read", "", false},
		{"bea", "blogs.posts.create", "", false}, // "blog.*" must not grant another service sharing the prefix
		{"ed", "blog.posts.update", "", true},
		{"ed", "blog.comments.update", "", false},
		{"mo", "blog.posts.create", "", true},
		{"mo", "blog.posts.update", "", false},              // the scoped binding does not apply everywhere
		{"mo", "blog.posts.update", "blog/post/123", true},  // but does on its resource
		{"mo", "blog.posts.update", "blog/post/124", false}, // and only there
		{"mo", "blog.posts.update", "blog/post/1234", false},
		{"mo", "blog.posts.create", "blog/post/999", true}, // global bindings apply on any resource
		{"reader", "files.docs.read", "files/team/plan.txt", true},
		{"reader", "files.docs.read", "files/teammates/x", false},
		{"reader", "files.docs.read", "", false},
		{"nobody", "blog.posts.create", "", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.subject, tt.permission, tt.resource), func(t *testing.T) {
			t.Parallel()
			if got := ix.Check(tt.subject, tt.permission, tt.resource); got != tt.want {
				t.Fatalf("Check = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReplaceNeverGoesBackwards(t *testing.T) {
	t.Parallel()
	ix := index.New()
	newer := snapshot()
	newer.Revision = 5
	if !ix.Replace(newer) {
		t.Fatal("the first snapshot was refused")
	}
	older := snapshot()
	older.Revision = 3
	older.Subjects = map[string][]index.Binding{}
	if ix.Replace(older) || ix.Revision() != 5 || !ix.Check("root", "x.y.z", "") {
		t.Fatal("an older snapshot replaced a newer one")
	}
}

func TestValidPermissions(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"*": true, "blog.*": true, "blog.posts.*": true, "blog.posts.create": true,
		"blog": false, "blog.posts": false, "*.posts.create": false, "blog.*.create": false,
		"Blog.posts.create": false, "blog.posts.create.extra": false, "": false, "blog..create": false,
	} {
		if got := index.ValidGrant(p); got != want {
			t.Errorf("ValidGrant(%q) = %v, want %v", p, got, want)
		}
	}
	if index.ValidCheck("blog.*") || !index.ValidCheck("blog.posts.create") {
		t.Error("checks must name a full permission without wildcards")
	}
}

func TestGrantsListsEffectivePermissions(t *testing.T) {
	t.Parallel()
	ix := index.New()
	ix.Replace(snapshot())
	got := ix.Grants("mo")
	want := []index.Grant{
		{Permission: "blog.posts.create", Role: "member"},
		{Permission: "blog.posts.delete", Resource: "blog/post/123", Role: "post-owner"},
		{Permission: "blog.posts.update", Resource: "blog/post/123", Role: "post-owner"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Grants = %v, want %v", got, want)
	}
}

func BenchmarkCheck(b *testing.B) {
	ix := index.New()
	s := snapshot()
	// A realistic subject count: 10,000 users with two bindings each.
	for i := range 10_000 {
		s.Subjects[fmt.Sprintf("user-%d", i)] = []index.Binding{{Role: "member"}, {Role: "post-owner", Resource: fmt.Sprintf("blog/post/%d", i)}}
	}
	ix.Replace(s)
	b.ReportAllocs()
	for b.Loop() {
		if !ix.Check("user-4242", "blog.posts.update", "blog/post/4242") {
			b.Fatal("denied")
		}
	}
}
