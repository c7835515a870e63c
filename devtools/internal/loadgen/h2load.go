package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// H2Load drives HTTP/2 over cleartext (h2c, prior knowledge) with nghttp2's h2load, a C load
// generator: Go's HTTP/2 client costs more CPU per request than the proxies it would measure
// on a 2-core machine, for the reason the HTTP/1.1 workers above speak HTTP/1.1 themselves.
// Each connection carries one request at a time, as the HTTP/1.1 workers do.
type H2Load struct {
	// Bin is the h2load binary.
	Bin string
	// Dir holds the request body's file and the per-request log of each run.
	Dir string
}

// Run sends req over workers connections for warmup and then for duration, as the package's
// Run does. It also returns the CPU time h2load used (user and system), for the load
// generator's cost per request. An answer other than 2xx counts as an error; a gRPC answer's
// status is in its trailers, which h2load does not read, so a caller checks it separately.
func (h H2Load) Run(ctx context.Context, req Request, workers int, warmup, duration time.Duration) (Result, time.Duration, error) {
	if workers < 1 {
		return Result{}, 0, errors.New("loadgen: at least one worker")
	}
	logPath := filepath.Join(h.Dir, "h2load-requests.log")
	// h2load appends to its log.
	if err := os.Remove(logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Result{}, 0, err
	}
	args := []string{"-c", strconv.Itoa(workers), "-m", "1", "-t", "1",
		"-D", millis(duration), "--log-file", logPath}
	if warmup > 0 {
		args = append(args, "--warm-up-time", millis(warmup))
	}
	out, cpu, err := h.run(ctx, req, args)
	if err != nil {
		return Result{}, cpu, err
	}
	res, err := parseH2Load(out)
	if err != nil {
		return Result{}, cpu, err
	}
	if res.Latencies, err = readH2LoadLog(logPath); err != nil {
		return Result{}, cpu, err
	}
	return res, cpu, nil
}

// Send sends req n times over workers connections and returns how many answers were not 2xx,
// as the package's Send does.
func (h H2Load) Send(ctx context.Context, req Request, workers, n int) (failed int, first error, err error) {
	if workers < 1 || n < workers {
		return 0, nil, errors.New("loadgen: at least one worker, and a request for each")
	}
	out, _, err := h.run(ctx, req, []string{"-c", strconv.Itoa(workers), "-m", "1", "-t", "1", "-n", strconv.Itoa(n)})
	if err != nil {
		return 0, nil, err
	}
	res, err := parseH2Load(out)
	if err != nil {
		return 0, nil, err
	}
	// A request h2load never got to send is a failure too: Send promises n answers.
	failed = res.Errors + max(0, n-res.Requests-res.Errors)
	return failed, res.FirstError, nil
}

// run runs h2load with args and req's method, headers, body and URL, and returns its output
// and the CPU time it used.
func (h H2Load) run(ctx context.Context, req Request, args []string) ([]byte, time.Duration, error) {
	if !strings.HasPrefix(req.URL, "http://") {
		return nil, 0, fmt.Errorf("loadgen: %q is not an http:// URL", req.URL)
	}
	// h2load sends a POST with a file as its body, and cannot read an empty file; :method
	// names the method otherwise.
	method := req.Method
	if len(req.Body) > 0 {
		bodyPath := filepath.Join(h.Dir, "h2load-body")
		if err := os.WriteFile(bodyPath, req.Body, 0o644); err != nil {
			return nil, 0, err
		}
		args = append(args, "-d", bodyPath)
		if method == "POST" {
			method = ""
		}
	}
	if method != "" && method != "GET" {
		args = append(args, "-H", ":method: "+method)
	}
	names := make([]string, 0, len(req.Header))
	for k := range req.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range req.Header[k] {
			args = append(args, "-H", strings.ToLower(k)+": "+v)
		}
	}
	args = append(args, req.URL)
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, cpu, ctxErr
		}
		return nil, cpu, fmt.Errorf("loadgen: h2load: %w: %s%s", err, stderr.Bytes(), out)
	}
	return out, cpu, nil
}

var (
	h2loadFinished = regexp.MustCompile(`(?m)^finished in ([0-9.]+)(s|ms|us), ([0-9.]+) req/s`)
	h2loadRequests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus   = regexp.MustCompile(`(?m)^status codes: .*$`)
)

// parseH2Load reads the requests that succeeded and failed, and the time measured, from
// h2load's summary.
func parseH2Load(out []byte) (Result, error) {
	f := h2loadFinished.FindSubmatch(out)
	r := h2loadRequests.FindSubmatch(out)
	if f == nil || r == nil {
		return Result{}, fmt.Errorf("loadgen: h2load printed no summary:\n%s", out)
	}
	elapsed, err := strconv.ParseFloat(string(f[1]), 64)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: h2load's time %q: %w", f[1], err)
	}
	unit := map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "us": time.Microsecond}[string(f[2])]
	n := make([]int, 0, 7)
	for _, b := range r[1:] {
		v, _ := strconv.Atoi(string(b))
		n = append(n, v)
	}
	res := Result{Requests: n[3], Errors: n[4] + n[6], Elapsed: time.Duration(elapsed * float64(unit))}
	if res.Errors > 0 {
		res.FirstError = fmt.Errorf("loadgen: h2load: %d failed, %d errored, %d timed out; %s", n[4], n[5], n[6], h2loadStatus.Find(out))
	}
	return res, nil
}

// readH2LoadLog reads the latencies of h2load's per-request log, a line per request: its start
// (µs since the epoch), its status and its duration in µs. Only requests of the measured time
// are logged.
func readH2LoadLog(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lat []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || !strings.HasPrefix(fields[1], "2") {
			continue
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("loadgen: h2load log line %q", sc.Text())
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.Sort(lat)
	return lat, nil
}

// millis writes d as h2load reads a duration: whole milliseconds.
func millis(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
