// Command gatewayconformance is the server under test of the Connect conformance suite's
// server mode: it puts the gateway in front of the suite's reference server, so that the
// suite's client measures how transparently the gateway forwards Connect, gRPC and gRPC-Web.
//
//	go tool connectconformance --mode server --conf gateway/conformance/config.yaml -- \
//		gatewayconformance --referenceserver "$(go tool -n referenceserver)"
//
// It reads a ServerCompatRequest on stdin, writes a ServerCompatResponse on stdout, serves
// until SIGTERM or SIGINT, and logs to stderr (warnings and errors only).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/basaltplatform/basalt/kernel/logging"

	"github.com/basaltplatform/basalt/gateway/internal/conformance"
)

func main() {
	flags := flag.NewFlagSet("gatewayconformance", flag.ContinueOnError)
	reference := flags.String("referenceserver", "", "path of the conformance suite's referenceserver binary (default: go tool -n referenceserver)")
	verbose := flags.Bool("v", false, "log every request the gateway serves")
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, *reference, *verbose)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewayconformance:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, reference string, verbose bool) error {
	if reference == "" {
		var err error
		if reference, err = pinnedReferenceServer(ctx); err != nil {
			return err
		}
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := logging.New(os.Stderr,
		logging.WithLevel(level),
		logging.WithFormat(logging.FormatText),
		logging.WithAttrs(slog.String("service", "gatewayconformance")),
	)
	return conformance.Run(ctx, os.Stdin, os.Stdout,
		conformance.WithReferenceServer(reference),
		conformance.WithLogger(log),
		conformance.WithReferenceStderr(os.Stderr),
	)
}

// pinnedReferenceServer builds the reference server pinned in the workspace's tools (the root
// go.mod) and returns its path. It only works from inside the repository; the task passes the
// path instead, so that the runner's many servers do not each ask the go command.
func pinnedReferenceServer(ctx context.Context) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", "referenceserver")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the reference server with go tool -n referenceserver (or pass -referenceserver): %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	path := strings.TrimSpace(string(out))
	if path == "" {
		return "", errors.New("go tool -n referenceserver printed no path")
	}
	return path, nil
}
