package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/basaltplatform/basalt/devtools/internal/loadgen"
)

// instructionConns is how many connections carry the counted requests. Instructions per
// request barely depend on it; a few connections make the gateway's and nginx's pools and
// per-connection memory work as they do under load.
const instructionConns = 8

// instructionRun is what countInstructions starts its processes from.
type instructionRun struct {
	self, gateway, nginx, dir, jwks string
	request                         func(base string) loadgen.Request
}

// countInstructions counts, with valgrind's callgrind, the instructions each process runs in
// user space per request: the gateway's and nginx's (one worker) with the service outside
// callgrind, then the service's behind each. A count is the same for the same binaries and
// requests whatever else the machine does, where the throughput of one phase moves by ten per
// cent or more from the next on a shared machine; it leaves out the kernel's work and what
// waiting costs, which only timing shows. The Go processes run with GOGC=off, so that when the
// collector happens to run does not move the count; allocations show in Go's own benchmarks.
// The processes that are not counted run as they do in the timed phases.
func countInstructions(ctx context.Context, o options, r instructionRun) error {
	valgrind, err := exec.LookPath("valgrind")
	if err != nil {
		return fmt.Errorf("valgrind is needed to count instructions (Debian: apt-get install valgrind): %w", err)
	}
	control, err := exec.LookPath("callgrind_control")
	if err != nil {
		return fmt.Errorf("callgrind_control comes with valgrind: %w", err)
	}
	n := o.instructions
	counted := 0
	// Dumps of an earlier run would answer for this one's.
	old, _ := filepath.Glob(filepath.Join(r.dir, "callgrind.*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	// under runs a command under callgrind, its counts written to the dir as name.
	under := func(name string) func(*exec.Cmd) {
		return func(cmd *exec.Cmd) {
			out := filepath.Join(r.dir, "callgrind."+name)
			log := filepath.Join(r.dir, "valgrind-"+name+".log")
			cmd.Args = append([]string{valgrind, "--tool=callgrind", "--callgrind-out-file=" + out, "--log-file=" + log}, cmd.Args...)
			cmd.Path = valgrind
			if cmd.Env == nil {
				cmd.Env = os.Environ()
			}
			// Go's preemption signal is one callgrind cannot follow.
			cmd.Env = append(cmd.Env, "GOGC=off", "GODEBUG=asyncpreemptoff=1")
		}
	}
	// measure sends n requests to base after a warm-up, with callgrind's counters of pid zeroed
	// first, and returns the instructions per request of the dump it then asks for.
	measure := func(name string, pid int, base string) (float64, error) {
		req := r.request(base)
		if failed, first, err := loadgen.Send(ctx, req, instructionConns, max(n/5, instructionConns)); err != nil || failed > 0 {
			return 0, fmt.Errorf("%s: warm-up: %d failed (%v), %w", name, failed, first, err)
		}
		if out, err := exec.CommandContext(ctx, control, "-z", strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", name, out, err)
		}
		if failed, first, err := loadgen.Send(ctx, req, instructionConns, n); err != nil || failed > 0 {
			return 0, fmt.Errorf("%s: %d failed (%v), %w", name, failed, first, err)
		}
		counted++
		trigger := fmt.Sprintf("%s-%d", name, counted)
		if out, err := exec.CommandContext(ctx, control, "-d", trigger, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", name, out, err)
		}
		total, err := dumpTotal(r.dir, trigger)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return float64(total) / float64(n), nil
	}

	fmt.Printf("counting instructions per request with callgrind, %d requests over %d connections each\n", n, instructionConns)
	up, upURL, err := startUpstream(ctx, r.self, r.jwks)
	if err != nil {
		return err
	}
	defer stopProcess(up)
	// proxy counts a proxy under callgrind, started on port by start, ready at its health path.
	proxy := func(name string, start func(port int) (*exec.Cmd, error), health string) (float64, error) {
		ports, err := pickPorts(1)
		if err != nil {
			return 0, err
		}
		port := ports[0]
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		cmd, err := start(port)
		if err != nil {
			return 0, err
		}
		defer killProcess(cmd)
		if err := waitReady(ctx, base+health); err != nil {
			return 0, err
		}
		return measure(name, cmd.Process.Pid, base)
	}
	gateway, err := proxy("gateway", func(port int) (*exec.Cmd, error) {
		return startGateway(ctx, r.gateway, r.dir, "gateway-callgrind", port, upURL, false, under("gateway"))
	}, "/readyz")
	if err != nil {
		return err
	}
	nginx, err := proxy("nginx", func(port int) (*exec.Cmd, error) {
		return startNginx(ctx, r.nginx, r.dir, "nginx-callgrind", port, upURL, true, under("nginx"))
	}, "/healthz")
	if err != nil {
		return err
	}
	stopProcess(up)

	svc, svcURL, err := startUpstream(ctx, r.self, r.jwks, under("service"))
	if err != nil {
		return err
	}
	defer killProcess(svc)
	ports, err := pickPorts(2)
	if err != nil {
		return err
	}
	gwPort, ngPort := ports[0], ports[1]
	gwURL, ngURL := fmt.Sprintf("http://127.0.0.1:%d", gwPort), fmt.Sprintf("http://127.0.0.1:%d", ngPort)
	gw, err := startGateway(ctx, r.gateway, r.dir, "gateway-native", gwPort, svcURL, false)
	if err != nil {
		return err
	}
	defer stopProcess(gw)
	ng, err := startNginx(ctx, r.nginx, r.dir, "nginx-native", ngPort, svcURL, false)
	if err != nil {
		return err
	}
	defer stopProcess(ng)
	if err := waitReady(ctx, gwURL+"/readyz"); err != nil {
		return err
	}
	if err := waitReady(ctx, ngURL+"/healthz"); err != nil {
		return err
	}
	behindGateway, err := measure("service behind the gateway", svc.Process.Pid, gwURL)
	if err != nil {
		return err
	}
	behindNginx, err := measure("service behind nginx", svc.Process.Pid, ngURL)
	if err != nil {
		return err
	}
	fmt.Printf("\ninstructions per request in user space (callgrind)\n")
	fmt.Printf("%-28s %9.0f\n%-28s %9.0f\n", "gateway", gateway, "nginx, one worker", nginx)
	fmt.Printf("%-28s %9.0f\n%-28s %9.0f\n", "service behind the gateway", behindGateway, "service behind nginx", behindNginx)
	fmt.Printf("gateway/nginx: %.2fx; gateway and its service/nginx and its service: %.3fx\n",
		gateway/nginx, (gateway+behindGateway)/(nginx+behindNginx))
	return nil
}

// killProcess ends a process under callgrind at once: its counts are dumped already, and a
// Go program's signal handling on its way out is what callgrind cannot follow.
func killProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// dumpTotal returns the instruction count of the callgrind dump in dir whose trigger was
// named trigger.
func dumpTotal(dir, trigger string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "callgrind.*"))
	if err != nil {
		return 0, err
	}
	for _, name := range files {
		total, found, err := readDump(name, trigger)
		if err != nil {
			return 0, err
		}
		if found {
			return total, nil
		}
	}
	return 0, fmt.Errorf("no callgrind dump named %q in %s", trigger, dir)
}

// readDump reads the total of a callgrind dump file when its trigger is the one asked for.
func readDump(name, trigger string) (total int64, found bool, err error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	mine := false
	for sc.Scan() {
		line := sc.Text()
		if t, ok := strings.CutPrefix(line, "desc: Trigger: "); ok {
			if mine = t == "dump "+trigger; !mine {
				return 0, false, nil
			}
		}
		for _, prefix := range []string{"summary: ", "totals: "} {
			if v, ok := strings.CutPrefix(line, prefix); ok && mine {
				total, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				return total, err == nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	if mine {
		return 0, false, errors.New(name + ": no total")
	}
	// A file without a trigger is one a process did not finish writing.
	return 0, false, nil
}
