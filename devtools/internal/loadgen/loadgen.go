// Package loadgen drives HTTP load for benchmarks: a fixed number of workers, each on its own
// keep-alive connection, send the same request back to back for a fixed time and record every
// latency, so throughput and percentiles come from the same run.
//
// A worker speaks HTTP/1.1 itself: it writes the request's bytes, made once, and reads the
// answer's head only for its status and framing. On a 2-core machine the load generator shares
// the processors with what it measures, and net/http's client spent more CPU per request than
// the proxy under test, so that differences between proxies showed at a fraction of their size.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Request is the request every worker sends.
type Request struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
}

// Result summarises one run.
type Result struct {
	Requests int
	Errors   int
	// FirstError is the first failure seen, to explain Errors.
	FirstError error
	Elapsed    time.Duration
	Latencies  []time.Duration // sorted
}

// RPS is successful requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile returns the latency below which p (0 to 1) of the successful requests fell.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p)
	return r.Latencies[i]
}

// Run sends req from workers concurrent connections for warmup (not recorded) and then for
// duration (recorded). A response other than 200 counts as an error.
func Run(ctx context.Context, req Request, workers int, warmup, duration time.Duration) (Result, error) {
	if workers < 1 {
		return Result{}, errors.New("loadgen: at least one worker")
	}
	addr, wire, err := encode(req)
	if err != nil {
		return Result{}, err
	}
	type workerResult struct {
		lat   []time.Duration
		errs  int
		first error
	}
	results := make([]workerResult, workers)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := &client{addr: addr, request: wire}
			defer c.close()
			res := &results[w]
			res.lat = make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := c.do(t0)
				t1 := time.Now()
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					res.errs++
					if res.first == nil {
						res.first = err
					}
					continue
				}
				res.lat = append(res.lat, t1.Sub(t0))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	var out Result
	for _, r := range results {
		out.Latencies = append(out.Latencies, r.lat...)
		out.Errors += r.errs
		if out.FirstError == nil {
			out.FirstError = r.first
		}
	}
	slices.Sort(out.Latencies)
	out.Requests = len(out.Latencies)
	out.Elapsed = duration
	return out, nil
}

// Send sends req n times, spread over workers concurrent connections, and returns how many
// answers were not 200 and the first failure. It is for measurements that count work per
// request rather than time it: the same requests every run.
func Send(ctx context.Context, req Request, workers, n int) (failed int, first error, err error) {
	if workers < 1 || n < workers {
		return 0, nil, errors.New("loadgen: at least one worker, and a request for each")
	}
	addr, wire, err := encode(req)
	if err != nil {
		return 0, nil, err
	}
	type workerResult struct {
		errs  int
		first error
	}
	results := make([]workerResult, workers)
	var wg sync.WaitGroup
	for w := range workers {
		count := n / workers
		if w < n%workers {
			count++
		}
		wg.Go(func() {
			c := &client{addr: addr, request: wire}
			defer c.close()
			res := &results[w]
			for range count {
				if ctx.Err() != nil {
					return
				}
				if err := c.do(time.Now()); err != nil {
					res.errs++
					if res.first == nil {
						res.first = err
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	for _, r := range results {
		failed += r.errs
		if first == nil {
			first = r.first
		}
	}
	return failed, first, nil
}

// encode returns the address req goes to and its bytes on the wire.
func encode(req Request) (string, []byte, error) {
	u, err := url.Parse(req.URL)
	if err != nil {
		return "", nil, fmt.Errorf("loadgen: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return "", nil, fmt.Errorf("loadgen: %q is not an http:// URL", req.URL)
	}
	if req.Method == http.MethodHead {
		// The answer to HEAD announces a body it does not send, which readAnswer would wait for.
		return "", nil, errors.New("loadgen: HEAD requests are not supported")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, u.RequestURI(), u.Host)
	h := req.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Length", strconv.Itoa(len(req.Body)))
	if err := h.Write(&b); err != nil {
		return "", nil, err
	}
	b.WriteString("\r\n")
	b.Write(req.Body)
	return addr, b.Bytes(), nil
}

// timeout bounds each request, as a client's timeout would; deadlines are set only when the one
// in place has less than half of it left, rather than for every request.
const timeout = 10 * time.Second

// client is one worker's connection, dialled on first use and again after a failure or an
// answer that closes it.
type client struct {
	addr    string
	request []byte
	nc      net.Conn
	br      *bufio.Reader
	until   time.Time
}

func (c *client) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// do sends the request and reads the answer, at now.
func (c *client) do(now time.Time) error {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return err
		}
		c.nc, c.until = nc, time.Time{}
		if c.br == nil {
			c.br = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.br.Reset(nc)
		}
	}
	if c.until.Sub(now) < timeout/2 {
		c.until = now.Add(timeout)
		if err := c.nc.SetDeadline(c.until); err != nil {
			c.close()
			return err
		}
	}
	if _, err := c.nc.Write(c.request); err != nil {
		c.close()
		return err
	}
	status, keep, err := readAnswer(c.br)
	if err != nil || !keep {
		c.close()
	}
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("loadgen: %s answered %d %s", c.addr, status, http.StatusText(status))
	}
	return nil
}

// readAnswer reads one answer to the end of its body and reports its status and whether the
// connection stays open for the next request.
func readAnswer(br *bufio.Reader) (status int, keep bool, err error) {
	for {
		status, length, chunked, keep, err := readHead(br)
		if err != nil {
			return 0, false, err
		}
		if status == http.StatusSwitchingProtocols {
			return 0, false, fmt.Errorf("%w: the connection switched protocols", errMalformed)
		}
		if status >= 100 && status < 200 {
			// An interim answer has no body; the real one follows.
			continue
		}
		switch {
		case chunked:
			err = discardChunks(br)
		case length >= 0:
			_, err = br.Discard(int(length))
		default:
			// An answer with neither length nor chunks ends when the connection does.
			_, err = io.Copy(io.Discard, br)
			keep = false
		}
		return status, keep, err
	}
}

var errMalformed = errors.New("loadgen: malformed answer")

// readHead reads an answer's head: its status, its body's length (-1 when unknown), whether the
// body is chunked and whether the connection stays open.
func readHead(br *bufio.Reader) (status int, length int64, chunked, keep bool, err error) {
	line, err := readLine(br)
	if err != nil {
		return 0, 0, false, false, err
	}
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(rest) < 3 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return 0, 0, false, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0, 0, false, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	length, keep = -1, string(proto) == "HTTP/1.1"
	for {
		line, err := readLine(br)
		if err != nil {
			return 0, 0, false, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, false, false, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return 0, 0, false, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		length, chunked = 0, false
	}
	return status, length, chunked, keep, nil
}

// discardChunks reads a chunked body and its trailers.
func discardChunks(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			for {
				trailer, err := readLine(br)
				if err != nil {
					return err
				}
				if len(trailer) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n)); err != nil {
			return err
		}
		if crlf, err := readLine(br); err != nil || len(crlf) != 0 {
			return fmt.Errorf("%w: chunk of %d bytes not followed by a line end", errMalformed, n)
		}
	}
}

// readLine returns the next line without its line end. The line is only valid until the next
// read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: a line longer than %d bytes", errMalformed, br.Size())
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), nil
}
