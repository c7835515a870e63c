// Package listen opens a process's listening sockets: anew, or from the parent process that
// bound them and handed them down as open files.
//
// A parent that chooses ports for its children (the launcher of `go tool task up`, the
// end-to-end tests) cannot check that a port is free, close it, and let the child bind it
// later: any other process may take the port in between, and two launchers running side by
// side did. Binding the port itself and handing the socket to the child keeps it taken from
// the moment it is chosen until the child serves on it. The child finds its socket by the
// address it was told to listen on, so a handed-down socket needs no other setting.
package listen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Inherited maps a listen address, exactly as the process is configured to listen on it, to
// the file descriptor of a socket the parent bound to that address. The zero value holds
// nothing, so Listen opens every socket anew.
type Inherited map[string]int

// firstFD is the descriptor of a child's first extra file: 0 to 2 are its standard streams.
const firstFD = 3

// Parse reads the form String writes: address=descriptor pairs separated by commas, such as
// "127.0.0.1:7101=3,127.0.0.1:9080=4". An empty string is no socket at all.
func Parse(s string) (Inherited, error) {
	if s == "" {
		return nil, nil
	}
	in := Inherited{}
	seen := map[int]bool{}
	for pair := range strings.SplitSeq(s, ",") {
		addr, fd, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not address=descriptor", pair)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%q is not host:port", addr)
		}
		n, err := strconv.Atoi(fd)
		if err != nil || n < firstFD {
			return nil, fmt.Errorf("descriptor %q of %s must be a number from %d up", fd, addr, firstFD)
		}
		if _, dup := in[addr]; dup {
			return nil, fmt.Errorf("address %s is given twice", addr)
		}
		if seen[n] {
			return nil, fmt.Errorf("descriptor %d is given twice", n)
		}
		in[addr], seen[n] = n, true
	}
	return in, nil
}

// String returns the form Parse reads, with the addresses in order.
func (in Inherited) String() string {
	addrs := make([]string, 0, len(in))
	for addr := range in {
		addrs = append(addrs, addr)
	}
	slices.Sort(addrs)
	var b strings.Builder
	for i, addr := range addrs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(addr)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(in[addr]))
	}
	return b.String()
}

// Listen returns a TCP listener on addr: the inherited socket for addr when there is one, or
// else a new one. An inherited socket must be a TCP listener bound to addr; anything else is
// an error rather than a quiet second socket, since the parent handed it down for addr and
// holds the port for it.
func (in Inherited) Listen(addr string) (net.Listener, error) {
	fd, ok := in[addr]
	if !ok {
		return net.Listen("tcp", addr)
	}
	f := os.NewFile(uintptr(fd), "inherited "+addr)
	if f == nil {
		return nil, fmt.Errorf("listen: inherited descriptor %d for %s is not valid", fd, addr)
	}
	// FileListener works on a duplicate, so the original is closed either way and a later
	// child of this process inherits nothing.
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listen: inherited descriptor %d for %s: %w", fd, addr, err)
	}
	if err := bound(ln.Addr(), addr); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen: inherited descriptor %d for %s: %w", fd, addr, err)
	}
	return ln, nil
}

// bound reports an error unless got is a TCP address that a listener configured for want
// could have: the same port (any, for port 0) and, when want names an IP, the same IP.
func bound(got net.Addr, want string) error {
	tcp, ok := got.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("the socket is not TCP but %s", got.Network())
	}
	host, port, err := net.SplitHostPort(want)
	if err != nil {
		return err
	}
	if port != "0" && port != strconv.Itoa(tcp.Port) {
		return fmt.Errorf("the socket is bound to %s", tcp)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap() != tcp.AddrPort().Addr().Unmap() {
		return fmt.Errorf("the socket is bound to %s", tcp)
	}
	return nil
}

// Hand arranges for cmd's process to inherit the sockets of lns, keyed by each listener's
// address, and returns what the child must be told (its String form, in the setting the child
// reads). It adds the sockets to cmd.ExtraFiles; the caller closes those files, and its
// listeners if it no longer needs them, once cmd has started, so that the socket lives only in
// the child and closes when the child exits. It fails with errors.ErrUnsupported where
// CanHand is false.
func Hand(cmd *exec.Cmd, lns map[string]*net.TCPListener) (Inherited, error) {
	if !CanHand {
		return nil, errors.ErrUnsupported
	}
	in := Inherited{}
	var files []*os.File
	for addr, ln := range lns {
		f, err := ln.File()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("listen: hand %s: %w", addr, err)
		}
		in[addr] = firstFD + len(cmd.ExtraFiles) + len(files)
		files = append(files, f)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, files...)
	return in, nil
}
