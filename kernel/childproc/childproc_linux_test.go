package childproc_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/childproc"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// parentEnv makes the test binary a parent that starts a child ("sleep") as the variable's
// value says, prints the child's pid and waits to be killed.
const parentEnv = "CHILDPROC_TEST_PARENT"

func TestMain(m *testing.M) { testkit.Main(m, testkit.AsChild(parentEnv, runParent)) }

func runParent(mode string) int {
	cmd := exec.Command("sleep", "300")
	switch mode {
	case "bound":
		childproc.Bind(cmd, syscall.SIGKILL)
	case "bound-group":
		childproc.Bind(cmd, syscall.SIGKILL, childproc.OwnGroup())
	}
	if err := cmd.Start(); err != nil {
		return 1
	}
	os.Stdout.WriteString(strconv.Itoa(cmd.Process.Pid) + "\n")
	time.Sleep(time.Hour)
	return 0
}

func TestBind(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Fatal("sleep is needed to stand in for a child process")
	}
	for _, tc := range []struct {
		mode     string
		survives bool
		ownGroup bool
	}{
		{mode: "unbound", survives: true},
		{mode: "bound"},
		{mode: "bound-group", ownGroup: true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			parent := exec.Command(os.Args[0])
			parent.Env = append(os.Environ(), parentEnv+"="+tc.mode)
			out, err := parent.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := parent.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				_ = parent.Process.Kill()
				t.Fatalf("read the child's pid: %v", err)
			}
			child, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })

			pgid, err := syscall.Getpgid(child)
			if err != nil {
				t.Fatal(err)
			}
			if got := pgid == child; got != tc.ownGroup {
				t.Errorf("child leads its own process group: %t, want %t", got, tc.ownGroup)
			}

			_ = parent.Process.Kill()
			_ = parent.Wait()
			if tc.survives {
				if !running(child) {
					t.Fatal("a child started without Bind died with its parent, so this test cannot tell Bind's effect")
				}
				return
			}
			// The kernel signals the child as its parent exits; the bound only keeps a broken
			// build from hanging the test.
			for deadline := time.Now().Add(30 * time.Second); running(child); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the child outlived its parent")
				}
			}
		})
	}
}

// running reports whether pid is a live process: neither gone nor a zombie left for a parent
// that no longer exists (a container's first process may never reap it).
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	// The state follows the command, which is in parentheses and may itself hold spaces.
	rest := stat[strings.LastIndexByte(string(stat), ')')+1:]
	fields := strings.Fields(string(rest))
	return len(fields) == 0 || fields[0] != "Z"
}
