// Command healthprobe asks an HTTP health endpoint whether its process is well, for container
// health checks: the distroless images have no shell, curl or wget, so Compose runs this static
// binary instead. It exits 0 when the endpoint answers 2xx, 1 when it answers otherwise or not
// at all, and 2 when it is called wrongly.
//
//	healthprobe [-timeout 2s] http://127.0.0.1:8080/readyz
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

// run probes the URL that args name and returns the exit status; it writes why a probe failed
// to stderr, which Docker keeps in the container's health log.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed for the whole request")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: healthprobe [-timeout 2s] http://host:port/path")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	target, err := url.Parse(fs.Arg(0))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		fmt.Fprintf(stderr, "healthprobe: %q is not an http(s) URL\n", fs.Arg(0))
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "healthprobe: -timeout must be positive")
		return 2
	}
	if err := probe(ctx, target.String(), *timeout); err != nil {
		fmt.Fprintf(stderr, "healthprobe: %v\n", err)
		return 1
	}
	return 0
}

// errUnhealthy marks an answer outside 2xx, as opposed to no answer.
var errUnhealthy = errors.New("unhealthy")

// probe sends one GET and succeeds only on a 2xx answer. It never follows a redirect: a health
// endpoint that redirects is misconfigured, and following it could report another process.
func probe(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The body is read (a little of it) so the reason an endpoint gives lands in the health log.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s answered %s: %s", errUnhealthy, target, resp.Status, body)
	}
	return nil
}
