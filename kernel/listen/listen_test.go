//go:build unix

// Handing sockets down to a child is a Unix facility (testkit.InheritedSocket).

package listen_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/listen"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// childEnv makes the test binary a child that serves one HTTP request on the inherited socket
// named by the variable's value (address, then the Inherited form after a space).
const childEnv = "LISTEN_TEST_CHILD"

func TestMain(m *testing.M) { testkit.Main(m, testkit.AsChild(childEnv, runChild)) }

func runChild(spec string) int {
	addr, form, _ := strings.Cut(spec, " ")
	in, err := listen.Parse(form)
	if err != nil {
		return 2
	}
	ln, err := in.Listen(addr)
	if err != nil {
		return 3
	}
	served := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "pid "+strconv.Itoa(os.Getpid()))
		close(served)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	select {
	case <-served:
	case <-time.After(time.Minute):
		return 4
	}
	// Shutdown returns once the answer is written and its connection closed.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return 5
	}
	return 0
}

func TestParse(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want listen.Inherited
		form string
	}{
		{"", nil, ""},
		{"127.0.0.1:7101=3", listen.Inherited{"127.0.0.1:7101": 3}, "127.0.0.1:7101=3"},
		{"[::1]:9080=4,127.0.0.1:7101=3", listen.Inherited{"127.0.0.1:7101": 3, "[::1]:9080": 4}, "127.0.0.1:7101=3,[::1]:9080=4"},
		{"localhost:80=10", listen.Inherited{"localhost:80": 10}, "localhost:80=10"},
	}
	for _, tt := range good {
		got, err := listen.Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
		}
		for addr, fd := range tt.want {
			if got[addr] != fd {
				t.Errorf("Parse(%q)[%s] = %d, want %d", tt.in, addr, got[addr], fd)
			}
		}
		if s := got.String(); s != tt.form {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, s, tt.form)
		}
	}
	bad := []struct{ in, msg string }{
		{"127.0.0.1:7101", "not address=descriptor"},
		{"127.0.0.1=3", "not host:port"},
		{"127.0.0.1:7101=x", "must be a number from 3 up"},
		{"127.0.0.1:7101=2", "must be a number from 3 up"},
		{"127.0.0.1:7101=-3", "must be a number from 3 up"},
		{"127.0.0.1:7101=3,127.0.0.1:7101=4", "given twice"},
		{"127.0.0.1:7101=3,127.0.0.1:7102=3", "given twice"},
		{"127.0.0.1:7101=3,", "not address=descriptor"},
	}
	for _, tt := range bad {
		if got, err := listen.Parse(tt.in); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.msg)
		}
	}
}

func bind(t *testing.T) (*net.TCPListener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener), ln.Addr().String()
}

func TestListenTakesTheInheritedSocket(t *testing.T) {
	t.Parallel()
	addr, in := testkit.InheritedSocket(t)
	got, err := in.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Addr().String() != addr {
		t.Fatalf("listening on %s, want %s", got.Addr(), addr)
	}
	// The port is still taken: the inherited socket is the one that holds it.
	if again, err := net.Listen("tcp", addr); err == nil {
		again.Close()
		t.Fatalf("a second listener took %s", addr)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := got.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}

func TestListenOpensANewSocketForAnotherAddress(t *testing.T) {
	t.Parallel()
	addr, in := testkit.InheritedSocket(t)
	got, err := in.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Addr().String() == addr {
		t.Fatalf("took the inherited socket for another address")
	}
	if err := syscall.Close(in[addr]); err != nil {
		t.Fatalf("the inherited descriptor was touched: %v", err)
	}
}

// TestListenRefusesASocketOfAnotherAddress is not parallel: it checks that descriptors are
// closed by closing them again, which must not meet a number another test reused meanwhile.
func TestListenRefusesASocketOfAnotherAddress(t *testing.T) {
	// socket returns the descriptor of a socket bound to a port of its own, and that port.
	socket := func() (int, int) {
		addr, in := testkit.InheritedSocket(t)
		_, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		return in[addr], n
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pipe, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	loopback := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	fd1, port1 := socket()
	fd2, port2 := socket()
	tests := []struct {
		name, addr string
		fd         int
		msg        string
	}{
		{"another port", loopback(port1%65535 + 1), fd1, "bound to " + loopback(port1)},
		{"another host", net.JoinHostPort("127.0.0.2", strconv.Itoa(port2)), fd2, "bound to " + loopback(port2)},
		{"not a socket", loopback(port1), pipe, "inherited descriptor"},
		{"not open", loopback(port1), 1 << 20, "inherited descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := listen.Inherited{tt.addr: tt.fd}.Listen(tt.addr)
			if err == nil {
				got.Close()
				t.Fatalf("listening on %s", got.Addr())
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want one with %q", err, tt.msg)
			}
			// Listen closed the descriptor whatever went wrong, so nothing leaks.
			if err := syscall.Close(tt.fd); !errors.Is(err, syscall.EBADF) {
				t.Fatalf("descriptor %d is still open after the refusal (close: %v)", tt.fd, err)
			}
		})
	}
	// An address by name cannot be compared with the socket's; only its port is.
	fd, port := socket()
	named := net.JoinHostPort("localhost", strconv.Itoa(port))
	got, err := listen.Inherited{named: fd}.Listen(named)
	if err != nil {
		t.Fatalf("named host: %v", err)
	}
	got.Close()
}

// TestHandKeepsThePortUntilTheChildServesIt runs a child process that serves on a socket the
// test bound and handed down, and checks that the port closes with the child once the parent
// gave up its own copy.
func TestHandKeepsThePortUntilTheChildServesIt(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ln, addr := bind(t)
	cmd := exec.Command(exe, "-test.run=^$")
	// A file the caller already passes keeps its place; the socket comes after it.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	cmd.ExtraFiles = []*os.File{devnull}
	in, err := listen.Hand(cmd, map[string]*net.TCPListener{addr: ln})
	if err != nil {
		t.Fatal(err)
	}
	if in[addr] != 4 || len(cmd.ExtraFiles) != 2 {
		t.Fatalf("handed %v with %d extra files, want %s=4 after the one file already there", in, len(cmd.ExtraFiles), addr)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+addr+" "+in.String())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range cmd.ExtraFiles[1:] {
		f.Close()
	}
	ln.Close()

	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "pid " + strconv.Itoa(cmd.Process.Pid); string(body) != want {
		t.Fatalf("answer %q, want %q", body, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the child exited", addr)
	}
}
