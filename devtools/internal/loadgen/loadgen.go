// Package loadgen drives HTTP load for benchmarks: a fixed number of workers, each on its own
// keep-alive connection, send the same request back to back for a fixed time and record every
// latency, so throughput and percentiles come from the same run.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
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
	type workerResult struct {
		lat    []time.Duration
		errs   int
		first  error
		closed func()
	}
	results := make([]workerResult, workers)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tr := &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 1,
				MaxConnsPerHost:     1,
				DisableCompression:  true,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			res := &results[w]
			res.lat = make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := send(ctx, client, req)
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

func send(ctx context.Context, client *http.Client, r Request) error {
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("loadgen: %s answered %s", r.URL, resp.Status)
	}
	return nil
}
