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
		var agent *consulAgent
		agent, consulErr = startConsul()
		if consulErr == nil {
			consulAddr = agent.addr
			atExit(t, agent.stop)
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

type consulAgent struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	out  *bytes.Buffer
}

func startConsul() (*consulAgent, error) {
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	// Free ports can be taken by someone else between our probe and the agent's bind, so a
	// failed start is retried with new ports.
	var lastErr error
	for range 3 {
		agent, err := tryConsul(bin)
		if err == nil {
			return agent, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryConsul(bin string) (*consulAgent, error) {
	ports := make([]int, 4)
	for i := range ports {
		p, err := PickPort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	dataDir, err := os.MkdirTemp("", "basalt-consul-")
	if err != nil {
		return nil, err
	}
	out := &bytes.Buffer{}
	cmd := exec.Command(bin, "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]),
		"-server-port", strconv.Itoa(ports[1]),
		"-serf-lan-port", strconv.Itoa(ports[2]),
		"-serf-wan-port", strconv.Itoa(ports[3]),
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
		return nil, fmt.Errorf("start consul: %w", err)
	}
	a := &consulAgent{addr: "127.0.0.1:" + strconv.Itoa(ports[0]), cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait()
		os.RemoveAll(dataDir)
		close(a.done)
	}()
	if err := a.waitForLeader(30 * time.Second); err != nil {
		a.stop()
		return nil, fmt.Errorf("%w\nconsul output:\n%s", err, out.String())
	}
	return a, nil
}

// waitForLeader waits until the agent has elected itself leader and can take registrations.
func (a *consulAgent) waitForLeader(timeout time.Duration) error {
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

func (a *consulAgent) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = childproc.SignalGroup(a.cmd.Process, syscall.SIGKILL)
		<-a.done
	}
}
