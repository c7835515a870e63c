// Package childproc ties helper processes to the process that starts them: a test's Consul
// agent, the launcher's services, the conformance suite's reference server. On Linux the
// kernel signals such a child when its parent dies, even by SIGKILL, so a test binary killed
// by its timeout or a launcher killed from outside leaves no orphan holding a port. Other
// systems have no such facility; there only the parent's own cleanup stops the child, and the
// code that needs it still builds, so a developer on macOS can run the platform and its tests,
// and the platform builds on Windows.
package childproc

import (
	"os/exec"
	"syscall"
)

// Option adjusts how Bind starts a child.
type Option func(*settings)

type settings struct {
	group bool
}

// OwnGroup starts the child in a process group of its own, which keeps a terminal's Ctrl-C
// away from it (the parent then stops its children in order) and lets the parent signal the
// child and everything it started as one. It has no effect on Windows.
func OwnGroup() Option {
	return func(s *settings) { s.group = true }
}

// Bind sets cmd, before it starts, so that the child receives sig when this process dies,
// where the operating system supports that (Linux).
func Bind(cmd *exec.Cmd, sig syscall.Signal, opts ...Option) {
	var s settings
	for _, opt := range opts {
		opt(&s)
	}
	cmd.SysProcAttr = attr(sig, s)
}
