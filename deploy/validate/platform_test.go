package validate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is one of the platform's processes: a service or the gateway.
type binary struct {
	// Name is the process's name, which is also its image's, its Compose service's and its
	// Deployment's.
	Name string
	// Pkg is its main package, relative to the repository root ("./services/auth/cmd/auth").
	Pkg string
	// Service is true for the services (which migrate a schema) and false for the gateway.
	Service bool
}

// repoRoot is the folder holding go.work, found from the test's working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test's folder")
		}
		dir = parent
	}
}

// discover lists the platform's binaries the way the launcher does: every services/*/cmd/*
// folder is a service, and gateway/cmd/gateway is the gateway.
func discover(root string) ([]binary, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "services", "*", "cmd", "*"))
	if err != nil {
		return nil, err
	}
	var bins []binary
	for _, d := range dirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			continue
		}
		rel, err := filepath.Rel(root, d)
		if err != nil {
			return nil, err
		}
		bins = append(bins, binary{Name: filepath.Base(d), Pkg: "./" + filepath.ToSlash(rel), Service: true})
	}
	if len(bins) == 0 {
		return nil, errors.New("no services/*/cmd/* folder")
	}
	bins = append(bins, binary{Name: "gateway", Pkg: "./gateway/cmd/gateway"})
	sort.Slice(bins, func(i, j int) bool { return bins[i].Name < bins[j].Name })
	return bins, nil
}

func discoverT(t testing.TB) []binary {
	t.Helper()
	bins, err := discover(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

// goWorkVersion is the Go version go.work names, which the images' build stage must use.
func goWorkVersion(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.work names no go version")
	}
	return string(m[1])
}

// built is every binary compiled once for the test process; the compose and Kubernetes tests
// ask the binaries themselves which settings they bind and whether a configuration is valid,
// so the manifests cannot drift from the code.
type built struct {
	dir  string
	bins []binary
	// bound maps a binary's name to the environment variables it binds.
	bound map[string]map[string]bool
}

var (
	buildOnce   sync.Once
	buildResult *built
	buildErr    error
	binDir      string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "basalt-deploy-validate-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// platform builds every binary (once per test process) and reads the settings each binds.
func platform(t testing.TB) *built {
	t.Helper()
	buildOnce.Do(func() { buildResult, buildErr = build(repoRoot(t), binDir) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildResult
}

func build(root, dir string) (*built, error) {
	bins, err := discover(root)
	if err != nil {
		return nil, err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, b := range bins {
		args = append(args, b.Pkg)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	// The binaries build in the workspace even when the tests run with GOWORK=off.
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	res := &built{dir: dir, bins: bins, bound: map[string]map[string]bool{}}
	for _, b := range bins {
		names, err := boundEnv(filepath.Join(dir, b.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name, err)
		}
		res.bound[b.Name] = names
	}
	return res, nil
}

// envInHelp finds the environment names a binary's -h output lists, as "(env NAME)".
var envInHelp = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)

// boundEnv runs path -h in an empty environment and collects the environment variables its
// usage lists: that list is what the configuration loader binds, so it is never stale.
func boundEnv(path string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-h")
	cmd.Env = []string{}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("-h: want the usage and exit status 0, got %v: %s", err, out.String())
	}
	names := map[string]bool{}
	for _, m := range envInHelp.FindAllStringSubmatch(out.String(), -1) {
		names[m[1]] = true
	}
	// Every binary binds the discovery and log settings; a listing without them means the
	// usage format changed under this test.
	for _, must := range []string{"CONSUL_HTTP_ADDR", "BASALT_LOG_LEVEL", "BASALT_LISTEN_ADDR"} {
		if !names[must] {
			return nil, fmt.Errorf("-h lists no %s; its output was:\n%s", must, out.String())
		}
	}
	return names, nil
}

// unbound returns the names in env that bin does not bind, sorted.
func (p *built) unbound(bin string, env []string) []string {
	var out []string
	for _, name := range env {
		if !p.bound[bin][name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// configError starts the named binary with exactly env and reports the configuration error it
// exits with, or "" when it got past its configuration. The binaries check every setting
// before they touch the network and exit with status 2 on a bad one; with a valid
// configuration they go on to reach PostgreSQL or Consul, which the test does not provide, so
// they either fail later with another status or keep trying until the deadline.
func (p *built) configError(t testing.TB, bin string, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.dir, bin))
	// A folder of its own, so that nothing the binary might write lands in the repository.
	cmd.Dir = t.TempDir()
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return ""
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 {
		return out.String()
	}
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s: %v", bin, err)
	}
	return ""
}

// imagePaths are the folders an image provides that a configuration may name; a test that
// runs a binary outside its image points them at stand-ins.
type imagePaths map[string]string

// consoleStandIn makes a folder that passes for the built console (/srv/console in the
// gateway's image), and for the built reference page (/srv/docs).
func consoleStandIn(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html>"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rewrite replaces a leading image path in each value by its stand-in.
func (ip imagePaths) rewrite(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		for from, to := range ip {
			if v == from || strings.HasPrefix(v, from+"/") {
				v = to + strings.TrimPrefix(v, from)
			}
		}
		out[k] = v
	}
	return out
}

func TestDiscoverFindsEveryService(t *testing.T) {
	t.Parallel()
	bins := discoverT(t)
	var names []string
	for _, b := range bins {
		names = append(names, b.Name)
	}
	// The platform's five services and the gateway at the time of writing; discover must find
	// at least these, or every other test here would check less than it claims.
	for _, want := range []string{"audit", "auth", "authz", "blog", "gateway", "identity"} {
		if !slices.Contains(names, want) {
			t.Errorf("discover found %v, without %s", names, want)
		}
	}
}

func TestBinariesListTheirSettings(t *testing.T) {
	t.Parallel()
	p := platform(t)
	tests := []struct {
		bin  string
		want []string
	}{
		{bin: "audit", want: []string{"DATABASE_URL", "BASALT_INTERNAL_SECRET", "BASALT_AUDIT_CHECKPOINT_KEY"}},
		{bin: "auth", want: []string{"DATABASE_URL", "BASALT_AUTH_KEY_SECRET"}},
		{bin: "identity", want: []string{"BASALT_ADMIN_EMAIL", "BASALT_ADMIN_PASSWORD"}},
		{bin: "gateway", want: []string{"BASALT_GATEWAY_CONFIG", "BASALT_GATEWAY_ADMIN_LISTEN", "CONSUL_HTTP_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.bin, func(t *testing.T) {
			t.Parallel()
			if missing := p.unbound(tt.bin, tt.want); len(missing) > 0 {
				t.Fatalf("%s -h does not list %v", tt.bin, missing)
			}
			if p.bound[tt.bin]["NOT_A_SETTING"] {
				t.Fatal("the listing holds a name no binary binds")
			}
		})
	}
	if p.bound["gateway"]["DATABASE_URL"] {
		t.Error("the gateway lists DATABASE_URL, but it has no database")
	}
}

func TestConfigErrorIsReported(t *testing.T) {
	t.Parallel()
	p := platform(t)
	// An empty environment lacks the internal secret every service needs: the check that the
	// manifests' settings are accepted must see that as a configuration error.
	got := p.configError(t, "blog", map[string]string{})
	if !strings.Contains(got, "BASALT_INTERNAL_SECRET") {
		t.Fatalf("blog in an empty environment: want a configuration error naming BASALT_INTERNAL_SECRET, got %q", got)
	}
}

// wantProblem fails t unless problems is empty when want is "", or one of them mentions want:
// every check here returns its findings so that a test can feed it a mistake and see it caught.
func wantProblem(t testing.TB, problems []string, want string) {
	t.Helper()
	joined := strings.Join(problems, "\n")
	switch {
	case want == "" && len(problems) > 0:
		t.Fatalf("want no problem, got:\n%s", joined)
	case want != "" && !strings.Contains(joined, want):
		t.Fatalf("want a problem mentioning %q, got:\n%s", want, joined)
	}
}
