package conformance

import (
	"os/exec"
	"syscall"
)

// bindToParent makes the kernel kill the child when this process dies, even by SIGKILL, so
// a wrapper that never got to stop its reference server leaves no orphan serving a port.
func bindToParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
