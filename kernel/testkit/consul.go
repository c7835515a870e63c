package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/childproc"
)

var (
	consulOnce sync.Once
	consulAddr string
	consulErr  error
)

// Consul returns the HTTP address (127.0.0.1:port) of this test package's Consul dev agent,
// started on first use and stopped when the package's tests end.
func Consul(t testing.TB) string {
	t.Helper()
	consulOnce.Do(func() {
		var agent *ConsulAgent
		agent, consulErr = startConsul()
		if consulErr == nil {
			consulAddr = agent.addr
			atExit(t, agent.Stop)
		}
	})
	Require(t, "Consul", consulErr)
	return consulAddr
}

// ConsulBinary returns the pinned Consul binary's path.
func ConsulBinary() (string, error) {
	if bin := Env().ConsulBin; bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("BASALT_CONSUL_BIN: %w", err)
		}
		return bin, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".bin", "consul")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s is missing; build it with `go tool task consul:build`", bin)
	}
	return bin, nil
}

// ConsulAgent is a Consul dev agent of a test's own, which the test may stop and start again
// on the same ports: a restarted dev agent has forgotten every registration, as an agent
// that lost its state would have.
type ConsulAgent struct {
	bin   string
	ports []int
	addr  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	out     *bytes.Buffer
	dataDir string
}

// StartConsulAgent starts a Consul dev agent for t alone and stops it when t ends.
func StartConsulAgent(t testing.TB) *ConsulAgent {
	t.Helper()
	agent, err := startConsul()
	Require(t, "Consul", err)
	t.Cleanup(agent.Stop)
	return agent
}

// Addr is the agent's HTTP address (127.0.0.1:port); it stays the same across restarts.
func (a *ConsulAgent) Addr() string { return a.addr }

// Stop stops the agent and waits for it to exit; it is a no-op on a stopped agent.
func (a *ConsulAgent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
}

// Start starts a stopped agent again on its ports, with no state, and waits for it to lead.
func (a *ConsulAgent) Start(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		t.Fatal("testkit: the Consul agent is running")
	}
	var err error
	// A port of the stopped agent may be taken meanwhile by a short-lived connection; give it
	// a few tries before failing.
	for range 10 {
		if err = a.launch(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("testkit: restart consul: %v", err)
}

// Restart stops the agent and starts it again.
func (a *ConsulAgent) Restart(t testing.TB) {
	t.Helper()
	a.Stop()
	a.Start(t)
}

func startConsul() (*ConsulAgent, error) {
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	// Free ports can be taken by someone else between our probe and the agent's bind, so a
	// failed start is retried with new ports.
	var lastErr error
	for range 3 {
		a := &ConsulAgent{bin: bin, ports: make([]int, 4)}
		for i := range a.ports {
			if a.ports[i], err = PickPort(); err != nil {
				return nil, err
			}
		}
		a.addr = "127.0.0.1:" + strconv.Itoa(a.ports[0])
		if lastErr = a.launch(); lastErr == nil {
			return a, nil
		}
	}
	return nil, lastErr
}

// launch starts the agent process on a's ports and waits until it leads; a must be stopped.
func (a *ConsulAgent) launch() error {
	dataDir, err := os.MkdirTemp("", "basalt-consul-")
	if err != nil {
		return err
	}
	out := &bytes.Buffer{}
	cmd := exec.Command(a.bin, "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports[0]),
		"-server-port", strconv.Itoa(a.ports[1]),
		"-serf-lan-port", strconv.Itoa(a.ports[2]),
		"-serf-wan-port", strconv.Itoa(a.ports[3]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-data-dir", dataDir,
		"-log-level", "warn",
		"-node", "testkit-"+strconv.Itoa(os.Getpid()),
	)
	cmd.Stdout, cmd.Stderr = out, out
	// The agent must not outlive a test binary killed by a timeout.
	childproc.Bind(cmd, syscall.SIGKILL, childproc.OwnGroup())
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return fmt.Errorf("start consul: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		os.RemoveAll(dataDir)
		close(done)
	}()
	a.cmd, a.done, a.out, a.dataDir = cmd, done, out, dataDir
	if err := a.waitForLeader(30 * time.Second); err != nil {
		a.stopLocked()
		return fmt.Errorf("%w\nconsul output:\n%s", err, out.String())
	}
	return nil
}

// waitForLeader waits until the agent has elected itself leader and can take registrations.
func (a *ConsulAgent) waitForLeader(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			return errors.New("consul exited during start-up")
		default:
		}
		resp, err := client.Get("http://" + a.addr + "/v1/status/leader")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && len(bytes.Trim(body, "\" \n")) > 0 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("consul did not elect a leader within %s", timeout)
}

func (a *ConsulAgent) stopLocked() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = childproc.SignalGroup(a.cmd.Process, syscall.SIGKILL)
		<-a.done
	}
	a.cmd = nil
}
