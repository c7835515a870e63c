package docs_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/basaltplatform/basalt/devtools/docs"
	"github.com/basaltplatform/basalt/kernel/testkit"

	// The contracts are linked in so that their descriptors are registered; a contract in proto/
	// without its package here fails TestServicesCatalogCoversTheContracts.
	_ "github.com/basaltplatform/basalt/gen/go/basalt/api/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
)

// catalog is the document that must name every service and method of the contracts.
const catalog = "docs/architecture/services.md"

// realRepo returns the repository this test runs in, with the files git tracks or would track.
func realRepo(t *testing.T) *docs.Repo {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for f := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
		// A file deleted in the work tree but not yet in the index is not there to link to.
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			files = append(files, f)
		}
	}
	repo := docs.NewRepo(root, files)
	// A path that is not there may be a file or a folder; patterns like "/dist/" match only the
	// latter, so both forms are asked.
	repo.Ignored = func(rel string) bool {
		check := exec.Command("git", "check-ignore", "--no-index", rel, rel+"/")
		check.Dir = root
		return check.Run() == nil
	}
	return repo
}

func TestDocumentsLinkAndNameOnlyWhatExists(t *testing.T) {
	t.Parallel()
	repo := realRepo(t)
	documents := repo.Documents()
	for _, want := range []string{"README.md", "docs/index.md", catalog} {
		if !slices.Contains(documents, want) {
			t.Fatalf("documents %v leave out %s: the walk is broken", documents, want)
		}
	}
	for _, d := range documents {
		problems, err := repo.CheckDocument(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Error(p)
		}
	}
}

func TestIndexListsEveryDocument(t *testing.T) {
	t.Parallel()
	repo := realRepo(t)
	b, err := os.ReadFile(filepath.Join(repo.Root, "docs", "index.md"))
	if err != nil {
		t.Fatal(err)
	}
	index := string(b)
	for _, d := range repo.Documents() {
		rel, ok := strings.CutPrefix(d, "docs/")
		if !ok || rel == "index.md" {
			continue
		}
		if !strings.Contains(index, "("+rel+")") && !strings.Contains(index, "("+rel+"#") {
			t.Errorf("docs/index.md does not link %s", rel)
		}
	}
}

func TestServicesCatalogCoversTheContracts(t *testing.T) {
	t.Parallel()
	repo := realRepo(t)
	var services []docs.Service
	protoDir := filepath.Join(repo.Root, "proto")
	err := filepath.WalkDir(protoDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".proto") {
			return err
		}
		rel, err := filepath.Rel(protoDir, path)
		if err != nil {
			return err
		}
		fd, err := protoregistry.GlobalFiles.FindFileByPath(filepath.ToSlash(rel))
		if err != nil {
			t.Errorf("proto/%s is not linked into this test: import its generated package in devtools/docs/docs_test.go", filepath.ToSlash(rel))
			return nil
		}
		services = append(services, servicesOf(fd)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(services) < 5 {
		t.Fatalf("found only %v in proto/: the walk is broken", services)
	}
	b, err := os.ReadFile(filepath.Join(repo.Root, filepath.FromSlash(catalog)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range docs.CheckCatalog(catalog, string(b), services) {
		t.Error(p)
	}
}

func servicesOf(fd protoreflect.FileDescriptor) []docs.Service {
	var out []docs.Service
	for i := range fd.Services().Len() {
		sd := fd.Services().Get(i)
		svc := docs.Service{FullName: string(sd.FullName())}
		for j := range sd.Methods().Len() {
			svc.Methods = append(svc.Methods, string(sd.Methods().Get(j).Name()))
		}
		out = append(out, svc)
	}
	return out
}

// fakeRepo writes files into a temporary folder and returns it as a Repo.
func fakeRepo(t *testing.T, files map[string]string) *docs.Repo {
	t.Helper()
	root := t.TempDir()
	var names []string
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return docs.NewRepo(root, names)
}

func TestCheckDocumentReportsWhatDoesNotExist(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"docs/other.md":                "# Other\n\n## Rate limits\n\n## Rate limits\n",
		"docs/adr/0001-x.md":           "# ADR\n",
		"kernel/server/server.go":      "package server\n",
		"kernel/server/server_test.go": "package server\n\nfunc TestShutdown(t *testing.T) {}\n\nfunc BenchmarkServe(b *testing.B) {}\n",
		"Taskfile.yml":                 "version: '3'\n",
	}
	tests := []struct {
		name    string
		doc     string
		want    []string // substrings of the expected problems, in order; none means clean
		ignored string   // a path git would ignore
	}{
		{name: "a link to an existing file", doc: "See [other](other.md)."},
		{name: "a link to a missing file", doc: "See [gone](gone.md).", want: []string{`"gone.md"`}},
		{name: "a link up and down", doc: "See [adr](adr/0001-x.md) and [self](#title)."},
		{name: "a link leaving the repository", doc: "See [up](../../x.md).", want: []string{"leaves the repository"}},
		{name: "a link to an existing heading", doc: "See [limits](other.md#rate-limits) and [again](other.md#rate-limits-1)."},
		{name: "a link to a missing heading", doc: "See [limits](other.md#rate-limit).", want: []string{"#rate-limit"}},
		{name: "a link to a missing heading here", doc: "See [x](#nowhere).", want: []string{"#nowhere"}},
		{name: "a link whose text wraps", doc: "See [the other\ndocument](missing.md).", want: []string{`"missing.md"`}},
		{name: "a web link is not followed", doc: "See [Go](https://go.dev/nowhere)."},
		{name: "an existing path", doc: "`kernel/server`, `kernel/server/server.go:12`, `./kernel/...`, `Taskfile.yml`, `kernel/server/`."},
		{name: "a missing path", doc: "Built in `kernel/servers/server.go`.", want: []string{"kernel/servers/server.go"}},
		{name: "a missing folder", doc: "Built in `kernel/cache`.", want: []string{"kernel/cache"}},
		{name: "an ignored build output", doc: "Built into `kernel/dist`.", ignored: "kernel/dist"},
		{name: "only what is ignored", doc: "Built into `kernel/dist2`.", ignored: "kernel/dist", want: []string{"kernel/dist2"}},
		{name: "an existing file name", doc: "Tested in `server_test.go`."},
		{name: "a missing file name", doc: "Tested in `client_test.go`.", want: []string{"client_test.go"}},
		{name: "spans that are not paths", doc: "`/v1/posts`, `blog.posts.create`, `kernel/<name>`, `go test ./kernel/nope/...`, `.data/up.json`, `github.com/x/y`."},
		{name: "existing tests", doc: "Shown by `TestShutdown` and `BenchmarkServe`."},
		{name: "a missing test", doc: "Shown by `TestShutdownDrains` and `FuzzServe`.", want: []string{"TestShutdownDrains", "FuzzServe"}},
		{name: "words that only start like tests", doc: "`Testing`, `Test`, `TestShutdown(t)`."},
		{name: "listings are not checked", doc: "```\nkernel/nowhere/x.go [x](gone.md)\n```\n"},
		{name: "every problem is reported", doc: "`kernel/a`\n\n[b](b.md) `kernel/c`", want: []string{"kernel/a", `"b.md"`, "kernel/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"docs/index.md": "# Title\n\n" + tt.doc + "\n"}
			for k, v := range base {
				files[k] = v
			}
			repo := fakeRepo(t, files)
			repo.Ignored = func(rel string) bool { return rel == tt.ignored }
			problems, err := repo.CheckDocument("docs/index.md")
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) != len(tt.want) {
				t.Fatalf("problems %v, want %d matching %q", problems, len(tt.want), tt.want)
			}
			for i, p := range problems {
				if !strings.Contains(p.Msg, tt.want[i]) {
					t.Errorf("problem %d is %q, want it to mention %q", i, p, tt.want[i])
				}
				if p.File != "docs/index.md" || p.Line < 3 {
					t.Errorf("problem %q is located at %s:%d", p, p.File, p.Line)
				}
			}
		})
	}
}

func TestCheckCatalogReportsMissingServicesAndMethods(t *testing.T) {
	t.Parallel()
	services := []docs.Service{
		{FullName: "basalt.blog.v1.BlogService", Methods: []string{"CreatePost", "GetPost"}},
		{FullName: "basalt.audit.v1.AuditService", Methods: []string{"Record"}},
	}
	tests := []struct {
		name string
		text string
		want []string
	}{
		{
			name: "complete, with sub-sections",
			text: "## Blog: `basalt.blog.v1.BlogService`\n\n| `CreatePost` |\n\n### Events\n\n`GetPost`\n\n" +
				"## Audit: `basalt.audit.v1.AuditService`\n\n`Record`\n",
		},
		{
			name: "a missing service",
			text: "## `basalt.blog.v1.BlogService`\n\n`CreatePost` `GetPost`\n",
			want: []string{"basalt.audit.v1.AuditService"},
		},
		{
			name: "a method only in another service's section",
			text: "## `basalt.blog.v1.BlogService`\n\n`CreatePost`\n\n## `basalt.audit.v1.AuditService`\n\n`Record` `GetPost`\n",
			want: []string{"`GetPost`"},
		},
		{
			name: "a method named without backticks",
			text: "## `basalt.blog.v1.BlogService`\n\nCreatePost `GetPost`\n\n## `basalt.audit.v1.AuditService`\n\n`Record`\n",
			want: []string{"`CreatePost`"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			problems := docs.CheckCatalog("services.md", tt.text, services)
			if len(problems) != len(tt.want) {
				t.Fatalf("problems %v, want %d matching %q", problems, len(tt.want), tt.want)
			}
			for i, p := range problems {
				if !strings.Contains(p.Msg, tt.want[i]) {
					t.Errorf("problem %d is %q, want it to mention %q", i, p, tt.want[i])
				}
			}
		})
	}
}

func TestAnchorsFollowGitHub(t *testing.T) {
	t.Parallel()
	tests := []struct {
		heading string
		want    string
	}{
		{"# Rate limits", "rate-limits"},
		{"## ADR-0032: API gateway — a Go gateway", "adr-0032-api-gateway--a-go-gateway"},
		{"### 1. Write the contract", "1-write-the-contract"},
		{"## `basalt.blog.v1.BlogService`", "basaltblogv1blogservice"},
		{"## Identity (users, passwords)", "identity-users-passwords"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := docs.Anchors(tt.heading + "\n"); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("Anchors(%q) = %q, want %q", tt.heading, got, tt.want)
			}
		})
	}
	if got := docs.Anchors("```\n# not a heading\n```\n#hashtag\n"); len(got) != 0 {
		t.Errorf("Anchors found %q outside headings", got)
	}
}
