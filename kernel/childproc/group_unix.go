//go:build unix

package childproc

import (
	"os"
	"syscall"
)

// SignalGroup sends sig to the process group p leads (see OwnGroup): p and what it started.
func SignalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
