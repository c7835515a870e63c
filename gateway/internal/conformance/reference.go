package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/basaltplatform/basalt/kernel/childproc"
)

// reference is the suite's reference server running as a child process, serving the
// conformance service in plain text on Addr.
type reference struct {
	cmd *exec.Cmd
	// Addr is the host:port the reference server listens on.
	Addr string
	// done is closed once the process has exited; err is then its Wait error.
	done chan struct{}
	err  error
}

// startReference starts argv as a reference server, gives it req on its stdin and waits at
// most timeout for its ServerCompatResponse. The child's stderr goes to stderr.
//
// The reference server reads its request, starts listening, answers on stdout and then serves
// until it is signalled; it does not watch its stdin, so closing it after the request is safe.
func startReference(argv []string, req *ServerCompatRequest, stderr io.Writer, timeout time.Duration) (*reference, error) {
	if len(argv) == 0 {
		return nil, errors.New("conformance: no reference server command")
	}
	var in bytes.Buffer
	if err := WriteMessage(&in, req.Marshal()); err != nil {
		return nil, err
	}
	// The answer is read from a pipe of our own rather than from Cmd.StdoutPipe: Wait closes
	// that one, and Wait runs concurrently with the read here, to notice an early exit.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	defer outW.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = &in
	cmd.Stdout = outW
	cmd.Stderr = stderr
	// The child must never outlive the wrapper, whatever way the wrapper ends.
	childproc.Bind(cmd, syscall.SIGKILL)
	// Copying stdin and stderr must not hold Wait up after the process exited.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		outR.Close()
		return nil, fmt.Errorf("conformance: starting the reference server: %w", err)
	}
	// Only the child may hold the write end now, so the read below ends when the child does.
	outW.Close()
	ref := &reference{cmd: cmd, done: make(chan struct{})}
	go func() {
		ref.err = cmd.Wait()
		close(ref.done)
	}()

	type answer struct {
		resp ServerCompatResponse
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		var a answer
		b, err := ReadMessage(outR)
		if err == nil {
			err = a.resp.Unmarshal(b)
		}
		a.err = err
		answered <- a
		// Nothing more is expected on stdout; reading on keeps a chatty child from blocking on
		// a full pipe, and ends when the child exits.
		_, _ = io.Copy(io.Discard, outR)
		outR.Close()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case a := <-answered:
		if a.err != nil {
			ref.Stop(time.Second)
			return nil, fmt.Errorf("conformance: reading the reference server's answer: %w (exit: %v)", a.err, ref.exitErr())
		}
		if a.resp.Port == 0 {
			ref.Stop(time.Second)
			return nil, errors.New("conformance: the reference server answered without a port")
		}
		host := a.resp.Host
		if host == "" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		ref.Addr = net.JoinHostPort(host, strconv.FormatUint(uint64(a.resp.Port), 10))
		return ref, nil
	case <-timer.C:
		ref.Stop(time.Second)
		return nil, fmt.Errorf("conformance: the reference server did not answer within %s", timeout)
	}
}

// Done is closed when the reference server has exited.
func (r *reference) Done() <-chan struct{} { return r.done }

// exitErr is the process's Wait error once it has exited, and nil before.
func (r *reference) exitErr() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Stop asks the reference server to end with SIGTERM, as the runner ends servers, kills it
// if it has not ended within grace, and waits for it. An exit by SIGTERM is the expected
// outcome, and so is SIGINT: a terminal's ^C reaches the whole process group. Stop reports
// any other failure of the process.
func (r *reference) Stop(grace time.Duration) error {
	select {
	case <-r.done:
	default:
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-r.done:
		case <-timer.C:
			_ = r.cmd.Process.Kill()
			<-r.done
			return fmt.Errorf("conformance: the reference server ignored SIGTERM for %s and was killed", grace)
		}
	}
	if terminated(r.err) {
		return nil
	}
	return r.err
}

// terminated reports whether err is the Wait error of a process that SIGTERM or SIGINT ended.
func terminated(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGINT)
}
