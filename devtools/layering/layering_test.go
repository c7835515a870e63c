package layering_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/kernel/testkit"
)

// project is the import path every package of the platform starts with.
const project = "github.com/basaltplatform/basalt/"

// gatewayModule is the gateway's module, whose packages no service or kernel package links.
const gatewayModule = project + "gateway"

// rawSocketCalls are the functions of syscall and golang.org/x/sys/unix that read or write a
// file descriptor, or make a system call of the caller's choosing. A package may import
// syscall for its constants and types (signals, errno values, SysProcAttr); what it may not do,
// unless it is the gateway's, is reach into a socket past the runtime's poller.
var rawSocketCalls = []string{
	"Read", "Write", "Readv", "Writev", "Pread", "Pwrite",
	"Recvfrom", "Recvmsg", "Recvmmsg", "Sendto", "Sendmsg", "Sendmmsg",
	"Syscall", "Syscall6", "RawSyscall", "RawSyscall6",
}

// rawSocketTypes are the types that hand out a socket's file descriptor.
var rawSocketTypes = []string{"RawConn", "Conn"}

// pkg is what go list says of a package.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Deps       []string
	Standard   bool
}

// list returns the packages of patterns and all they depend on, keyed by import path, and the
// import paths patterns match.
func list(t *testing.T, root string, patterns ...string) (all map[string]*pkg, matched []string) {
	t.Helper()
	matchedOut, err := goList(root, append([]string{"list"}, patterns...)...)
	if err != nil {
		t.Fatal(err)
	}
	matched = strings.Fields(matchedOut)
	out, err := goList(root, append([]string{"list", "-deps", "-json=ImportPath,Dir,GoFiles,Deps,Standard"}, patterns...)...)
	if err != nil {
		t.Fatal(err)
	}
	all = map[string]*pkg{}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		all[p.ImportPath] = p
	}
	return all, matched
}

func goList(root string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// rawSocketUses returns where the files of p reach into a socket past the runtime's poller:
// each call of a rawSocketCalls function or a SyscallConn method, and each use of a
// rawSocketTypes type.
func rawSocketUses(t *testing.T, p *pkg) []string {
	t.Helper()
	var uses []string
	fset := token.NewFileSet()
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		// sys holds the names the file gives syscall and golang.org/x/sys/unix.
		sys := map[string]bool{}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path != "syscall" && path != "golang.org/x/sys/unix" {
				continue
			}
			local := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				local = imp.Name.Name
			}
			sys[local] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			id, _ := sel.X.(*ast.Ident)
			fromSys := id != nil && sys[id.Name]
			if sel.Sel.Name == "SyscallConn" ||
				(fromSys && (slices.Contains(rawSocketCalls, sel.Sel.Name) || slices.Contains(rawSocketTypes, sel.Sel.Name))) {
				uses = append(uses, fmt.Sprintf("%s: %s.%s", fset.Position(sel.Pos()), types(sel.X), sel.Sel.Name))
			}
			return true
		})
	}
	return uses
}

// types names the expression a selector is on, for a message.
func types(x ast.Expr) string {
	if id, ok := x.(*ast.Ident); ok {
		return id.Name
	}
	return "…"
}

// violations returns what the binary or package target links that it must not: packages of
// the gateway, and the project's packages that reach into sockets.
func violations(t *testing.T, all map[string]*pkg, target string) []string {
	t.Helper()
	p, ok := all[target]
	if !ok {
		t.Fatalf("go list did not describe %s", target)
	}
	var found []string
	for _, dep := range append([]string{target}, p.Deps...) {
		if dep == gatewayModule || strings.HasPrefix(dep, gatewayModule+"/") {
			found = append(found, "links "+dep)
		}
		d := all[dep]
		if d == nil || d.Standard || !strings.HasPrefix(dep, project) {
			continue
		}
		for _, use := range rawSocketUses(t, d) {
			found = append(found, dep+" reaches into a socket at "+use)
		}
	}
	return found
}

// TestServicesLinkNoRawSocketCode checks every service's binary, the kernel's own binaries and
// every kernel package: none links the gateway's packages (its HTTP/1.1 client and its socket
// code among them), and no package of the project they link reads or writes a socket by its
// file descriptor. golang.org/x/sys/unix itself is not refused: the services link it through
// gRPC, SQLite, the Prometheus process collector and OpenTelemetry.
//
// The gateway's binary goes through the same check and must fail it, so that a check that
// could no longer see raw socket code (a renamed call, say) fails too.
func TestServicesLinkNoRawSocketCode(t *testing.T) {
	t.Parallel()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Each service is a module of its own, which a pattern from the root does not reach into;
	// its packages are checked as its binaries link them.
	mains, err := filepath.Glob(filepath.Join(root, "services", "*", "cmd", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mains) < 5 {
		t.Fatalf("found %d service binaries under services/*/cmd, want every service's (5 or more)", len(mains))
	}
	patterns := []string{"./kernel/...", "./gateway/cmd/gateway"}
	for _, m := range mains {
		rel, err := filepath.Rel(root, m)
		if err != nil {
			t.Fatal(err)
		}
		patterns = append(patterns, "./"+filepath.ToSlash(rel))
	}
	all, targets := list(t, root, patterns...)
	for _, target := range targets {
		rel := strings.TrimPrefix(target, project)
		t.Run(rel, func(t *testing.T) {
			found := violations(t, all, target)
			if strings.HasPrefix(rel, "gateway/") {
				if !slices.ContainsFunc(found, func(v string) bool { return strings.Contains(v, "gateway/internal/sockio reaches into a socket") }) {
					t.Errorf("the check finds no raw socket code in the gateway's binary, so it cannot find any: %v", found)
				}
				return
			}
			for _, v := range found {
				t.Error(v)
			}
		})
	}
}
