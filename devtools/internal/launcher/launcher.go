// Package launcher runs the whole platform on one machine, each service and the gateway as its
// own process: what `go tool task up` does.
//
// On the embedded default every service gets a SQLite file under the data folder and finds the
// others through a static table the launcher hands to all of them. When DATABASE_URL and
// CONSUL_HTTP_ADDR are set, the services inherit them and use their own PostgreSQL schemas and
// Consul instead. Logs are prefixed with the process name; the launcher waits until every
// process is ready, prints where to connect, and on Ctrl-C stops them all and waits for them.
package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure Run.
type Options struct {
	// Root is the repository root.
	Root string
	// DataDir holds SQLite files, binaries and the state file.
	DataDir string
	// Host is the address every process listens on.
	Host string
	// AutoPorts picks free ports instead of the fixed ones (for tests and parallel runs).
	AutoPorts bool
	// Env is the environment the processes inherit.
	Env []string
	// Out receives the prefixed logs and the launcher's own messages.
	Out io.Writer
	// ReadyTimeout bounds the wait for every process to become ready.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait for processes to exit after SIGTERM.
	StopTimeout time.Duration
}

// Process is one launched program.
type Process struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	PID  int    `json:"pid"`

	pkg  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StateFile is written into the data folder once everything is ready, and removed on exit, so
// that tools (and tests) can find the processes.
const StateFile = "up.json"

// fixedPorts keeps each service's port stable across runs on the embedded default.
var fixedPorts = map[string]int{
	"gateway":  8080,
	"audit":    7101,
	"identity": 7102,
	"auth":     7103,
	"authz":    7104,
	"blog":     7105,
}

// Discover lists the programs to launch: every services/<name>/cmd/<name>, then the gateway
// when it exists.
func Discover(root string) ([]*Process, error) {
	mains, err := filepath.Glob(filepath.Join(root, "services", "*", "cmd", "*", "main.go"))
	if err != nil {
		return nil, err
	}
	var procs []*Process
	for _, m := range mains {
		dir := filepath.Dir(m)
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		procs = append(procs, &Process{Name: filepath.Base(dir), pkg: "./" + filepath.ToSlash(rel)})
	}
	slices.SortFunc(procs, func(a, b *Process) int { return strings.Compare(a.Name, b.Name) })
	if _, err := os.Stat(filepath.Join(root, "gateway", "cmd", "gateway", "main.go")); err == nil {
		procs = append(procs, &Process{Name: "gateway", pkg: "./gateway/cmd/gateway"})
	}
	if len(procs) == 0 {
		return nil, errors.New("launcher: no services found under services/*/cmd")
	}
	return procs, nil
}

// Run builds and starts every program, waits until all are ready, and keeps them running until
// ctx is done or one of them exits; then it stops the rest. It returns nil after a clean stop
// requested through ctx.
func Run(ctx context.Context, o Options) error {
	procs, err := Discover(o.Root)
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	binDir := filepath.Join(dataDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	if err := assignPorts(procs, o); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "basalt: building %d programs\n", len(procs))
	if err := build(ctx, o, procs, binDir); err != nil {
		return err
	}

	secrets, err := Secrets(dataDir, o.Env)
	if err != nil {
		return err
	}
	env := append(processEnv(o, procs, dataDir), secrets...)
	logs := &prefixWriter{out: o.Out, width: nameWidth(procs)}
	defer stopAll(procs, o.StopTimeout)
	exited := make(chan *Process, len(procs))
	for _, p := range procs {
		if err := p.start(filepath.Join(binDir, p.Name), env, logs, exited); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, procs, o.ReadyTimeout, exited); err != nil {
		return err
	}
	statePath := filepath.Join(dataDir, StateFile)
	if err := writeState(statePath, procs); err != nil {
		return err
	}
	defer os.Remove(statePath)
	printReady(o, procs)

	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Out, "basalt: stopping")
		err := stopAll(procs, o.StopTimeout)
		if err == nil {
			fmt.Fprintln(o.Out, "basalt: stopped")
		}
		return err
	case p := <-exited:
		return fmt.Errorf("launcher: %s exited unexpectedly: %v", p.Name, p.err)
	}
}

func assignPorts(procs []*Process, o Options) error {
	next := 7110
	for _, p := range procs {
		switch port, ok := fixedPorts[p.Name]; {
		case o.AutoPorts:
			ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, "0"))
			if err != nil {
				return err
			}
			p.port = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		case ok:
			p.port = port
		default:
			p.port = next
			next++
		}
		p.URL = "http://" + net.JoinHostPort(o.Host, strconv.Itoa(p.port))
		if !o.AutoPorts {
			if ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(p.port))); err != nil {
				return fmt.Errorf("launcher: port %d for %s is taken (is Basalt already running? use -ports auto): %w", p.port, p.Name, err)
			} else {
				ln.Close()
			}
		}
	}
	return nil
}

func build(ctx context.Context, o Options, procs []*Process, binDir string) error {
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, p := range procs {
		args = append(args, p.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Root
	cmd.Env = o.Env
	cmd.Stdout, cmd.Stderr = o.Out, o.Out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("launcher: build: %w", err)
	}
	return nil
}

// processEnv is the environment of every launched process: the launcher's own, plus the data
// folder and, on the embedded default, the static discovery table.
func processEnv(o Options, procs []*Process, dataDir string) []string {
	env := append([]string{}, o.Env...)
	env = append(env, "BASALT_DATA_DIR="+dataDir)
	if !hasEnv(o.Env, "CONSUL_HTTP_ADDR") {
		var table []string
		for _, p := range procs {
			table = append(table, p.Name+"="+p.URL)
		}
		env = append(env, "BASALT_STATIC_ENDPOINTS="+strings.Join(table, ";"))
	}
	if !hasEnv(o.Env, "BASALT_LOG_FORMAT") {
		env = append(env, "BASALT_LOG_FORMAT=text")
	}
	return env
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key && v != "" {
			return true
		}
	}
	return false
}

func (p *Process) start(bin string, env []string, logs *prefixWriter, exited chan<- *Process) error {
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(append([]string{}, env...), "BASALT_LISTEN_ADDR="+strings.TrimPrefix(p.URL, "http://"))
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	p.cmd.Stderr = p.cmd.Stdout
	// Its own process group keeps a terminal's Ctrl-C away from the process, so the launcher
	// stops everything in order; Pdeathsig stops it even if the launcher is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("launcher: start %s: %w", p.Name, err)
	}
	p.PID = p.cmd.Process.Pid
	p.done = make(chan struct{})
	var copied sync.WaitGroup
	copied.Go(func() { logs.copyLines(p.Name, stdout) })
	go func() {
		copied.Wait()
		p.err = p.cmd.Wait()
		close(p.done)
		exited <- p
	}()
	return nil
}

func waitReady(ctx context.Context, procs []*Process, timeout time.Duration, exited <-chan *Process) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	pending := slices.Clone(procs)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			names := make([]string, len(pending))
			for i, p := range pending {
				names[i] = p.Name
			}
			return fmt.Errorf("launcher: not ready within %s: %s", timeout, strings.Join(names, ", "))
		case p := <-exited:
			return fmt.Errorf("launcher: %s exited during start-up: %v", p.Name, p.err)
		case <-tick.C:
		}
		pending = slices.DeleteFunc(pending, func(p *Process) bool {
			resp, err := client.Get(p.URL + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return nil
}

// stopAll sends SIGTERM to every running process, waits up to timeout, then kills what is
// left. It reports processes that did not exit cleanly.
func stopAll(procs []*Process, timeout time.Duration) error {
	for _, p := range procs {
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(timeout)
	var errs []error
	for _, p := range procs {
		if p.done == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within %s and was killed", p.Name, timeout))
			continue
		}
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, p.err))
		}
	}
	return errors.Join(errs...)
}

func writeState(path string, procs []*Process) error {
	b, err := json.MarshalIndent(map[string]any{"processes": procs}, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadState reads the state file of a running launcher.
func ReadState(dataDir string) (map[string]Process, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, StateFile))
	if err != nil {
		return nil, err
	}
	var st struct {
		Processes []Process `json:"processes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	out := make(map[string]Process, len(st.Processes))
	for _, p := range st.Processes {
		out[p.Name] = p
	}
	return out, nil
}

func printReady(o Options, procs []*Process) {
	w := o.Out
	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "basalt: ready")
	mode := "embedded default (SQLite under " + o.DataDir + ", static discovery)"
	if hasEnv(o.Env, "DATABASE_URL") && hasEnv(o.Env, "CONSUL_HTTP_ADDR") {
		mode = "real parts (PostgreSQL schemas, Consul)"
	}
	fmt.Fprintln(w, "  mode:", mode)
	for _, p := range procs {
		fmt.Fprintf(w, "  %-*s %s\n", nameWidth(procs), p.Name, p.URL)
	}
	fmt.Fprintln(w, "  stop with Ctrl-C")
	fmt.Fprintln(w, "")
}

func nameWidth(procs []*Process) int {
	w := 0
	for _, p := range procs {
		w = max(w, len(p.Name))
	}
	return w
}

// prefixWriter writes whole lines from several processes, each prefixed with its name, so lines
// never interleave mid-way.
type prefixWriter struct {
	mu    sync.Mutex
	out   io.Writer
	width int
}

func (w *prefixWriter) copyLines(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		w.mu.Lock()
		fmt.Fprintf(w.out, "%-*s | %s\n", w.width, name, sc.Text())
		w.mu.Unlock()
	}
}
