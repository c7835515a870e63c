// Package breaking runs `buf breaking` for the contracts in a git checkout against an earlier
// commit of the same checkout.
//
// Buf cannot read the earlier commit straight from git here: its workspace needs the
// third-party protos, which are git-ignored and exported from the module cache. So the earlier
// commit's proto/ and buf.yaml are extracted into a temporary folder, the same pinned deps are
// exported beside them, and that folder is the --against input.
package breaking

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/basaltplatform/basalt/devtools/internal/protodeps"
)

// Options configure Check.
type Options struct {
	// Root is the git checkout whose contracts are checked.
	Root string
	// Against is the git revision to compare with; empty means the merge base with
	// origin/main when HEAD is on another line of history, and HEAD~1 otherwise.
	Against string
	// Buf runs buf with the given arguments (go tool buf, from the workspace).
	Buf func(ctx context.Context, args ...string) ([]byte, error)
	// Out receives progress messages.
	Out io.Writer
}

// ErrBreaking is returned when buf reports breaking changes.
var ErrBreaking = errors.New("breaking: the contracts changed in a breaking way")

// Check compares the checkout's contracts with the base revision. It returns nil when there is
// no base to compare with (the first commit, or a base without contracts).
func Check(ctx context.Context, o Options) error {
	base, err := baseRevision(ctx, o)
	if err != nil {
		return err
	}
	if base == "" {
		fmt.Fprintln(o.Out, "breaking: no earlier commit to compare with; nothing to check")
		return nil
	}
	if !hasPath(ctx, o.Root, base, "proto") || !hasPath(ctx, o.Root, base, "buf.yaml") {
		fmt.Fprintf(o.Out, "breaking: %s has no contracts; nothing to check\n", short(base))
		return nil
	}
	dir, err := os.MkdirTemp("", "basalt-breaking-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := extract(ctx, o.Root, base, dir, "proto", "buf.yaml"); err != nil {
		return err
	}
	// The base revision's buf.yaml names the folder its deps go in, which an older revision
	// named differently.
	bufYAML, err := os.ReadFile(filepath.Join(dir, "buf.yaml"))
	if err != nil {
		return err
	}
	for _, module := range missingModules(bufYAML, dir) {
		if err := protodeps.Export(ctx, protodeps.Pinned, filepath.Join(dir, filepath.FromSlash(module))); err != nil {
			return err
		}
	}
	if !protodeps.Fresh(protodeps.Pinned, filepath.Join(o.Root, protodeps.Dir)) {
		if err := protodeps.Export(ctx, protodeps.Pinned, filepath.Join(o.Root, protodeps.Dir)); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "breaking: comparing the contracts with %s\n", short(base))
	out, err := o.Buf(ctx, "breaking", o.Root, "--against", dir)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && len(out) > 0 {
			fmt.Fprint(o.Out, string(out))
			return ErrBreaking
		}
		return fmt.Errorf("breaking: buf: %w: %s", err, out)
	}
	fmt.Fprintln(o.Out, "breaking: no breaking changes")
	return nil
}

// modulePath matches a module's folder in a buf.yaml: `  - path: proto`, quoted or not.
var modulePath = regexp.MustCompile(`(?m)^\s*-\s*path:\s*(.+?)\s*$`)

// missingModules returns the module folders bufYAML names that dir lacks: the git-ignored
// export of the third-party protos.
func missingModules(bufYAML []byte, dir string) []string {
	var out []string
	for _, m := range modulePath.FindAllSubmatch(bufYAML, -1) {
		path := string(m[1])
		if unquoted, err := strconv.Unquote(path); err == nil {
			path = unquoted
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(path))); errors.Is(err, fs.ErrNotExist) {
			out = append(out, path)
		}
	}
	return out
}

func baseRevision(ctx context.Context, o Options) (string, error) {
	if o.Against != "" {
		rev, err := git(ctx, o.Root, "rev-parse", "--verify", o.Against+"^{commit}")
		if err != nil {
			return "", fmt.Errorf("breaking: %s is not a commit: %w", o.Against, err)
		}
		return rev, nil
	}
	head, err := git(ctx, o.Root, "rev-parse", "HEAD")
	if err != nil {
		return "", fmt.Errorf("breaking: %w", err)
	}
	if mb, err := git(ctx, o.Root, "merge-base", "HEAD", "origin/main"); err == nil && mb != head {
		return mb, nil
	}
	prev, err := git(ctx, o.Root, "rev-parse", "--verify", "-q", "HEAD~1")
	if err != nil {
		return "", nil // HEAD is the first commit
	}
	return prev, nil
}

func hasPath(ctx context.Context, root, rev, path string) bool {
	_, err := git(ctx, root, "cat-file", "-e", rev+":"+path)
	return err == nil
}

// extract writes paths as they are at rev into dir.
func extract(ctx context.Context, root, rev, dir string, paths ...string) error {
	cmd := exec.CommandContext(ctx, "git", append([]string{"archive", "--format=tar", rev, "--"}, paths...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("breaking: git archive: %w: %s", err, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("breaking: unexpected path %q in archive", h.Name)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return err
		}
	}
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
