package childproc

import "syscall"

func attr(sig syscall.Signal, s settings) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: sig, Setpgid: s.group}
}
