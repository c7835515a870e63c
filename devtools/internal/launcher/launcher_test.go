package launcher

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/listen"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// childEnv makes the test binary a stand-in for a service: it serves /readyz, answering with
// its pid, on its listen address and on its admin address too, until SIGTERM.
const childEnv = "LAUNCHER_TEST_CHILD"

func TestMain(m *testing.M) { testkit.Main(m, testkit.AsChild(childEnv, runChild)) }

func runChild(string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	in, err := listen.Parse(os.Getenv("BASALT_LISTEN_FDS"))
	if err != nil {
		return 2
	}
	pid := strconv.Itoa(os.Getpid())
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, pid) })
	for _, addr := range []string{os.Getenv("BASALT_LISTEN_ADDR"), os.Getenv("BASALT_ADMIN_LISTEN"), os.Getenv("BASALT_GATEWAY_ADMIN_LISTEN")} {
		if addr == "" {
			continue
		}
		ln, err := in.Listen(addr)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 3
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	<-ctx.Done()
	return 0
}

// startStandIns starts a stand-in for every process and waits until each serves. It returns
// what starting one again takes.
func startStandIns(t *testing.T, procs []*Process) (dir string, env []string, logs *Logs) {
	t.Helper()
	names := make([]string, len(procs))
	for i, p := range procs {
		names[i] = p.Name
	}
	dir = binDir(t, names...)
	env = append(os.Environ(), childEnv+"=1")
	logs = NewLogs(io.Discard, procs)
	for _, p := range procs {
		if err := p.Start(dir, env, logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := WaitReady(context.Background(), procs, time.Minute); err != nil {
		t.Fatal(err)
	}
	return dir, env, logs
}

// binDir holds the test binary under each process's name, so Start runs the stand-in.
func binDir(t *testing.T, names ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range names {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// taken reports whether another socket cannot bind url's port.
func taken(t *testing.T, url string) bool {
	t.Helper()
	ln, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return true
	}
	ln.Close()
	return false
}

// answer returns the pid the process at url answers with.
func answer(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPortsAreHeldFromAssignmentUntilTheProcessServes(t *testing.T) {
	t.Parallel()
	procs := []*Process{{Name: "audit"}, {Name: "gateway"}}
	if err := AssignPorts(procs, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = StopAll(procs, 10*time.Second) })
	// Each process's address and its admin listener's, by the process that serves them.
	urls := map[string]*Process{procs[0].URL: procs[0], procs[0].AdminURL: procs[0], procs[1].URL: procs[1], procs[1].AdminURL: procs[1]}
	if len(urls) != 4 {
		t.Fatalf("addresses %v, want four different ones", urls)
	}
	for u := range urls {
		if !taken(t, u) {
			t.Fatalf("%s is free after AssignPorts", u)
		}
	}

	dir, env, logs := startStandIns(t, procs)
	for u, p := range urls {
		if got, want := answer(t, u), strconv.Itoa(p.PID()); got != want {
			t.Fatalf("%s answered from pid %s, want %s's %s", u, got, p.Name, want)
		}
	}

	// The launcher keeps no copy: once the process stops, its ports refuse connections, as
	// the gateway's passive ejection expects of a dead instance.
	audit := procs[0]
	if err := audit.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", strings.TrimPrefix(audit.URL, "http://")); err == nil {
		c.Close()
		t.Fatalf("%s accepts connections after its process stopped", audit.URL)
	}
	// Started again, the process binds its address itself.
	if err := audit.Start(dir, env, logs); err != nil {
		t.Fatal(err)
	}
	if err := WaitReady(context.Background(), procs[:1], time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, want := answer(t, audit.URL), strconv.Itoa(audit.PID()); got != want {
		t.Fatalf("restarted: answered from pid %s, want %s", got, want)
	}
}

func TestEveryProcessHasAFixedAdminPortBesideItsOwn(t *testing.T) {
	t.Parallel()
	fixed := FixedPorts()
	want := map[string][2]int{"gateway": {8080, 9080}, "audit": {7101, 7201}, "blog": {7105, 7205}}
	for name, ports := range want {
		if fixedPorts[name] != ports[0] || adminPort(name, ports[0]) != ports[1] {
			t.Errorf("%s listens on %d with its admin listener on %d, want %v", name, fixedPorts[name], adminPort(name, fixedPorts[name]), ports)
		}
	}
	for name, port := range fixedPorts {
		for _, p := range []int{port, adminPort(name, port)} {
			if !slices.Contains(fixed, p) {
				t.Errorf("FixedPorts %v lacks %s's %d", fixed, name, p)
			}
		}
	}
	if !slices.IsSorted(fixed) || len(slices.Compact(slices.Clone(fixed))) != 2*len(fixedPorts) {
		t.Errorf("FixedPorts %v: want %d different ports in increasing order", fixed, 2*len(fixedPorts))
	}
}

func TestStopLetsGoOfThePortsOfProcessesNeverStarted(t *testing.T) {
	t.Parallel()
	procs := []*Process{{Name: "blog"}, {Name: "gateway"}}
	if err := AssignPorts(procs, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	var held []*net.TCPListener
	for _, p := range procs {
		for _, ln := range p.held {
			held = append(held, ln)
		}
	}
	if len(held) != 4 {
		t.Fatalf("%d sockets held, want 4 (blog, the gateway and their admin listeners)", len(held))
	}
	if err := StopAll(procs, time.Second); err != nil {
		t.Fatal(err)
	}
	// The sockets themselves are checked rather than their ports: a process forked meanwhile by
	// another test holds a copy of every descriptor until it execs, and another launcher may
	// bind a freed port at once.
	for _, ln := range held {
		// A socket still open times out at once instead of waiting for a connection.
		_ = ln.SetDeadline(time.Now().Add(-time.Second))
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s is still held: Accept = %v", ln.Addr(), err)
		}
	}
}
