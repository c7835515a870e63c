package launcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// module writes a Go module of one main package per name into a fresh folder, each with a
// body, and returns the folder and the processes that build them.
func module(t *testing.T, body string, names ...string) (string, []*Process) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"go.mod": "module example.com/programs\n\ngo 1.26\n"}
	var procs []*Process
	// The sources are this run's own, so that go build compiles them instead of finding them in
	// its cache.
	token := rand.Text()
	for _, name := range names {
		files[filepath.Join(name, "main.go")] = "package main\n\nconst token = " + strconv.Quote(token+name) + "\n\nfunc main() {\n\t" + body + "\n}\n"
		procs = append(procs, &Process{Name: name, pkg: "./" + name})
	}
	for path, content := range files {
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, procs
}

// buildEnv builds the test's module on its own, whatever workspace the tests run in.
func buildEnv() []string { return append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod") }

var compiledRE = regexp.MustCompile(`basalt: built 2 programs in \S+; (\d+) packages compiled`)

func TestBuildReportsEachProgramAndWhatItCompiled(t *testing.T) {
	t.Parallel()
	root, procs := module(t, "println(token)", "first", "second")
	binDir := filepath.Join(root, "bin")
	for _, run := range []struct {
		name string
		// compiled says how many packages the build must report it compiled.
		compiled func(int) bool
	}{
		{"the first build compiles both programs", func(n int) bool { return n >= 2 }},
		{"a build with nothing changed compiles nothing and still reports each program", func(n int) bool { return n == 0 }},
	} {
		var out bytes.Buffer
		if err := Build(context.Background(), root, buildEnv(), &out, binDir, procs); err != nil {
			t.Fatalf("%s: %v\n%s", run.name, err, out.String())
		}
		for _, p := range procs {
			if !regexp.MustCompile(`(?m)^basalt:   built ` + p.Name + ` +[0-9.]+m?s$`).MatchString(out.String()) {
				t.Errorf("%s: no line with %s's build time:\n%s", run.name, p.Name, out.String())
			}
			if _, err := os.Stat(filepath.Join(binDir, p.Name)); err != nil {
				t.Errorf("%s: %v", run.name, err)
			}
		}
		m := compiledRE.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("%s: no total line:\n%s", run.name, out.String())
		}
		if n, _ := strconv.Atoi(m[1]); !run.compiled(n) {
			t.Errorf("%s: %d packages compiled:\n%s", run.name, n, out.String())
		}
	}
}

func TestBuildPassesCompileErrorsThrough(t *testing.T) {
	t.Parallel()
	root, procs := module(t, "undefinedFunction(token)", "broken")
	var out bytes.Buffer
	err := Build(context.Background(), root, buildEnv(), &out, filepath.Join(root, "bin"), procs)
	if err == nil {
		t.Fatalf("Build of a program that does not compile succeeded:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "main.go:6:2: undefined: undefinedFunction") {
		t.Errorf("the compiler's message is not in Build's output:\n%s", out.String())
	}
}

// TestBuildProgressFillsSilences checks the lines a long build writes: a program as soon as its
// binary lands, and after a silence the packages compiled so far and what is still building.
func TestBuildProgressFillsSilences(t *testing.T) {
	t.Parallel()
	binDir := t.TempDir()
	procs := []*Process{{Name: "audit"}, {Name: "gateway"}}
	var out bytes.Buffer
	b := newBuildReport(&out, binDir, procs, time.Now().Add(-2*time.Minute))
	b.said = time.Now().Add(-buildProgressEvery)
	b.compiled = 40
	b.poll()
	if !regexp.MustCompile(`^basalt:   40 packages compiled, 2m\d+s\n$`).MatchString(out.String()) {
		t.Fatalf("a silence while nothing is built: %q, want the packages compiled so far", out.String())
	}

	out.Reset()
	if err := os.WriteFile(filepath.Join(binDir, "audit"), []byte("a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.compiled = 300
	b.poll()
	if !regexp.MustCompile(`^basalt:   built audit +2m\d+s\n$`).MatchString(out.String()) {
		t.Fatalf("audit's binary landed: %q, want its line alone (the line ends the silence)", out.String())
	}

	out.Reset()
	b.said = time.Now().Add(-buildProgressEvery)
	b.poll()
	if !regexp.MustCompile(`^basalt:   300 packages compiled, 2m\d+s; still building gateway\n$`).MatchString(out.String()) {
		t.Fatalf("a silence after audit: %q, want the packages compiled so far and gateway", out.String())
	}
}
