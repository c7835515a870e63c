//go:build unix

// The supervision test kills a process with a signal.

package launcher

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestSupervisedProcessesAreRestartedUntilTheContextEnds(t *testing.T) {
	t.Parallel()
	procs := []*Process{{Name: "blog"}, {Name: "identity"}}
	if err := AssignPorts(procs, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = StopAll(procs, 10*time.Second) })
	dir, env, logs := startStandIns(t, procs)
	var out testkit.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	supervised := Supervise(ctx, procs, &out, func(p *Process) error { return p.Start(dir, env, logs) })
	t.Cleanup(func() { cancel(); supervised.Wait() })

	blog, identity := procs[0], procs[1]
	killed, untouched := blog.PID(), identity.PID()
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the killed process runs again under a new pid and serves", func() bool {
		if !blog.Running() || blog.PID() == killed {
			return false
		}
		return WaitReady(context.Background(), procs[:1], time.Second) == nil
	})
	if got := answer(t, blog.URL); got != strconv.Itoa(blog.PID()) {
		t.Fatalf("blog answers from pid %s, want the restarted %d", got, blog.PID())
	}
	if identity.PID() != untouched || !identity.Running() {
		t.Fatal("the process that did not exit was restarted")
	}
	for _, want := range []string{"basalt: blog exited (signal: killed); restarting it in 500ms", "basalt: blog restarted (pid " + strconv.Itoa(blog.PID()) + ")"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the launcher's output lacks %q:\n%s", want, out.String())
		}
	}

	// Once the context ends nothing is restarted: a stop is a stop.
	cancel()
	supervised.Wait()
	if err := blog.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "restarted") != 1 {
		t.Fatalf("a process was restarted after supervision ended:\n%s", out.String())
	}
}
