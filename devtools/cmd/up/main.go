// Command up runs the whole platform on this machine, each service and the gateway as its own
// process; `go tool task up` runs it. See the launcher package for what it does.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
	"github.com/basaltplatform/basalt/kernel/config"
)

// summary is what -help says of up, above its settings.
const summary = `up runs the whole Basalt platform on this machine, each service and the gateway as its own
process: it builds them into <data-dir>/bin, starts them with their log lines on this terminal
(each prefixed with the process's name), waits until every one is ready, writes
<data-dir>/up.json (each process's name, URL and pid) and prints where to connect and the
administrator's email and password. It restarts a process that exits; Ctrl-C stops them all.

On its own it runs the embedded default: SQLite files under <data-dir> and a static table for
discovery. With DATABASE_URL and CONSUL_HTTP_ADDR set it runs on that PostgreSQL and Consul.
go tool task up builds the console, then runs up; flags go after --: go tool task up -- -ports auto`

func main() {
	var (
		o     launcher.Options
		ports string
	)
	l := config.NewLoader("up", os.Args[1:], os.LookupEnv, config.WithSummary(summary))
	l.String(&o.DataDir, "data-dir", "BASALT_DATA_DIR", ".data", "folder for the SQLite files, the built programs (bin/), the generated secrets and up.json")
	l.String(&o.Host, "host", "BASALT_UP_HOST", "127.0.0.1", "address every process listens on")
	l.String(&ports, "ports", "BASALT_UP_PORTS", "fixed", "fixed (the gateway on 8080, the services from 7101) or auto (free ports, so that several platforms or test runs live side by side; up.json says which)")
	l.Duration(&o.ReadyTimeout, "ready-timeout", "BASALT_UP_READY_TIMEOUT", 2*time.Minute, "time allowed for every process to become ready")
	l.Duration(&o.StopTimeout, "stop-timeout", "BASALT_UP_STOP_TIMEOUT", 30*time.Second, "time allowed for every process to stop")
	_ = l.Load()
	l.Check(ports == "fixed" || ports == "auto", "BASALT_UP_PORTS", "must be fixed or auto, not %q", ports)
	if err := l.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o.AutoPorts = ports == "auto"
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o.Root, o.Env, o.Out = root, os.Environ(), os.Stdout
	if !filepath.IsAbs(o.DataDir) {
		o.DataDir = filepath.Join(root, o.DataDir)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := launcher.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "basalt:", err)
		os.Exit(1)
	}
}

// repoRoot returns the folder of the go.work in effect, as the go command resolves it.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	work := strings.TrimSpace(string(out))
	if err != nil || work == "" || work == "off" {
		return "", errors.New("up: run it inside the Basalt repository (no go.work in effect)")
	}
	return filepath.Dir(work), nil
}
