//go:build unix && !linux

package childproc

import "syscall"

// attr cannot ask for sig: only Linux signals a child when its parent dies.
func attr(_ syscall.Signal, s settings) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: s.group}
}
