// Package testkit gives tests the real infrastructure: a fresh PostgreSQL database per test
// package, dropped afterwards, and an ephemeral Consul dev agent on free loopback ports, run
// from the pinned binary.
//
// A package that uses either calls Main from its TestMain. Without the dependency a test is
// skipped on a developer machine and fails under CI=true, so a CI run can never pass by
// silently testing less.
package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/listen"
)

// Settings are testkit's own configuration, read through the config package like every other
// setting of the platform.
type Settings struct {
	// AdminURL is the PostgreSQL server test databases are created on.
	AdminURL string
	// ConsulBin is the Consul binary; empty means .bin/consul above the working directory.
	ConsulBin string
	// CI makes a missing dependency fail the test instead of skipping it.
	CI bool
}

var (
	settingsOnce sync.Once
	settings     Settings
	settingsErr  error
)

// Env returns testkit's settings.
func Env() Settings {
	settingsOnce.Do(func() {
		l := config.NewLoader("testkit", nil, os.LookupEnv)
		l.String(&settings.AdminURL, "", "BASALT_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server for test databases")
		l.String(&settings.ConsulBin, "", "BASALT_CONSUL_BIN", "", "Consul binary")
		l.Bool(&settings.CI, "", "CI", false, "fail instead of skipping when a dependency is missing")
		settingsErr = l.Load()
	})
	return settings
}

// Require stops the test when a dependency is missing: under CI it fails, elsewhere it skips.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Env().CI {
		t.Fatalf("%s is required under CI=true: %v", what, err)
	}
	t.Skipf("%s is not available (set CI=true to make this a failure): %v", what, err)
}

var (
	mainMu   sync.Mutex
	inMain   bool
	cleanups []func()
)

// MainOption configures Main.
type MainOption func(*mainOptions)

type mainOptions struct {
	leakCheck bool
	leakOpts  []goleak.Option
	childEnv  string
	child     func(value string) int
}

// AsChild lets the test binary serve as a helper process that tests start from it: when the
// environment variable env is set, Main runs child with its value instead of the tests and
// exits with the status child returns.
func AsChild(env string, child func(value string) int) MainOption {
	return func(o *mainOptions) { o.childEnv, o.child = env, child }
}

// CheckLeaks makes Main fail the package when goroutines are still running after the tests
// and the shared resources have been cleaned up. Use it in packages that start goroutines.
func CheckLeaks(opts ...goleak.Option) MainOption {
	return func(o *mainOptions) { o.leakCheck, o.leakOpts = true, opts }
}

// Main runs the package's tests, then drops its database and stops its Consul agent. Call it
// from TestMain: func TestMain(m *testing.M) { testkit.Main(m) }.
func Main(m *testing.M, opts ...MainOption) {
	var o mainOptions
	for _, opt := range opts {
		opt(&o)
	}
	if v := os.Getenv(o.childEnv); o.child != nil && v != "" {
		os.Exit(o.child(v))
	}
	mainMu.Lock()
	inMain = true
	mainMu.Unlock()
	code := m.Run()
	mainMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	mainMu.Unlock()
	if settingsErr != nil {
		fmt.Fprintln(os.Stderr, "testkit:", settingsErr)
		code = 1
	}
	if o.leakCheck && code == 0 {
		if err := goleak.Find(o.leakOpts...); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func atExit(t testing.TB, fn func()) {
	t.Helper()
	mainMu.Lock()
	defer mainMu.Unlock()
	if !inMain {
		fn()
		t.Fatal("testkit: call testkit.Main from the package's TestMain, so shared resources are cleaned up")
	}
	cleanups = append(cleanups, fn)
}

// Logger returns a logger that writes through t.Log, so output appears with the test that made
// it and only when it fails or -v is given.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// LogWriter returns a writer that passes each line to t.Log, for code that takes an io.Writer
// for its logs.
func LogWriter(t testing.TB) io.Writer { return testWriter{t} }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// FreePort returns a loopback TCP port that was free a moment ago, outside the range the kernel
// hands out on its own where it can tell (see PickPort).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := PickPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// InheritedSocket binds a loopback port and returns its address with the socket as a parent
// process would hand it down: a descriptor of its own, which the listener that takes it closes.
// The port stays taken throughout, so a server configured with both is known to serve on the
// handed-down socket: binding the address again would fail. Where sockets cannot be handed
// down (Windows), it returns the address, free again, and no socket, and the server listens
// anew.
func InheritedSocket(t testing.TB) (string, listen.Inherited) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, err := dupListener(ln.(*net.TCPListener))
	if errors.Is(err, errors.ErrUnsupported) {
		return ln.Addr().String(), nil
	}
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	return addr, listen.Inherited{addr: fd}
}

// PickPort picks a loopback TCP port below the kernel's ephemeral range that it could bind a
// moment ago, for a program that must name a port before the process that listens on it
// starts. The kernel hands out ports from the ephemeral range to every listener on port 0 and
// every outgoing connection, so between PickPort's answer and the caller's bind, another
// process could take such a port, or a test expecting nothing there could find a server. A
// port below the range is taken only by a program that names it, and picking it at random
// makes two processes unlikely to name the same one. Where the range cannot be read, the
// kernel picks.
func PickPort() (int, error) {
	if lo, hi, ok := belowEphemeral(); ok {
		for range 64 {
			port := lo + rand.IntN(hi-lo)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			_ = ln.Close()
			return port, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralRange is where Linux publishes the range it picks ephemeral ports from.
const ephemeralRange = "/proc/sys/net/ipv4/ip_local_port_range"

// belowEphemeral returns the ports PickPort picks from: from 10000 up to the ephemeral range's
// start, when that leaves at least a thousand.
func belowEphemeral() (lo, hi int, ok bool) {
	b, err := os.ReadFile(ephemeralRange)
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start < 11000 {
		return 0, 0, false
	}
	return 10000, start, true
}

// RepoRoot returns the repository root: the nearest folder above the working directory that
// holds go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testkit: no go.work above the working directory")
		}
		dir = parent
	}
}

// Eventually polls cond every interval until it returns true or timeout passes, then fails the
// test with msg. Use it for conditions another process makes true (a Consul health check),
// never as a substitute for synchronisation within the test.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not within %s: %s", timeout, msg)
		case <-tick.C:
		}
	}
}
