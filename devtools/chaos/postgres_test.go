//go:build unix

package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/basaltplatform/basalt/kernel/childproc"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// cluster is a PostgreSQL server of the test's own, in a temporary folder, which the test stops
// and starts to give the platform a real database outage without touching the machine's server.
type cluster struct {
	bin  string
	dir  string
	port int
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startCluster initialises and starts a cluster from the machine's PostgreSQL binaries. As root
// it runs them as the postgres user, since PostgreSQL refuses to run as root.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testkit.Require(t, "PostgreSQL's server binaries (initdb, postgres)", errors.New("no /usr/lib/postgresql/*/bin/initdb"))
	}
	sort.Strings(bins)
	c := &cluster{bin: filepath.Dir(bins[len(bins)-1])}
	parent, err := os.MkdirTemp("", "basalt-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	c.dir = filepath.Join(parent, "data")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the cluster needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(parent, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(parent, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	initdb := c.command("initdb", "-D", c.dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if c.port, err = testkit.PickPort(); err != nil {
		t.Fatal(err)
	}
	if c.log, err = os.Create(filepath.Join(parent, "postgres.log")); err != nil {
		t.Fatal(err)
	}
	if c.cred != nil {
		_ = c.log.Chown(int(c.cred.Uid), int(c.cred.Gid))
	}
	t.Cleanup(func() {
		c.stop(t)
		c.log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(c.log.Name()); err == nil {
				t.Logf("the cluster's log:\n%s", b)
			}
		}
	})
	c.start(t)
	return c
}

func (c *cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

// url is the cluster's address for its superuser, on the postgres database.
func (c *cluster) url() string {
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Host: "127.0.0.1:" + strconv.Itoa(c.port), Path: "/postgres", RawQuery: "sslmode=disable"}).String()
}

// start starts the server on its folder and port and waits until it takes connections.
func (c *cluster) start(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := c.command("postgres", "-D", c.dir, "-p", strconv.Itoa(c.port), "-k", filepath.Dir(c.dir),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = c.log, c.log
	// The server must not outlive a test binary killed by its timeout. SIGQUIT is its
	// immediate shutdown.
	childproc.Bind(cmd, syscall.SIGQUIT, childproc.OwnGroup())
	cmd.SysProcAttr.Credential = c.cred
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.cmd, c.done = cmd, done
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.url())
		if err == nil {
			conn.Close(ctx)
			return
		}
		select {
		case <-done:
			t.Fatalf("postgres exited during start-up: %v", err)
		case <-ctx.Done():
			t.Fatalf("postgres did not take connections within a minute: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop shuts the server down the way an operator's fast shutdown does: open sessions are ended
// and new connections refused until start.
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Error("postgres did not stop within 30s of a fast shutdown")
	}
	c.cmd = nil
}

// withConn runs fn on a connection of the cluster's superuser.
func (c *cluster) withConn(t *testing.T, fn func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		t.Fatalf("connect to the chaos cluster: %v", err)
	}
	defer conn.Close(ctx)
	if err := fn(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// queryInt runs a query returning one integer as the cluster's superuser.
func (c *cluster) queryInt(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	c.withConn(t, func(ctx context.Context, conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	})
	return n
}

// queryStrings runs a query returning one text column as the cluster's superuser.
func (c *cluster) queryStrings(t *testing.T, sql string, args ...any) []string {
	t.Helper()
	var out []string
	c.withConn(t, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err == nil {
			out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	})
	return out
}
