package breaking_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/devtools/internal/breaking"
	"github.com/basaltplatform/basalt/devtools/internal/protodeps"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// repo is a temporary git checkout holding a copy of the real contracts.
type repo struct {
	t    *testing.T
	dir  string
	root string // the real repository, where `go tool buf` resolves
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	r := &repo{t: t, dir: t.TempDir(), root: root}
	r.git("init", "-q", "-b", "main")
	copyTree(t, filepath.Join(root, "proto"), filepath.Join(r.dir, "proto"))
	b, err := os.ReadFile(filepath.Join(root, "buf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r.write("buf.yaml", string(b))
	return r
}

func (r *repo) git(args ...string) {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = r.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func (r *repo) write(path, content string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, path), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) edit(path, old, replacement string) {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, path))
	if err != nil {
		r.t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		r.t.Fatalf("%s does not contain %q", path, old)
	}
	r.write(path, strings.Replace(string(b), old, replacement, 1))
}

func (r *repo) commit(msg string) {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
}

func (r *repo) check() (string, error) {
	r.t.Helper()
	var out bytes.Buffer
	err := breaking.Check(context.Background(), breaking.Options{
		Root: r.dir,
		Out:  &out,
		Buf: func(ctx context.Context, args ...string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "buf"}, args...)...)
			cmd.Dir = r.root
			return cmd.CombinedOutput()
		},
	})
	return out.String(), err
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

const auditProto = "proto/basalt/audit/v1/audit_service.proto"

func TestRemovingAFieldFailsTheCheck(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("base")
	r.edit(auditProto, "  string trace_id = 10;\n", "")
	r.commit("remove trace_id")
	out, err := r.check()
	if !errors.Is(err, breaking.ErrBreaking) {
		t.Fatalf("removing a field passed the check: %v\n%s", err, out)
	}
	if !strings.Contains(out, "trace_id") {
		t.Fatalf("the report does not name the removed field:\n%s", out)
	}
}

func TestCompatibleChangesPass(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("base")
	r.edit(auditProto, "  map<string, string> metadata = 11;\n", "  map<string, string> metadata = 11;\n  // note is a new, optional field.\n  string note = 14;\n")
	r.commit("add a field")
	if out, err := r.check(); err != nil {
		t.Fatalf("adding a field failed the check: %v\n%s", err, out)
	}
}

// TestABaseThatKeptItsDepsElsewhereIsCompared compares with a revision whose buf.yaml put the
// third-party protos in .build/proto-deps, as the contracts did before the folder was named
// after its task.
func TestABaseThatKeptItsDepsElsewhereIsCompared(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	current, err := os.ReadFile(filepath.Join(r.dir, "buf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	old := strings.ReplaceAll(string(current), strconv.Quote(protodeps.Dir), ".build/proto-deps")
	if old == string(current) {
		t.Fatalf("buf.yaml does not name %s", protodeps.Dir)
	}
	r.write("buf.yaml", old)
	r.commit("base, with the deps in .build/proto-deps")
	r.write("buf.yaml", string(current))
	r.edit(auditProto, "  string trace_id = 10;\n", "")
	r.commit("name the deps folder after its task; remove trace_id")
	out, err := r.check()
	if !errors.Is(err, breaking.ErrBreaking) || !strings.Contains(out, "trace_id") {
		t.Fatalf("against a base with .build/proto-deps: %v\n%s\nwant the removed trace_id reported", err, out)
	}
}

func TestTheFirstCommitHasNothingToCompare(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("first")
	out, err := r.check()
	if err != nil || !strings.Contains(out, "no earlier commit") {
		t.Fatalf("first commit: %v\n%s", err, out)
	}
}
