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
)

// instructionConns is how many connections carry the counted requests. Instructions per
// request barely depend on it; a few connections make the gateway's and nginx's pools and
// per-connection memory work as they do under load.
const instructionConns = 8

// instructionRun is what countInstructions starts its processes from.
type instructionRun struct {
	self, gateway, nginx, dir, jwks string
	// load returns the driver of a protocol's call to the server at a base URL.
	load func(p protocol, base string) driver
}

// countInstructions counts, with valgrind's callgrind, the instructions each process runs in
// user space per request: the gateway's and nginx's (one worker) with the service outside
// callgrind, then the service's behind each, for each protocol. A count is the same for the
// same binaries and requests whatever else the machine does, where the throughput of one phase
// moves by ten per cent or more from the next on a shared machine; it leaves out the kernel's
// work and what waiting costs, which only timing shows. The Go processes run with GOGC=off, so
// that when the collector happens to run does not move the count; allocations show in Go's own
// benchmarks. The processes that are not counted run as they do in the timed phases.
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
	// measure sends n calls of p to base after a warm-up, with callgrind's counters of pid
	// zeroed first, and returns the instructions per request of the dump it then asks for.
	measure := func(name string, pid int, p protocol, base string) (float64, error) {
		name = p.name + ", " + name
		load := r.load(p, base)
		if failed, first, err := load.send(ctx, instructionConns, max(n/5, instructionConns)); err != nil || failed > 0 {
			return 0, fmt.Errorf("%s: warm-up: %d failed (%v), %w", name, failed, first, err)
		}
		if out, err := exec.CommandContext(ctx, control, "-z", strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", name, out, err)
		}
		if failed, first, err := load.send(ctx, instructionConns, n); err != nil || failed > 0 {
			return 0, fmt.Errorf("%s: %d failed (%v), %w", name, failed, first, err)
		}
		counted++
		trigger := fmt.Sprintf("count-%d", counted)
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
	type counts struct{ gateway, nginx, behindGateway, behindNginx float64 }
	result := make([]counts, len(o.protocols))
	// proxy counts a proxy under callgrind for each protocol: start starts it on the ports it
	// is given and returns the port that serves each protocol; health is its readiness path on
	// the HTTP/1.1 port.
	proxy := func(name, health string, start func(ports nginxPorts) (*exec.Cmd, nginxPorts, error), count func(c *counts) *float64) error {
		picked, err := pickPorts(3)
		if err != nil {
			return err
		}
		cmd, served, err := start(nginxPorts{http1: picked[0], grpc: picked[1], connectH2: picked[2]})
		if err != nil {
			return err
		}
		defer killProcess(cmd)
		if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", served.http1, health)); err != nil {
			return err
		}
		for i, p := range o.protocols {
			if *count(&result[i]), err = measure(name, cmd.Process.Pid, p, fmt.Sprintf("http://127.0.0.1:%d", served.port(p))); err != nil {
				return err
			}
		}
		return nil
	}
	if err := proxy("gateway", "/readyz", func(ports nginxPorts) (*exec.Cmd, nginxPorts, error) {
		// The gateway serves every protocol on one port.
		cmd, err := startGateway(ctx, r.gateway, r.dir, "gateway-callgrind", ports.http1, upURL, false, under("gateway"))
		return cmd, nginxPorts{http1: ports.http1, grpc: ports.http1, connectH2: ports.http1}, err
	}, func(c *counts) *float64 { return &c.gateway }); err != nil {
		return err
	}
	if err := proxy("nginx", "/healthz", func(ports nginxPorts) (*exec.Cmd, nginxPorts, error) {
		cmd, err := startNginx(ctx, r.nginx, r.dir, "nginx-callgrind", ports, upURL, true, under("nginx"))
		return cmd, ports, err
	}, func(c *counts) *float64 { return &c.nginx }); err != nil {
		return err
	}
	stopProcess(up)

	svc, svcURL, err := startUpstream(ctx, r.self, r.jwks, under("service"))
	if err != nil {
		return err
	}
	defer killProcess(svc)
	picked, err := pickPorts(4)
	if err != nil {
		return err
	}
	gwPort := picked[0]
	ngPorts := nginxPorts{http1: picked[1], grpc: picked[2], connectH2: picked[3]}
	gwURL := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	gw, err := startGateway(ctx, r.gateway, r.dir, "gateway-native", gwPort, svcURL, false)
	if err != nil {
		return err
	}
	defer stopProcess(gw)
	ng, err := startNginx(ctx, r.nginx, r.dir, "nginx-native", ngPorts, svcURL, false)
	if err != nil {
		return err
	}
	defer stopProcess(ng)
	if err := waitReady(ctx, gwURL+"/readyz"); err != nil {
		return err
	}
	if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", ngPorts.http1)); err != nil {
		return err
	}
	for i, p := range o.protocols {
		if result[i].behindGateway, err = measure("service behind the gateway", svc.Process.Pid, p, gwURL); err != nil {
			return err
		}
		ngURL := fmt.Sprintf("http://127.0.0.1:%d", ngPorts.port(p))
		if result[i].behindNginx, err = measure("service behind nginx", svc.Process.Pid, p, ngURL); err != nil {
			return err
		}
	}
	fmt.Printf("\ninstructions per request in user space (callgrind)\n")
	fmt.Printf("%-11s %9s %9s %11s %11s %8s %8s\n", "protocol", "gateway", "nginx", "svc behind", "svc behind", "gw/ngx", "with svc")
	fmt.Printf("%-11s %9s %9s %11s %11s %8s %8s\n", "", "", "1 worker", "gateway", "nginx", "", "")
	for i, p := range o.protocols {
		c := result[i]
		fmt.Printf("%-11s %9.0f %9.0f %11.0f %11.0f %7.2fx %7.3fx\n", p.name, c.gateway, c.nginx, c.behindGateway, c.behindNginx,
			c.gateway/c.nginx, (c.gateway+c.behindGateway)/(c.nginx+c.behindNginx))
	}
	fmt.Println("with svc: the gateway and its service against nginx and its service")
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
