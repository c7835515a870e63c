package main

import (
	"bytes"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// listenEnv makes the test binary a child that listens on the address it names and exits 0 when
// it could, 1 when it could not, and 3 when it is asked to.
const listenEnv = "PORTGUARD_TEST_LISTEN"

func TestMain(m *testing.M) {
	testkit.Main(m, testkit.AsChild(listenEnv, func(addr string) int {
		if addr == "exit 3" {
			return 3
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return 1
		}
		ln.Close()
		return 0
	}))
}

// child runs the test binary as the guarded command, listening on addr.
func child(t *testing.T, ports, addr string) (int, string) {
	t.Helper()
	t.Setenv(listenEnv, addr)
	var out bytes.Buffer
	code := run([]string{"-ports", ports, "--", os.Args[0], "-test.run=^$"}, &out, &out)
	return code, out.String()
}

// The tests hold ports and set the environment, so they run one after the other.

func TestACommandCannotListenOnAGuardedPort(t *testing.T) {
	port := strconv.Itoa(testkit.FreePort(t))
	// Unguarded, the child listens on the port: the guarded runs below fail for the guard.
	if code, out := child(t, strconv.Itoa(testkit.FreePort(t)), "127.0.0.1:"+port); code != 0 {
		t.Fatalf("unguarded, the child could not listen on %s (status %d): %s", port, code, out)
	}
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port, "localhost:" + port} {
		if code, out := child(t, port, addr); code != 1 {
			t.Errorf("a command listening on %s under the guard of %s exited %d, want 1: %s", addr, port, code, out)
		}
	}
}

func TestAPortAnotherProcessHoldsStaysGuarded(t *testing.T) {
	// The platform running on the machine holds its ports on the loopback address; the guard
	// runs the tests all the same, and they still cannot listen there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, addr := range []string{"127.0.0.1:" + port, "[::1]:" + port} {
		if code, out := child(t, port, addr); code != 1 {
			t.Errorf("a command listening on %s beside another listener on 127.0.0.1 exited %d, want 1: %s", addr, code, out)
		}
	}
}

func TestTheCommandsStatusIsTheGuards(t *testing.T) {
	if code, out := child(t, strconv.Itoa(testkit.FreePort(t)), "exit 3"); code != 3 {
		t.Errorf("status %d, want the command's 3: %s", code, out)
	}
	var out bytes.Buffer
	if code := run([]string{"-ports", "8080,x", "--", "true"}, &out, &out); code != 2 {
		t.Errorf("a bad port list: status %d, want 2", code)
	}
	if code := run([]string{"-ports", "8080"}, &out, &out); code != 2 {
		t.Errorf("no command: status %d, want 2", code)
	}
}

func TestTheDefaultPortsAreThePlatforms(t *testing.T) {
	ports := launcher.FixedPorts()
	for _, want := range []int{8080, 9080, 7101} {
		if !slices.Contains(ports, want) {
			t.Errorf("the guarded ports %v leave out %d", ports, want)
		}
	}
}
