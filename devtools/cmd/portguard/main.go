// Command portguard runs a command while it holds the ports the platform takes on the embedded
// default (the gateway's 8080 and 9080, the services' from 7101), so that a test that listens on
// one of them fails wherever the tests run, as it would on a machine where `go tool task up` is
// running. `go tool task test` runs the tests under it:
//
//	portguard [-ports 8080,9080] -- go test ./...
//
// A test that binds a fixed port is found by what it does, whatever the address came from: a
// literal, a default configuration or a constant elsewhere. Each port is held on every
// interface; a port another process already listens on (the platform itself) is left to it.
// Before the command starts, the guard checks that listening on each port on the loopback
// addresses fails, so it cannot let through the tests it is there to catch.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, holds the ports and runs the command; it returns the command's exit status,
// or 2 when the guard could not do its part.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portguard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ports := fs.String("ports", joinPorts(launcher.FixedPorts()), "comma-separated ports to hold")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	command := fs.Args()
	if len(command) == 0 {
		fmt.Fprintln(stderr, "portguard: no command to run (portguard [-ports list] -- command args...)")
		return 2
	}
	list, err := parsePorts(*ports)
	if err != nil {
		fmt.Fprintln(stderr, "portguard:", err)
		return 2
	}
	held, err := hold(list)
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	if err != nil {
		fmt.Fprintln(stderr, "portguard:", err)
		return 2
	}

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	// Ctrl-C reaches the command with the rest of the terminal's process group; the guard waits
	// for it to end rather than dying first, and passes on a signal sent to the guard alone.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "portguard:", err)
		return 2
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-signals:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var exit *exec.ExitError
			switch {
			case err == nil:
				return 0
			case errors.As(err, &exit) && exit.ExitCode() >= 0:
				return exit.ExitCode()
			default:
				fmt.Fprintln(stderr, "portguard:", err)
				return 1
			}
		}
	}
}

// hold makes every port in ports unavailable to a listener on the loopback addresses and
// returns the listeners it opened. A port is held on every interface (IPv6 and IPv4) where it
// can be; where another process listens on it, the guard holds what that process leaves, and
// then checks that no listener on 127.0.0.1 or ::1 could take the port.
func hold(ports []int) ([]net.Listener, error) {
	var held []net.Listener
	for _, port := range ports {
		p := strconv.Itoa(port)
		ln, err := net.Listen("tcp", ":"+p)
		if err == nil {
			held = append(held, ln)
		} else {
			for _, host := range []string{"127.0.0.1", "::1"} {
				if ln, err := net.Listen("tcp", net.JoinHostPort(host, p)); err == nil {
					held = append(held, ln)
				}
			}
		}
		for _, host := range []string{"127.0.0.1", "::1"} {
			if !unavailable(net.JoinHostPort(host, p)) {
				return held, fmt.Errorf("port %d stays open to listeners on %s", port, host)
			}
		}
	}
	return held, nil
}

// unavailable reports whether listening on addr fails for a reason other than a missing
// address family or address (a machine without IPv6 has no ::1 to listen on).
func unavailable(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return false
	}
	return errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)
}

func parsePorts(s string) ([]int, error) {
	var ports []int
	for f := range strings.SplitSeq(s, ",") {
		port, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("-ports: %q is not a port", f)
		}
		ports = append(ports, port)
	}
	return ports, nil
}

func joinPorts(ports []int) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}
