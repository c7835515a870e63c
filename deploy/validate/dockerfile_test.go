package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, COPY...
	Args string
}

// parseDockerfile splits a Dockerfile into instructions. It knows what these checks need:
// comments, blank lines and backslash continuations (comments inside one included).
func parseDockerfile(text string) []instruction {
	var out []instruction
	var cur strings.Builder
	continuing := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && !continuing) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continuing = true
			continue
		}
		cur.WriteString(trimmed)
		continuing = false
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// stage is the instructions from one FROM to the next.
type stage struct {
	Image string // as written after FROM, without AS
	Name  string
	Body  []instruction
}

func stages(ins []instruction) []stage {
	var out []stage
	for _, in := range ins {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{}
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					st.Image = w
					break
				}
			}
			if len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") {
				st.Name = f[len(f)-1]
			}
			out = append(out, st)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].Body = append(out[len(out)-1].Body, in)
		}
	}
	return out
}

// imageTag returns the tag of an image reference ("" when it has none).
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[i+1:]
	}
	return ""
}

// dockerfileProblems lists what is wrong with the Dockerfile of the binary named name, whose
// main package is pkg; goVersion is go.work's.
func dockerfileProblems(text, name, pkg, goVersion string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if regexp.MustCompile(`(?i):latest\b`).MatchString(text) {
		add("names a :latest image")
	}
	sts := stages(parseDockerfile(text))
	if len(sts) < 2 {
		return append(problems, fmt.Sprintf("has %d stage(s), want a build stage and a run stage", len(sts)))
	}
	var build *stage
	for i, st := range sts {
		if st.Image == "scratch" {
			continue
		}
		if strings.Contains(st.Image, "$") {
			add("stage %d's image %s is a variable, which pins nothing", i, st.Image)
		}
		if tag := imageTag(st.Image); tag == "" && !strings.Contains(st.Image, "@sha256:") {
			add("stage %d's image %s has no tag", i, st.Image)
		}
		if strings.HasPrefix(st.Image, "golang:") {
			build = &sts[i]
		}
	}
	if build == nil {
		return append(problems, "has no golang build stage")
	}
	if want := "golang:" + goVersion + "-bookworm"; build.Image != want {
		add("builds with %s, want %s (go.work's version)", build.Image, want)
	}
	var buildText strings.Builder
	for _, in := range build.Body {
		buildText.WriteString(in.Cmd + " " + in.Args + "\n")
	}
	bt := buildText.String()
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "go build", pkg + " ", "./kernel/cmd/healthprobe"} {
		if !strings.Contains(bt, want) {
			add("build stage lacks %q", want)
		}
	}
	final := sts[len(sts)-1]
	if final.Image != "scratch" && !strings.HasPrefix(final.Image, "gcr.io/distroless/") {
		add("run stage is %s, want a distroless or scratch base", final.Image)
	}
	var user, entrypoint string
	copied := map[string]bool{}
	for _, in := range final.Body {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entrypoint = in.Args
		case "COPY":
			if strings.Contains(in.Args, "--from="+build.Name+" ") {
				for _, w := range strings.Fields(in.Args) {
					copied[filepath.Base(w)] = true
				}
			}
		case "RUN":
			add("run stage has RUN %s, but a distroless base has no shell", in.Args)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		add("run stage's USER is %q, want a non-root user", user)
	}
	if !copied[name] || !copied["healthprobe"] {
		add("run stage does not copy both %s and healthprobe from the build stage", name)
	}
	if want := `["/usr/local/bin/` + name + `"]`; entrypoint != want {
		add("ENTRYPOINT is %s, want %s", entrypoint, want)
	}
	return problems
}

func dockerfilePath(root, name string) string {
	return filepath.Join(root, "deploy", "docker", name+".Dockerfile")
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	goVersion := goWorkVersion(t)
	for _, b := range discoverT(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			text, err := os.ReadFile(dockerfilePath(root, b.Name))
			if err != nil {
				t.Fatalf("every service and the gateway need a Dockerfile: %v", err)
			}
			for _, p := range dockerfileProblems(string(text), b.Name, b.Pkg, goVersion) {
				t.Errorf("%s.Dockerfile %s", b.Name, p)
			}
		})
	}
}

// TestServiceDockerfilesAreOne keeps the services' Dockerfiles one file in several copies, so a
// fix to one is a fix to all: each is audit's with the name changed.
func TestServiceDockerfilesAreOne(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	var first binary
	var want string
	for _, b := range discoverT(t) {
		if !b.Service {
			continue
		}
		text, err := os.ReadFile(dockerfilePath(root, b.Name))
		if err != nil {
			t.Fatal(err)
		}
		if want == "" {
			first, want = b, string(text)
			continue
		}
		if got := strings.ReplaceAll(want, first.Name, b.Name); string(text) != got {
			t.Errorf("%s.Dockerfile differs from %s.Dockerfile by more than the name", b.Name, first.Name)
		}
	}
}

func TestDockerfileProblemsCatchMistakes(t *testing.T) {
	t.Parallel()
	good, err := os.ReadFile(dockerfilePath(repoRoot(t), "blog"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := goWorkVersion(t)
	base := string(good)
	tests := []struct {
		name    string
		edit    func(string) string
		problem string // "" means none
	}{
		{name: "as committed", edit: func(s string) string { return s }},
		{name: "latest base", edit: func(s string) string {
			return strings.Replace(s, "static-debian12:nonroot", "static-debian12:latest", 1)
		}, problem: ":latest"},
		{name: "untagged base", edit: func(s string) string {
			return strings.Replace(s, "gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12", 1)
		}, problem: "has no tag"},
		{name: "other Go", edit: func(s string) string {
			return strings.Replace(s, "golang:"+goVersion, "golang:1.25.0", 1)
		}, problem: "go.work's version"},
		{name: "cgo", edit: func(s string) string { return strings.Replace(s, "CGO_ENABLED=0", "CGO_ENABLED=1", 1) }, problem: "CGO_ENABLED=0"},
		{name: "root", edit: func(s string) string { return strings.Replace(s, "USER 65532:65532", "USER 0", 1) }, problem: "non-root"},
		{name: "no user", edit: func(s string) string { return strings.Replace(s, "USER 65532:65532\n", "", 1) }, problem: "non-root"},
		{name: "debian run stage", edit: func(s string) string {
			return strings.Replace(s, "gcr.io/distroless/static-debian12:nonroot", "debian:bookworm-20251020", 1)
		}, problem: "distroless or scratch"},
		{name: "one stage", edit: func(s string) string {
			i := strings.Index(s, "FROM gcr.io")
			return s[:i]
		}, problem: "stage(s)"},
		{name: "no probe", edit: func(s string) string {
			return strings.Replace(s, " /out/healthprobe /usr/local/bin/", " /usr/local/bin/", 1)
		}, problem: "healthprobe"},
		{name: "another package", edit: func(s string) string {
			return strings.Replace(s, "./services/blog/cmd/blog", "./services/blog/cmd/other", 1)
		}, problem: "./services/blog/cmd/blog"},
		{name: "shell in the run stage", edit: func(s string) string {
			return strings.Replace(s, "USER 65532", "RUN chmod 755 /usr/local/bin/blog\nUSER 65532", 1)
		}, problem: "no shell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, dockerfileProblems(tt.edit(base), "blog", "./services/blog/cmd/blog", goVersion), tt.problem)
		})
	}
}
