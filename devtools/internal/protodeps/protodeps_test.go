package protodeps_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/devtools/internal/protodeps"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// TestBufInAFreshCloneNamesTheTask runs buf on a copy of the contracts without the export, as
// in a fresh clone: it must fail with one line that names the task to run.
func TestBufInAFreshCloneNamesTheTask(t *testing.T) {
	t.Parallel()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	clone := t.TempDir()
	if err := os.CopyFS(filepath.Join(clone, "proto"), os.DirFS(filepath.Join(root, "proto"))); err != nil {
		t.Fatal(err)
	}
	bufYAML, err := os.ReadFile(filepath.Join(root, "buf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(bufYAML), protodeps.Dir) {
		t.Fatalf("buf.yaml does not name %s", protodeps.Dir)
	}
	if err := os.WriteFile(filepath.Join(clone, "buf.yaml"), bufYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"lint"}, {"build"}} {
		cmd := exec.Command("go", append(append([]string{"tool", "buf"}, args...), clone)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "go tool task proto-deps") {
			t.Errorf("buf %s without the export: %v\n%s\nwant a failure in one line naming go tool task proto-deps", args[0], err, out)
		}
	}
}
