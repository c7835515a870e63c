//go:build unix

package testkit

import (
	"errors"
	"net"
	"syscall"
)

// running reports whether a process with pid exists on this machine.
func running(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// dupListener returns a descriptor of ln's socket of its own, close-on-exec.
func dupListener(ln *net.TCPListener) (int, error) {
	f, err := ln.File()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// The lock keeps a concurrent fork from inheriting the descriptor before it is marked
	// close-on-exec, as the standard library does for its own descriptors.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return 0, err
	}
	syscall.CloseOnExec(fd)
	return fd, nil
}
