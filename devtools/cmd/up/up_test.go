//go:build unix

// These tests check, with signal 0, that the launcher's processes are gone.

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// upBinary builds this command once per test run.
var upBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "basalt-up-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "up")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{err, string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// launch runs `up` as `go tool task up` does, from the repository root, and waits for its
// state file. It returns the processes and a function that interrupts the launcher as Ctrl-C
// does and returns its exit error.
func launch(t *testing.T, dataDir string, env ...string) (map[string]launcher.State, func() error) {
	t.Helper()
	bin, err := upBinary()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-ports", "auto", "-data-dir", dataDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log(sc.Text())
			if sc.Text() == "basalt: ready" {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	exited := make(chan error, 1)
	go func() { <-logged; exited <- cmd.Wait() }()
	var once sync.Once
	var exitErr error
	stop := func() error {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case exitErr = <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				exitErr = <-exited
				t.Error("the launcher did not stop within 60s of Ctrl-C")
			}
		})
		return exitErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("the launcher exited before it was ready: %v", err)
	case <-time.After(3 * time.Minute):
		t.Fatal("the launcher was not ready within 3 minutes")
	}
	procs, err := launcher.ReadState(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return procs, stop
}

// secret returns a value from the secrets file the launcher generated, which must be readable
// by its owner only.
func secret(t *testing.T, dataDir, name string) string {
	t.Helper()
	if info, err := os.Stat(filepath.Join(dataDir, launcher.SecretsFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the secrets file must be readable by its owner only: %v %v", info.Mode(), err)
	}
	v, err := launcher.Secret(dataDir, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// serviceCredentials signs calls as a platform service with the secret the launcher generated.
func serviceCredentials(t *testing.T, dataDir string) connect.ClientOption {
	t.Helper()
	tokens, err := authn.NewServiceTokens("smoke", []byte(secret(t, dataDir, "BASALT_INTERNAL_SECRET")))
	if err != nil {
		t.Fatal(err)
	}
	return connect.WithInterceptors(authn.NewClientCredentials(tokens))
}

// recordThrough makes a real call to the launched audit service over Connect and gRPC, as a
// platform service, after checking that an anonymous caller is refused.
func recordThrough(t *testing.T, url, dataDir string) {
	t.Helper()
	anonymous := auditv1connect.NewAuditServiceClient(testkit.HTTP1Client(t), url)
	_, err := anonymous.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("an anonymous call to an internal method: %v, want unauthenticated", err)
	}
	creds := serviceCredentials(t, dataDir)
	for name, client := range map[string]auditv1connect.AuditServiceClient{
		"connect": auditv1connect.NewAuditServiceClient(testkit.HTTP1Client(t), url, creds),
		"grpc":    auditv1connect.NewAuditServiceClient(testkit.H2CClient(t), url, connect.WithGRPC(), creds),
	} {
		ev := &auditv1.Event{
			Id: uuid.NewString(), Time: timestamppb.Now(), Service: "smoke", Action: "smoke.test",
			Outcome: auditv1.Outcome_OUTCOME_SUCCESS,
		}
		req := &auditv1.RecordRequest{Events: []*auditv1.Event{ev}}
		for _, want := range []auditv1.ReceiptStatus{auditv1.ReceiptStatus_RECEIPT_STATUS_APPENDED, auditv1.ReceiptStatus_RECEIPT_STATUS_DUPLICATE} {
			res, err := client.Record(context.Background(), connect.NewRequest(req))
			if err != nil {
				t.Fatalf("%s: Record through the launched service: %v", name, err)
			}
			if got := res.Msg.GetReceipts()[0].GetStatus(); got != want {
				t.Fatalf("%s: receipt %v, want %v", name, got, want)
			}
		}
	}
}

// journey is a newcomer's first session, through the gateway as the README shows it: register,
// then read the new user back with the access token (auth calls identity, identity has authz
// grant the member role, the gateway and identity both verify the token with the keys auth
// publishes). Then the bootstrap administrator logs in and lists users.
func journey(t *testing.T, procs map[string]launcher.State, dataDir string) {
	t.Helper()
	ctx := context.Background()
	gw, ok := procs["gateway"]
	if !ok {
		t.Fatalf("the launcher did not start the gateway: %v", procs)
	}
	auth := authv1connect.NewAuthServiceClient(testkit.HTTP1Client(t), gw.URL)
	reg, err := auth.Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "smoke@example.com", Password: "a smoke-test password", DisplayName: "Smoke"}))
	if err != nil {
		t.Fatalf("Register through the launched auth service: %v", err)
	}
	identity := identityv1connect.NewIdentityServiceClient(testkit.H2CClient(t), gw.URL, connect.WithGRPC(),
		connect.WithInterceptors(authn.Bearer(reg.Msg.GetTokens().GetAccessToken())))
	me, err := identity.GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
	if err != nil || me.Msg.GetUser().GetEmail() != "smoke@example.com" {
		t.Fatalf("GetCurrentUser with the new token: %v, %v", me, err)
	}
	login, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Email: launcher.DefaultAdminEmail, Password: secret(t, dataDir, "BASALT_ADMIN_PASSWORD")}))
	if err != nil {
		t.Fatalf("the bootstrap administrator cannot log in: %v", err)
	}
	admin := identityv1connect.NewIdentityServiceClient(testkit.HTTP1Client(t), gw.URL, connect.WithInterceptors(authn.Bearer(login.Msg.GetTokens().GetAccessToken())))
	testkit.Eventually(t, 30*time.Second, "the administrator holds the admin role", func() bool {
		list, err := admin.ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{}))
		return err == nil && len(list.Msg.GetUsers()) == 2
	})
}

// pageServed checks that the gateway serves a built page (the console, the REST reference) at
// path, as `go tool task up` (which builds them first) promises: the folder dir of the
// repository holds a build, which task builds, and the page's index.html has title.
func pageServed(t *testing.T, gateway, dir, task, path, title string) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(root, filepath.FromSlash(dir), "index.html"))
	testkit.Require(t, "the built page (go tool task "+task+")", err)
	client := testkit.HTTP1Client(t)
	resp, err := client.Get(gateway + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "<title>"+title+"</title>") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET %s = %d %v %q; want the page's index.html", path, resp.StatusCode, resp.Header, body)
	}
}

// metricsServed checks that every launched program serves its metrics at the admin address the
// state file names: the gateway its own, each service those of its telemetry, named after it.
func metricsServed(t *testing.T, procs map[string]launcher.State) {
	t.Helper()
	client := testkit.HTTP1Client(t)
	for name, p := range procs {
		want := `service_name="` + name + `"`
		if name == "gateway" {
			want = "basalt_gateway_requests_total"
		}
		resp, err := client.Get(p.AdminURL + "/metrics")
		if err != nil {
			t.Errorf("%s's metrics at %q: %v", name, p.AdminURL, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s/metrics = %d without %s", p.AdminURL, resp.StatusCode, want)
		}
	}
}

// assertStopped checks that the launcher exited cleanly and left nothing running.
func assertStopped(t *testing.T, stop func() error, procs map[string]launcher.State) {
	t.Helper()
	if err := stop(); err != nil {
		t.Fatalf("the launcher exited with %v after Ctrl-C, want a clean exit", err)
	}
	for name, p := range procs {
		if err := syscall.Kill(p.PID, 0); err == nil {
			t.Errorf("%s (pid %d) still runs after the launcher exited", name, p.PID)
		}
		if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(p.URL, "http://"), time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections at %s", name, p.URL)
		}
	}
}

// restartedAfterKill kills name's process as the kernel's OOM killer would and waits for the
// launcher to run it again: a new pid in the state file, serving at the same address.
func restartedAfterKill(t *testing.T, dataDir, name string) {
	t.Helper()
	before, err := launcher.ReadState(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	old := before[name]
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	testkit.Eventually(t, 60*time.Second, name+" runs again under a new pid and is ready", func() bool {
		now, err := launcher.ReadState(dataDir)
		if err != nil || now[name].PID == old.PID || now[name].URL != old.URL {
			return false
		}
		resp, err := client.Get(old.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func TestEmbeddedDefault(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	procs, stop := launch(t, dataDir, "DATABASE_URL=", "CONSUL_HTTP_ADDR=")
	audit, ok := procs["audit"]
	if !ok {
		t.Fatalf("the launcher did not start audit: %v", procs)
	}
	recordThrough(t, audit.URL, dataDir)
	journey(t, procs, dataDir)
	t.Run("metrics", func(t *testing.T) { metricsServed(t, procs) })
	t.Run("console", func(t *testing.T) {
		pageServed(t, procs["gateway"].URL, launcher.ConsoleDir, "console:build", "/console/admin/audit", "Basalt console")
	})
	t.Run("REST reference", func(t *testing.T) {
		pageServed(t, procs["gateway"].URL, launcher.DocsDir, "apidocs:build", "/docs/", "Basalt API reference")
	})
	t.Run("a killed service is restarted", func(t *testing.T) { restartedAfterKill(t, dataDir, "audit") })
	procs, _ = launcher.ReadState(dataDir)
	recordThrough(t, procs["audit"].URL, dataDir)
	if _, err := os.Stat(filepath.Join(dataDir, "audit.db")); err != nil {
		t.Fatalf("the embedded default keeps audit in SQLite under the data dir: %v", err)
	}
	assertStopped(t, stop, procs)
	if _, err := os.Stat(filepath.Join(dataDir, launcher.StateFile)); !os.IsNotExist(err) {
		t.Fatalf("the state file outlived the launcher: %v", err)
	}
}

func TestRealParts(t *testing.T) {
	t.Parallel()
	dbURL, consulAddr := testkit.DatabaseURL(t), testkit.Consul(t)
	dataDir := t.TempDir()
	procs, stop := launch(t, dataDir, "DATABASE_URL="+dbURL, "CONSUL_HTTP_ADDR="+consulAddr, "BASALT_CHECK_INTERVAL=1s", "BASALT_CHECK_TIMEOUT=500ms")
	recordThrough(t, procs["audit"].URL, dataDir)
	journey(t, procs, dataDir)
	if n := testkit.QueryInt(t, `SELECT count(*) FROM audit.events WHERE service = 'smoke'`); n != 2 {
		t.Fatalf("audit.events in PostgreSQL holds %d smoke events, want 2", n)
	}
	consul, err := discovery.NewConsul(consulAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer consul.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eps, err := consul.Endpoints(ctx, "audit")
	if err != nil || len(eps) != 1 || eps[0].URL() != procs["audit"].URL {
		t.Fatalf("Consul's passing audit instances = %v, %v; want %s", eps, err, procs["audit"].URL)
	}
	assertStopped(t, stop, procs)
	testkit.Eventually(t, 10*time.Second, "audit is deregistered on shutdown", func() bool {
		entries, _, err := consul.Client().Health().Service("audit", "", false, nil)
		return err == nil && len(entries) == 0
	})
}
