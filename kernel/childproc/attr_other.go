//go:build !unix

package childproc

import "syscall"

// attr has nothing to set where there are neither parent-death signals nor process groups.
func attr(syscall.Signal, settings) *syscall.SysProcAttr {
	return nil
}
