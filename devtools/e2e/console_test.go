package e2e_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/childproc"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// chromium is Debian's Chromium, which the browser tests drive (never a downloaded browser).
const chromium = "/usr/bin/chromium"

// TestConsoleInABrowser runs the console's browser tests (console/e2e, `npm run test:e2e`):
// headless Chromium, driven by playwright-core, uses the console the gateway serves against
// the whole platform started by the launcher on free ports, as a person would, and open the
// REST reference page. They need npm, Chromium, the built console and the built reference page
// (`go tool task test` builds both first); under CI=true a missing one fails the test.
func TestConsoleInABrowser(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	npm, err := exec.LookPath("npm")
	testkit.Require(t, "npm", err)
	if path := os.Getenv("BASALT_CHROMIUM"); path != "" {
		_, err = os.Stat(path)
	} else {
		_, err = os.Stat(chromium)
	}
	testkit.Require(t, "Chromium (apt-get install chromium)", err)
	for f, what := range map[string]string{
		"console/node_modules/.package-lock.json": "the built console (go tool task console:build)",
		"console/dist/index.html":                 "the built console (go tool task console:build)",
		"apidocs/dist/index.html":                 "the built REST reference page (go tool task apidocs:build)",
	} {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(f)))
		testkit.Require(t, what, err)
	}

	cmd := exec.CommandContext(t.Context(), npm, "run", "--silent", "--prefix", filepath.Join(root, "console"), "test:e2e")
	cmd.Dir = root
	// Its own process group, so that a cancelled test stops node, the launcher and Chromium.
	childproc.Bind(cmd, syscall.SIGINT, childproc.OwnGroup())
	cmd.Cancel = func() error { return childproc.SignalGroup(cmd.Process, syscall.SIGINT) }
	cmd.WaitDelay = time.Minute
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	<-logged
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the console's browser tests failed: %v (their report is above)", err)
	}
}
