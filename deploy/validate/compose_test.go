package validate

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeDir is deploy/compose.
func composeDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "compose") }

// exampleEnv is what example.env sets, which is what a fresh .env holds.
func exampleEnv(t testing.TB) map[string]string {
	t.Helper()
	env, err := dotenv.Read(filepath.Join(composeDir(t), "example.env"))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// loadCompose parses compose.yaml as docker compose does (schema validation, interpolation,
// anchors and merges, paths made absolute) with env as the variables it interpolates.
func loadCompose(t testing.TB, env map[string]string) (*types.Project, error) {
	t.Helper()
	dir := composeDir(t)
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("basalt", true) })
}

// environment flattens a service's environment, with unset variables as empty.
func environment(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		} else {
			out[k] = ""
		}
	}
	return out
}

// infrastructure are the Compose services that are not the platform's own.
var infrastructure = []string{"consul", "otel-collector", "postgres", "prometheus"}

// unprobed are the infrastructure services without a health check, and why: nothing waits for
// them (dependencyProblems would say so).
var unprobed = map[string]string{
	"otel-collector": "a scratch image holds nothing to run a check with",
}

// dependencyProblems checks depends_on: every dependency exists, has a health check and is
// waited for until healthy, the graph has no cycle, every platform process waits for Consul,
// every service for PostgreSQL, and the gateway for auth, whose keys it needs before it is
// ready.
func dependencyProblems(p *types.Project, bins []binary) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			switch {
			case !ok:
				add("%s depends on %s, which is not a service", name, dep)
			case d.Condition != types.ServiceConditionHealthy:
				add("%s waits for %s to be %q, want %q", name, dep, d.Condition, types.ServiceConditionHealthy)
			case target.HealthCheck == nil || target.HealthCheck.Disable:
				add("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
		}
	}
	for _, b := range bins {
		s := p.Services[b.Name]
		want := []string{"consul"}
		if b.Service {
			want = append(want, "postgres")
		} else {
			want = append(want, "auth")
		}
		for _, w := range want {
			if _, ok := s.DependsOn[w]; !ok {
				add("%s does not wait for %s", b.Name, w)
			}
		}
	}
	// A cycle would leave docker compose unable to start anything: walk the graph depth first.
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		switch state[name] {
		case visiting:
			add("depends_on has a cycle: %s", strings.Join(append(path, name), " -> "))
			return
		case done:
			return
		}
		state[name] = visiting
		deps := make([]string, 0, len(p.Services[name].DependsOn))
		for dep := range p.Services[name].DependsOn {
			deps = append(deps, dep)
		}
		slices.Sort(deps)
		for _, dep := range deps {
			visit(dep, append(path, name))
		}
		state[name] = done
	}
	names := make([]string, 0, len(p.Services))
	for name := range p.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		visit(name, nil)
	}
	return problems
}

func TestCompose(t *testing.T) {
	t.Parallel()
	bins := discoverT(t)
	project, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}

	var want []string
	for _, b := range bins {
		want = append(want, b.Name)
	}
	want = append(want, infrastructure...)
	slices.Sort(want)
	if got := project.ServiceNames(); !slices.Equal(sortedCopy(got), want) {
		t.Fatalf("compose.yaml runs %v, want %v", sortedCopy(got), want)
	}

	for _, name := range infrastructure {
		s := project.Services[name]
		if tag := imageTag(s.Image); tag == "" || tag == "latest" {
			t.Errorf("%s runs %s, which is not pinned to a tag", name, s.Image)
		}
		if _, ok := unprobed[name]; !ok && s.HealthCheck == nil {
			t.Errorf("%s has no health check", name)
		}
	}

	published := map[string]string{}
	for _, s := range project.Services {
		for _, port := range s.Ports {
			key := port.HostIP + ":" + port.Published
			if other, ok := published[key]; ok {
				t.Errorf("%s and %s both publish %s", other, s.Name, key)
			}
			published[key] = s.Name
		}
	}

	for _, problem := range dependencyProblems(project, bins) {
		t.Error(problem)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := platform(t)
	project, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	console := consoleStandIn(t)
	for _, b := range p.bins {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			s, ok := project.Services[b.Name]
			if !ok {
				t.Fatalf("compose.yaml has no service %s", b.Name)
			}
			if s.Build == nil {
				t.Fatal("no build section")
			}
			if s.Build.Context != root {
				t.Errorf("builds from %s, want the repository root %s (the Go workspace)", s.Build.Context, root)
			}
			if got, want := filepath.Join(s.Build.Context, s.Build.Dockerfile), dockerfilePath(root, b.Name); got != want {
				t.Errorf("builds %s, want %s", got, want)
			}
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("its Dockerfile: %v", err)
			}

			env := environment(s)
			var names []string
			for name := range env {
				names = append(names, name)
			}
			if bad := p.unbound(b.Name, names); len(bad) > 0 {
				t.Errorf("sets %v, which %s does not bind", bad, b.Name)
			}
			if msg := p.configError(t, b.Name, imagePaths{"/srv/console": console, "/srv/docs": console}.rewrite(env)); msg != "" {
				t.Errorf("%s refuses its Compose configuration: %s", b.Name, msg)
			}

			_, port, err := net.SplitHostPort(env["BASALT_LISTEN_ADDR"])
			if err != nil {
				t.Fatalf("BASALT_LISTEN_ADDR %q: %v", env["BASALT_LISTEN_ADDR"], err)
			}
			if want := net.JoinHostPort(b.Name, port); env["BASALT_ADVERTISE_ADDR"] != want {
				t.Errorf("BASALT_ADVERTISE_ADDR is %q, want %q: the others reach it by its service name", env["BASALT_ADVERTISE_ADDR"], want)
			}
			if host, _, _ := net.SplitHostPort(env["CONSUL_HTTP_ADDR"]); host != "consul" {
				t.Errorf("CONSUL_HTTP_ADDR is %q, want the consul service", env["CONSUL_HTTP_ADDR"])
			}
			if b.Service {
				u, err := url.Parse(env["DATABASE_URL"])
				if err != nil || u.Hostname() != "postgres" {
					t.Errorf("DATABASE_URL does not point at the postgres service")
				}
				if env["BASALT_DB_SCHEMA"] != b.Name {
					t.Errorf("BASALT_DB_SCHEMA is %q, want its own schema %q", env["BASALT_DB_SCHEMA"], b.Name)
				}
			}

			hc := s.HealthCheck
			wantTest := []string{"CMD", "/usr/local/bin/healthprobe", "http://127.0.0.1:" + port + "/readyz"}
			if hc == nil || !slices.Equal([]string(hc.Test), wantTest) {
				t.Errorf("health check is %v, want %v", hc, wantTest)
			} else if hc.StartPeriod == nil || hc.Interval == nil || hc.Retries == nil {
				t.Errorf("health check needs a start period, an interval and retries")
			}
		})
	}
}

func TestComposeNeedsItsSecrets(t *testing.T) {
	t.Parallel()
	full := exampleEnv(t)
	for _, name := range []string{"POSTGRES_PASSWORD", "BASALT_INTERNAL_SECRET", "BASALT_AUTH_KEY_SECRET", "BASALT_AUDIT_CHECKPOINT_KEY", "BASALT_ADMIN_PASSWORD"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range full {
				if k != name {
					env[k] = v
				}
			}
			_, err := loadCompose(t, env)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("without %s: want an error naming it, got %v", name, err)
			}
		})
	}
}

func TestDependencyProblemsCatchMistakes(t *testing.T) {
	t.Parallel()
	bins := discoverT(t)
	tests := []struct {
		name    string
		edit    func(p *types.Project)
		problem string
	}{
		{name: "as committed", edit: func(*types.Project) {}},
		{name: "cycle", edit: func(p *types.Project) {
			p.Services["audit"].DependsOn["gateway"] = types.ServiceDependency{Condition: types.ServiceConditionHealthy}
		}, problem: "cycle"},
		{name: "started, not healthy", edit: func(p *types.Project) {
			p.Services["gateway"].DependsOn["auth"] = types.ServiceDependency{Condition: types.ServiceConditionStarted}
		}, problem: "want \"service_healthy\""},
		{name: "gateway without auth", edit: func(p *types.Project) { delete(p.Services["gateway"].DependsOn, "auth") }, problem: "gateway does not wait for auth"},
		{name: "service without postgres", edit: func(p *types.Project) { delete(p.Services["blog"].DependsOn, "postgres") }, problem: "blog does not wait for postgres"},
		{name: "unknown service", edit: func(p *types.Project) {
			p.Services["blog"].DependsOn["search"] = types.ServiceDependency{Condition: types.ServiceConditionHealthy}
		}, problem: "not a service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			project, err := loadCompose(t, exampleEnv(t))
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(project)
			wantProblem(t, dependencyProblems(project, bins), tt.problem)
		})
	}
}
