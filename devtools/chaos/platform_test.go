//go:build unix

package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// gatewayConfig lets the suite's steady traffic through the gateway's rate limits.
const gatewayConfig = `
rate_limits:
  authenticated: {rate: 100000, burst: 100000}
  public: {rate: 100000, burst: 100000}
`

// platform is every service and the gateway as processes on the suite's own PostgreSQL and
// Consul, with two instances of blog and identity, each supervised as `task up` does.
type platform struct {
	all     []*launcher.Process
	byName  map[string]*launcher.Process
	binDir  string
	env     []string
	logs    *launcher.Logs
	logPath string
	dataDir string

	mu         sync.Mutex
	supervised map[string]func() // stops a process's supervision, by name
	events     testkit.Buffer    // the supervisors' lines: exits and restarts
}

// seconds are the processes that run a second instance of a service, and the service.
var seconds = map[string]string{"blog-2": "blog", "identity-2": "identity"}

func startPlatform(t *testing.T, databaseURL, consulAddr string) *platform {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	programs, err := launcher.Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	p := &platform{byName: map[string]*launcher.Process{}, binDir: t.TempDir(), dataDir: t.TempDir(), supervised: map[string]func(){}}
	var out bytes.Buffer
	if err := launcher.Build(context.Background(), root, os.Environ(), &out, p.binDir, programs); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	p.all = programs
	for name, program := range seconds {
		// A second instance runs the same binary under its own name, for its log lines.
		if err := os.Symlink(filepath.Join(p.binDir, program), filepath.Join(p.binDir, name)); err != nil {
			t.Fatal(err)
		}
		p.all = append(p.all, &launcher.Process{Name: name})
	}
	if err := launcher.AssignPorts(p.all, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(config, []byte(gatewayConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	base := append(os.Environ(),
		"DATABASE_URL="+databaseURL,
		"CONSUL_HTTP_ADDR="+consulAddr,
		// Consul notices a failing instance within a second; an outbox retries at least every
		// second once audit is back.
		"BASALT_CHECK_INTERVAL=1s", "BASALT_CHECK_TIMEOUT=500ms",
		"BASALT_OUTBOX_MAX_BACKOFF=1s", "BASALT_OUTBOX_INTERVAL=100ms",
		"BASALT_GATEWAY_CONFIG="+config,
		"BASALT_LOG_FORMAT=text",
	)
	if p.env, err = launcher.Environment(base, p.all, p.dataDir); err != nil {
		t.Fatal(err)
	}
	// The processes' lines go to a file: minutes of traffic make more than a test log should
	// hold. A failing run prints the warnings and errors from it and keeps the file.
	logFile, err := os.CreateTemp("", "basalt-chaos-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p.logPath = logFile.Name()
	p.logs = launcher.NewLogs(logFile, p.all)
	for _, proc := range p.all {
		p.byName[proc.Name] = proc
		if err := proc.Start(p.binDir, p.env, p.logs); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		p.mu.Lock()
		for _, stop := range p.supervised {
			stop()
		}
		p.mu.Unlock()
		_ = launcher.StopAll(p.all, 30*time.Second)
		logFile.Close()
		if t.Failed() {
			p.printProblems(t)
		} else {
			os.Remove(p.logPath)
		}
	})
	if err := launcher.WaitReady(context.Background(), p.all, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, proc := range p.all {
		p.supervise(proc)
	}
	return p
}

// supervise restarts proc whenever it exits, as `task up` does, until unsupervise.
func (p *platform) supervise(proc *launcher.Process) {
	ctx, cancel := context.WithCancel(context.Background())
	wg := launcher.Supervise(ctx, []*launcher.Process{proc}, &p.events, func(proc *launcher.Process) error {
		return proc.Start(p.binDir, p.env, p.logs)
	})
	p.mu.Lock()
	p.supervised[proc.Name] = func() { cancel(); wg.Wait() }
	p.mu.Unlock()
}

// unsupervise stops restarting proc, so that the suite can keep it stopped.
func (p *platform) unsupervise(proc *launcher.Process) {
	p.mu.Lock()
	stop := p.supervised[proc.Name]
	delete(p.supervised, proc.Name)
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (p *platform) url(name string) string { return p.byName[name].URL }

// instancesOf returns the processes serving service.
func (p *platform) instancesOf(service string) []*launcher.Process {
	var out []*launcher.Process
	for _, proc := range p.all {
		if proc.Name == service || seconds[proc.Name] == service {
			out = append(out, proc)
		}
	}
	return out
}

// secret returns a value from the secrets file the launcher generated.
func (p *platform) secret(t *testing.T, name string) string {
	t.Helper()
	v, err := launcher.Secret(p.dataDir, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// explain logs the gateway's lines of the calls that began within a second after each of times:
// the access log names the cause of an answer the gateway made itself.
func (p *platform) explain(t *testing.T, times []time.Time) {
	if len(times) == 0 {
		return
	}
	f, err := os.Open(p.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "gateway") || strings.Contains(l, "code=ok") {
			continue
		}
		_, rest, ok := strings.Cut(l, "time=")
		if !ok || len(rest) < 24 {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", rest[:24])
		if err != nil {
			continue
		}
		for _, u := range times {
			if d := at.Sub(u); d >= -time.Second && d <= 2*time.Second {
				lines = append(lines, l)
				break
			}
		}
	}
	t.Logf("the gateway's lines around the failed calls the checks did not allow:\n%s", strings.Join(lines, "\n"))
}

// printProblems logs the processes' warnings and errors, at most 400 lines.
func (p *platform) printProblems(t *testing.T) {
	f, err := os.Open(p.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 400 {
		lines = append(lines[:200], append([]string{"..."}, lines[len(lines)-200:]...)...)
	}
	t.Logf("the platform's warnings and errors (%s holds everything):\n%s", p.logPath, strings.Join(lines, "\n"))
	t.Logf("supervision:\n%s", p.events.String())
}
