// Package launcher runs the whole platform on one machine, each service and the gateway as its
// own process: what `go tool task up` does. Its pieces (Discover, Build, Process) also serve
// the end-to-end tests, which stop and start single services.
//
// On the embedded default every service gets a SQLite file under the data folder and finds the
// others through a static table the launcher hands to all of them. When DATABASE_URL and
// CONSUL_HTTP_ADDR are set, the services inherit them and use their own PostgreSQL schemas and
// Consul instead. Logs are prefixed with the process name; the launcher waits until every
// process is ready, prints where to connect, restarts a process that exits (with backoff), and
// on Ctrl-C stops them all and waits for them.
package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/basaltplatform/basalt/kernel/childproc"
	"github.com/basaltplatform/basalt/kernel/listen"
)

// Options configure Run.
type Options struct {
	// Root is the repository root.
	Root string
	// DataDir holds SQLite files, binaries, secrets and the state file.
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
	// Name names the program's binary and its log lines.
	Name string
	// URL is where the program serves.
	URL string
	// AdminURL is the program's admin listener: /metrics, /healthz and /readyz.
	AdminURL string

	pkg  string
	port int
	env  []string
	// held are the sockets bound to the process's addresses and not yet handed to it, by
	// address; AssignPorts binds them so that nobody else takes a port before the process
	// serves on it.
	held map[string]*net.TCPListener
	// run is the process's latest start, replaced by each Start: a supervisor restarts a
	// process while others ask whether it runs.
	run atomic.Pointer[run]
}

// run is one start of a process.
type run struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
	// err is how the run ended; it is set before done closes.
	err error
}

// State is what the state file says of a process.
type State struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	PID      int    `json:"pid"`
	AdminURL string `json:"admin_url,omitempty"`
}

// StateFile is written into the data folder once everything is ready, and removed on exit, so
// that tools (and tests) can find the processes.
const StateFile = "up.json"

// DefaultAdminEmail is the bootstrap administrator of the embedded default.
const DefaultAdminEmail = "admin@basalt.local"

// gatewayAdminPort is the fixed port of the gateway's admin listener (its metrics).
const gatewayAdminPort = 9080

// adminPortOffset puts a service's admin listener beside its port: audit's 7101 has 7201.
const adminPortOffset = 100

// fixedPorts keeps each service's port stable across runs on the embedded default.
var fixedPorts = map[string]int{
	"gateway":  8080,
	"audit":    7101,
	"identity": 7102,
	"auth":     7103,
	"authz":    7104,
	"blog":     7105,
}

// FixedPorts returns the ports the platform takes on the embedded default, in increasing order:
// every process's and its admin listener's. Tests must never listen on them, since `go tool
// task up` may hold them; the test task's port guard holds them while the tests run.
func FixedPorts() []int {
	var ports []int
	for name, p := range fixedPorts {
		ports = append(ports, p, adminPort(name, p))
	}
	slices.Sort(ports)
	return ports
}

// adminPort is the fixed admin port of the process name whose own port is port, and the
// setting that tells the process where to listen.
func adminPort(name string, port int) int {
	if name == "gateway" {
		return gatewayAdminPort
	}
	return port + adminPortOffset
}

// adminSetting names the setting that tells the process name where its admin listener goes.
func adminSetting(name string) string {
	if name == "gateway" {
		return "BASALT_GATEWAY_ADMIN_LISTEN"
	}
	return "BASALT_ADMIN_LISTEN"
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
// ctx is done, restarting any that exits (Supervise); then it stops them all. It returns nil
// after a clean stop.
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
	// StopAll also lets go of the ports of processes that never started.
	defer StopAll(procs, o.StopTimeout)
	if err := AssignPorts(procs, o.Host, o.AutoPorts); err != nil {
		return err
	}
	console := ServeConsole(procs, o.Root, o.Env)
	docs := ServeDocs(procs, o.Root, o.Env)
	if err := Build(ctx, o.Root, o.Env, o.Out, binDir, procs); err != nil {
		return err
	}
	env, err := Environment(o.Env, procs, dataDir)
	if err != nil {
		return err
	}
	logs := NewLogs(o.Out, procs)
	for _, p := range procs {
		if err := p.Start(binDir, env, logs); err != nil {
			return err
		}
	}
	if err := WaitReady(ctx, procs, o.ReadyTimeout); err != nil {
		return err
	}
	statePath := filepath.Join(dataDir, StateFile)
	if err := writeState(statePath, procs); err != nil {
		return err
	}
	defer os.Remove(statePath)
	printReady(o, env, procs, console, docs)

	superviseCtx, stopSupervising := context.WithCancel(ctx)
	supervised := Supervise(superviseCtx, procs, o.Out, func(p *Process) error {
		if err := p.Start(binDir, env, logs); err != nil {
			return err
		}
		return writeState(statePath, procs)
	})
	<-ctx.Done()
	stopSupervising()
	supervised.Wait()
	fmt.Fprintln(o.Out, "basalt: stopping")
	if err := StopAll(procs, o.StopTimeout); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "basalt: stopped")
	return nil
}

// Restart backoff: the first restart after a crash waits minRestartDelay, each further one
// twice as long up to maxRestartDelay; a process that ran for healthyUptime before it exited
// starts again at the first delay.
const (
	minRestartDelay = 500 * time.Millisecond
	maxRestartDelay = 30 * time.Second
	healthyUptime   = 30 * time.Second
)

// Supervise restarts every process of procs that exits while ctx is live, with start, after a
// backoff, and says so on out; a platform on one machine should outlive one crashed process as
// a cluster would. It returns at once; Wait on the result, after ctx ends, to know that no
// restart is under way, so that stopping the processes cannot race one.
func Supervise(ctx context.Context, procs []*Process, out io.Writer, start func(*Process) error) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { supervise(ctx, p, out, start) })
	}
	return &wg
}

func supervise(ctx context.Context, p *Process, out io.Writer, start func(*Process) error) {
	delay := minRestartDelay
	started := time.Now()
	for {
		r := p.run.Load()
		select {
		case <-ctx.Done():
			return
		case <-r.done:
		}
		if time.Since(started) >= healthyUptime {
			delay = minRestartDelay
		}
		fmt.Fprintf(out, "basalt: %s exited (%v); restarting it in %s\n", p.Name, r.err, delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, maxRestartDelay)
		started = time.Now()
		if err := start(p); err != nil {
			// A process that cannot even start is tried again after the next delay.
			fmt.Fprintf(out, "basalt: %s could not be restarted: %v\n", p.Name, err)
			if p.run.Load() == r {
				failed := &run{done: make(chan struct{}), err: err}
				close(failed.done)
				p.run.Store(failed)
			}
			continue
		}
		fmt.Fprintf(out, "basalt: %s restarted (pid %d)\n", p.Name, p.PID())
	}
}

// AssignPorts gives every process its port and its admin listener's, the fixed ones of its name
// or free ones, and binds them: the process's first Start hands it the bound sockets. A port is
// thus taken from the moment it is chosen, and another launcher choosing ports at the same time
// cannot pick it too.
func AssignPorts(procs []*Process, host string, auto bool) error {
	next := 7110
	for _, p := range procs {
		port, fixed := fixedPorts[p.Name]
		if !fixed {
			port = next
			next++
		}
		ln, err := bindPort(host, port, auto)
		if err != nil {
			return fmt.Errorf("launcher: %s: %w", p.Name, err)
		}
		p.port = ln.Addr().(*net.TCPAddr).Port
		addr := net.JoinHostPort(host, strconv.Itoa(p.port))
		p.URL = "http://" + addr
		p.held = map[string]*net.TCPListener{addr: ln}
		admin, err := bindPort(host, adminPort(p.Name, port), auto)
		if err != nil {
			return fmt.Errorf("launcher: %s (admin): %w", p.Name, err)
		}
		adminAddr := net.JoinHostPort(host, strconv.Itoa(admin.Addr().(*net.TCPAddr).Port))
		p.AdminURL = "http://" + adminAddr
		p.env = []string{adminSetting(p.Name) + "=" + adminAddr}
		p.held[adminAddr] = admin
	}
	return nil
}

// ConsoleDir is where `go tool task console:build` puts the built browser console.
const ConsoleDir = "console/dist"

// DocsDir is where `go tool task apidocs:build` puts the built REST reference page.
const DocsDir = "apidocs/dist"

// ServeConsole has the gateway serve the built console under /console/ and returns its URL:
// the folder BASALT_GATEWAY_CONSOLE_DIR names, or else the repository's console/dist when it
// holds a build. It returns "" when there is no console to serve.
func ServeConsole(procs []*Process, root string, env []string) string {
	return servePage(procs, root, env, "BASALT_GATEWAY_CONSOLE_DIR", ConsoleDir, "/console/")
}

// ServeDocs has the gateway serve the built REST reference page under /docs/ and returns its
// URL, as ServeConsole does for the console (BASALT_GATEWAY_DOCS_DIR, or apidocs/dist).
func ServeDocs(procs []*Process, root string, env []string) string {
	return servePage(procs, root, env, "BASALT_GATEWAY_DOCS_DIR", DocsDir, "/docs/")
}

// servePage has the gateway serve a built page under path: the folder the variable names, or
// else the repository's folder dir when it holds a build. It returns the page's URL, or "".
func servePage(procs []*Process, root string, env []string, variable, dir, path string) string {
	folder, set := lookupEnv(env, variable)
	if !set {
		folder = filepath.Join(root, filepath.FromSlash(dir))
		if _, err := os.Stat(filepath.Join(folder, "index.html")); err != nil {
			return ""
		}
	}
	for _, p := range procs {
		if p.Name == "gateway" {
			p.env = append(p.env, variable+"="+folder)
			return p.URL + path
		}
	}
	return ""
}

// bindPort binds port on host, or with auto a free port chosen at random below the kernel's
// ephemeral range (32768 and up on Linux). Listening on port 0 would pick one from that range,
// where any outgoing connection on the machine may hold the same port once the process that
// serves on it restarts; ports below it are handed out to nobody.
func bindPort(host string, port int, auto bool) (*net.TCPListener, error) {
	if !auto {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("port %d is taken (is Basalt already running? use -ports auto): %w", port, err)
		}
		return ln.(*net.TCPListener), nil
	}
	const low, high = 20000, 32000
	for range 200 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(low+rand.IntN(high-low))))
		if err == nil {
			return ln.(*net.TCPListener), nil
		}
	}
	return nil, fmt.Errorf("no free port on %s between %d and %d", host, low, high)
}

// buildProgressEvery is how often Build says how many packages it has compiled while no
// program is done yet: a first build, with an empty build cache, takes minutes.
const buildProgressEvery = 15 * time.Second

// Build compiles every program into binDir with one go build, so that the packages they share
// compile once, in parallel, and reports on out as it goes: a line for each program when its
// binary lands in binDir, with the time since the build started, a line every
// buildProgressEvery with the number of packages compiled so far, and a last line with the
// total. The go command's own messages (downloads, compile errors) pass through.
//
// go build -json -v reports each package it compiles (go help buildjson); a program is done
// when its binary's modification time changes, which go build does even when the binary was
// already up to date.
func Build(ctx context.Context, root string, env []string, out io.Writer, binDir string, procs []*Process) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintf(out, "basalt: building %d programs into %s (a first build, with an empty Go build cache, takes minutes; later ones take seconds)\n", len(procs), binDir)
	args := []string{"build", "-json", "-v", "-o", binDir + string(filepath.Separator)}
	for _, p := range procs {
		args = append(args, p.pkg)
	}
	// The go command's stderr and the report write to out from two goroutines.
	out = &lockedWriter{w: out}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = env
	cmd.Stderr = out
	events, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	b := newBuildReport(out, binDir, procs, start)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("launcher: build: %w", err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(events)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, events)
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			if !ok {
				done = true
				break
			}
			b.event(line)
		case <-tick.C:
			b.poll()
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("launcher: build: %w", err)
	}
	b.poll()
	b.finish()
	return nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// buildReport is what Build says of one go build.
type buildReport struct {
	out      io.Writer
	binDir   string
	start    time.Time
	width    int
	pending  []*Process
	before   map[string]time.Time
	compiled int
	// said is when the last line was written, so progress lines come only in silences.
	said time.Time
}

func newBuildReport(out io.Writer, binDir string, procs []*Process, start time.Time) *buildReport {
	b := &buildReport{out: out, binDir: binDir, start: start, pending: slices.Clone(procs), before: map[string]time.Time{}, said: start}
	for _, p := range procs {
		b.width = max(b.width, len(p.Name))
		b.before[p.Name] = b.modTime(p)
	}
	return b
}

func (b *buildReport) modTime(p *Process) time.Time {
	info, err := os.Stat(filepath.Join(b.binDir, p.Name))
	if err != nil {
		return time.Time{}
	}
	return info.ModTime()
}

// buildEvent is one line of go build -json.
type buildEvent struct {
	ImportPath string
	Action     string
	Output     string
}

// event handles a line of go build's output: -v's line naming a package is counted, any other
// output (a compile error) passes through.
func (b *buildReport) event(line string) {
	var e buildEvent
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		fmt.Fprintln(b.out, line)
		return
	}
	switch {
	case e.Action != "build-output":
	case e.ImportPath != "" && e.Output == e.ImportPath+"\n":
		b.compiled++
	default:
		fmt.Fprint(b.out, e.Output)
	}
}

// poll reports the programs whose binary has landed, or else, after a silence, how many
// packages are compiled.
func (b *buildReport) poll() {
	b.pending = slices.DeleteFunc(b.pending, func(p *Process) bool {
		if b.modTime(p).Equal(b.before[p.Name]) {
			return false
		}
		b.say("basalt:   built %-*s %s", b.width, p.Name, b.elapsed())
		return true
	})
	if len(b.pending) == 0 || time.Since(b.said) < buildProgressEvery {
		return
	}
	line := fmt.Sprintf("basalt:   %d packages compiled, %s", b.compiled, b.elapsed())
	if len(b.pending) < len(b.before) {
		names := make([]string, len(b.pending))
		for i, p := range b.pending {
			names[i] = p.Name
		}
		line += "; still building " + strings.Join(names, ", ")
	}
	b.say("%s", line)
}

// finish reports what poll has not and the totals.
func (b *buildReport) finish() {
	for _, p := range b.pending {
		b.say("basalt:   built %-*s %s", b.width, p.Name, b.elapsed())
	}
	b.say("basalt: built %d programs in %s; %d packages compiled, the others were in Go's build cache", len(b.before), b.elapsed(), b.compiled)
}

func (b *buildReport) say(format string, args ...any) {
	fmt.Fprintf(b.out, format+"\n", args...)
	b.said = time.Now()
}

func (b *buildReport) elapsed() time.Duration {
	d := time.Since(b.start)
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// Environment is the environment of every launched process: base, plus the data folder, the
// generated secrets, the bootstrap administrator and, on the embedded default, the static
// discovery table.
func Environment(base []string, procs []*Process, dataDir string) ([]string, error) {
	env := append([]string{}, base...)
	env = append(env, "BASALT_DATA_DIR="+dataDir)
	secrets, err := Secrets(dataDir, base)
	if err != nil {
		return nil, err
	}
	env = append(env, secrets...)
	if !hasEnv(base, "BASALT_ADMIN_EMAIL") {
		env = append(env, "BASALT_ADMIN_EMAIL="+DefaultAdminEmail)
	}
	if !hasEnv(base, "CONSUL_HTTP_ADDR") {
		var table []string
		for _, p := range procs {
			table = append(table, p.Name+"="+p.URL)
		}
		env = append(env, "BASALT_STATIC_ENDPOINTS="+strings.Join(table, ";"))
	}
	if !hasEnv(base, "BASALT_LOG_FORMAT") {
		env = append(env, "BASALT_LOG_FORMAT=text")
	}
	return env, nil
}

func hasEnv(env []string, key string) bool {
	_, ok := lookupEnv(env, key)
	return ok
}

// lookupEnv returns the last non-empty value of key in env.
func lookupEnv(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, v != ""
		}
	}
	return val, found
}

// Start runs the process's binary from binDir with env, listening on its URL. The first Start
// after AssignPorts hands the process the sockets bound for it and closes the launcher's own
// copies, so that the ports close when the process exits; a later Start (after Stop) lets the
// process bind its addresses itself, as every Start does where sockets cannot be handed down
// (listen.CanHand).
func (p *Process) Start(binDir string, env []string, logs *Logs) error {
	defer p.release()
	cmd := exec.Command(filepath.Join(binDir, p.Name))
	// An empty BASALT_LISTEN_FDS overrides one the launcher itself may have inherited.
	var inherited listen.Inherited
	if !listen.CanHand {
		// The process binds its addresses itself, once the launcher has let go of them.
		p.release()
	}
	if len(p.held) > 0 {
		var err error
		if inherited, err = listen.Hand(cmd, p.held); err != nil {
			return fmt.Errorf("launcher: start %s: %w", p.Name, err)
		}
		defer func() {
			for _, f := range cmd.ExtraFiles {
				f.Close()
			}
		}()
	}
	cmd.Env = append(append(append([]string{}, env...), p.env...),
		"BASALT_LISTEN_ADDR="+strings.TrimPrefix(p.URL, "http://"),
		"BASALT_LISTEN_FDS="+inherited.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	// Its own process group keeps a terminal's Ctrl-C away from the process, so the launcher
	// stops everything in order; Bind stops it even if the launcher is killed.
	childproc.Bind(cmd, syscall.SIGTERM, childproc.OwnGroup())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("launcher: start %s: %w", p.Name, err)
	}
	r := &run{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	p.run.Store(r)
	var copied sync.WaitGroup
	copied.Go(func() { logs.copyLines(p.Name, stdout) })
	go func() {
		copied.Wait()
		r.err = cmd.Wait()
		close(r.done)
	}()
	return nil
}

// PID is the process id of the latest start, 0 before the first.
func (p *Process) PID() int {
	if r := p.run.Load(); r != nil {
		return r.pid
	}
	return 0
}

// release closes the sockets still held for the process.
func (p *Process) release() {
	for _, ln := range p.held {
		ln.Close()
	}
	p.held = nil
}

// Running reports whether the process was started and has not exited.
func (p *Process) Running() bool {
	r := p.run.Load()
	if r == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Err is how the latest start ended; nil while it runs or before the first start.
func (p *Process) Err() error {
	r := p.run.Load()
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits up to timeout, then kills. It returns the process's exit error.
func (p *Process) Stop(timeout time.Duration) error {
	if !p.Running() {
		p.release()
		return p.Err()
	}
	r := p.run.Load()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		_ = r.cmd.Process.Kill()
		<-r.done
		return fmt.Errorf("%s did not stop within %s and was killed", p.Name, timeout)
	}
}

// WaitReady waits until every process answers /readyz, failing early when one exits.
func WaitReady(ctx context.Context, procs []*Process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	pending := slices.Clone(procs)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		for _, p := range pending {
			if !p.Running() {
				return fmt.Errorf("launcher: %s exited during start-up: %v", p.Name, p.Err())
			}
		}
		select {
		case <-ctx.Done():
			names := make([]string, len(pending))
			for i, p := range pending {
				names[i] = p.Name
			}
			return fmt.Errorf("launcher: not ready within %s: %s", timeout, strings.Join(names, ", "))
		case <-tick.C:
		}
		pending = slices.DeleteFunc(pending, func(p *Process) bool { return Ready(client, p.URL) })
	}
	return nil
}

// Ready reports whether the process serving at url answers its /readyz with 200, within
// client's timeout.
func Ready(client *http.Client, url string) bool {
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// StopAll stops every running process at once and reports those that did not exit cleanly.
func StopAll(procs []*Process, timeout time.Duration) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, p := range procs {
		wg.Go(func() {
			if err := p.Stop(timeout); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func writeState(path string, procs []*Process) error {
	states := make([]State, len(procs))
	for i, p := range procs {
		states[i] = State{Name: p.Name, URL: p.URL, PID: p.PID(), AdminURL: p.AdminURL}
	}
	b, err := json.MarshalIndent(map[string]any{"processes": states}, "", "  ")
	if err != nil {
		return err
	}
	// Each writer has its own temporary file: supervisors of two processes may write at once.
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadState reads the state file of a running launcher.
func ReadState(dataDir string) (map[string]State, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, StateFile))
	if err != nil {
		return nil, err
	}
	var st struct {
		Processes []State `json:"processes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	out := make(map[string]State, len(st.Processes))
	for _, p := range st.Processes {
		out[p.Name] = p
	}
	return out, nil
}

func printReady(o Options, env []string, procs []*Process, console, docs string) {
	w := o.Out
	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "basalt: ready")
	mode := "embedded default (SQLite under " + o.DataDir + ", static discovery)"
	if hasEnv(o.Env, "DATABASE_URL") && hasEnv(o.Env, "CONSUL_HTTP_ADDR") {
		mode = "real parts (PostgreSQL schemas, Consul)"
	}
	fmt.Fprintln(w, "  mode:", mode)
	width := len("console")
	for _, p := range procs {
		width = max(width, len(p.Name))
	}
	for _, p := range procs {
		if p.Name != "gateway" {
			fmt.Fprintf(w, "  %-*s %s   (metrics: %s/metrics)\n", width, p.Name, p.URL, p.AdminURL)
		}
	}
	for _, p := range procs {
		if p.Name == "gateway" {
			fmt.Fprintf(w, "  %-*s %s   <- call the platform here (metrics: %s/metrics)\n", width, p.Name, p.URL, p.AdminURL)
		}
	}
	if console != "" {
		fmt.Fprintf(w, "  %-*s %s   <- open it in a browser\n", width, "console", console)
	} else {
		fmt.Fprintf(w, "  %-*s not built (go tool task console:build, or go tool task up, builds it)\n", width, "console")
	}
	if docs != "" {
		fmt.Fprintf(w, "  %-*s %s   <- the REST reference (the OpenAPI document: %s)\n", width, "docs", docs, strings.TrimSuffix(docs, "/docs/")+"/openapi.json")
	} else {
		fmt.Fprintf(w, "  %-*s not built (go tool task apidocs:build, or go tool task up, builds it)\n", width, "docs")
	}
	email, _ := lookupEnv(env, "BASALT_ADMIN_EMAIL")
	password, _ := lookupEnv(env, "BASALT_ADMIN_PASSWORD")
	source := "from BASALT_ADMIN_PASSWORD"
	if !hasEnv(o.Env, "BASALT_ADMIN_PASSWORD") {
		source = "generated; kept in " + filepath.Join(o.DataDir, SecretsFile)
	}
	fmt.Fprintf(w, "  administrator: %s / %s (%s)\n", email, password, source)
	fmt.Fprintln(w, "  stop with Ctrl-C")
	fmt.Fprintln(w, "")
}

// Logs writes whole lines from several processes, each prefixed with its name, so lines never
// interleave mid-way.
type Logs struct {
	mu    sync.Mutex
	out   io.Writer
	width int
}

// NewLogs returns a writer of the processes' lines to out.
func NewLogs(out io.Writer, procs []*Process) *Logs {
	w := 0
	for _, p := range procs {
		w = max(w, len(p.Name))
	}
	return &Logs{out: out, width: w}
}

func (w *Logs) copyLines(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		w.mu.Lock()
		fmt.Fprintf(w.out, "%-*s | %s\n", w.width, name, sc.Text())
		w.mu.Unlock()
	}
}
