//go:build !unix

package childproc

import (
	"os"
	"syscall"
)

// SignalGroup signals p alone, since there are no process groups here; a kill is the only
// signal Windows delivers.
func SignalGroup(p *os.Process, sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		return p.Kill()
	}
	return p.Signal(sig)
}
