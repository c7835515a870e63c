// Command benchgateway measures the API gateway against a service called directly and against
// nginx proxying the same service, side by side in one run on loopback.
//
// It starts one upstream (a kernel server answering GetCurrentUser and publishing a JWKS), the
// gateway binary in front of it (verifying access tokens and applying a rate limit high enough
// never to refuse) twice, with its HTTP/1.1 fast path and without it ("net/http"), and nginx
// proxying to it without authentication. A load generator then sends the same call to each
// target in turn, first with many concurrent clients (throughput) and then with one (the
// latency a request pays), for each protocol: Connect (binary protobuf) over HTTP/1.1
// keep-alive connections, gRPC over h2c, and Connect over h2c. Targets take turns within each
// round, so slow drift of the machine affects all of them alike.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/devtools/internal/loadgen"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		if err := upstream(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "upstream:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchgateway:", err)
		os.Exit(1)
	}
}

type options struct {
	duration     time.Duration
	warmup       time.Duration
	concurrency  int
	rounds       int
	pairs        int
	pairDuration time.Duration
	instructions int
	workDir      string
	nginx        string
	h2load       string
	protocols    []protocol
}

// target is what one phase measures: calls through a proxy (or none, for the direct call).
type target struct {
	name  string
	load  driver
	proxy *exec.Cmd
}

// sample is one round's measurement of a target.
type sample struct {
	throughput, latency loadgen.Result
	// proxyCPU and upstreamCPU are the CPU time per request of the proxy's and the
	// upstream's processes in the throughput phase (its warm-up included, so they are
	// divided by every request sent then).
	proxyCPU, upstreamCPU time.Duration
	// proxySys is the part of proxyCPU spent in the kernel.
	proxySys time.Duration
	// loadCPU is the load generator's CPU time per request.
	loadCPU time.Duration
}

func run(ctx context.Context, args []string) error {
	var o options
	var protocolList string
	fs := flag.NewFlagSet("benchgateway", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "measured time per target and phase")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before each measurement")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent connections in the throughput phase")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds; each round measures every target")
	fs.IntVar(&o.pairs, "pairs", 0, "after the rounds, pairs of back-to-back gateway and nginx throughput phases, per protocol")
	fs.DurationVar(&o.pairDuration, "pair-duration", 3*time.Second, "measured time of each phase of a pair")
	fs.IntVar(&o.instructions, "instructions", 0, "instead of timing, count with callgrind the instructions per request of the gateway, nginx and the service behind each, over this many requests")
	fs.StringVar(&o.workDir, "dir", ".bench/gateway", "folder for binaries, configuration and logs")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	fs.StringVar(&o.h2load, "h2load", "h2load", "h2load binary (nghttp2), the load generator of the h2c protocols")
	fs.StringVar(&protocolList, "protocols", "http1,grpc,connect-h2", "protocols to measure, comma-separated: http1 (Connect over HTTP/1.1), grpc (gRPC over h2c), connect-h2 (Connect over h2c)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.protocols, err = selectProtocols(protocolList); err != nil {
		return err
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		return err
	}
	dir := o.workDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	nginxBin, err := exec.LookPath(o.nginx)
	if err != nil {
		return fmt.Errorf("nginx is needed for the comparison (Debian: apt-get install nginx-light): %w", err)
	}
	h2 := loadgen.H2Load{Dir: dir}
	if slices.ContainsFunc(o.protocols, func(p protocol) bool { return p.h2 }) {
		if h2.Bin, err = exec.LookPath(o.h2load); err != nil {
			return fmt.Errorf("h2load is needed for the h2c protocols (Debian: apt-get install nghttp2-client): %w", err)
		}
	}

	fmt.Println("building the gateway")
	gatewayBin := filepath.Join(dir, "gateway")
	build := exec.CommandContext(ctx, "go", "build", "-o", gatewayBin, "./gateway/cmd/gateway")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build the gateway: %w", err)
	}

	key, jwks, err := signingKey()
	if err != nil {
		return err
	}
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o644); err != nil {
		return err
	}
	now := time.Now()
	token, err := authn.Issue(key, authn.AccessClaims{
		Issuer: "basalt", Audience: "basalt", Subject: "bench-user", SessionID: uuid.NewString(),
		TokenID: uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		return err
	}
	body, err := proto.Marshal(&identityv1.GetCurrentUserRequest{})
	if err != nil {
		return err
	}
	// load returns the driver of protocol p's call to the server at base.
	load := func(p protocol, base string) driver { return newDriver(p, h2, p.request(base, token, body)) }
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.instructions > 0 {
		return countInstructions(ctx, o, instructionRun{self: self, gateway: gatewayBin, nginx: nginxBin, dir: dir, jwks: jwksPath, load: load})
	}
	up, upURL, err := startUpstream(ctx, self, jwksPath)
	if err != nil {
		return err
	}
	defer stopProcess(up)

	ports, err := pickPorts(5)
	if err != nil {
		return err
	}
	gwPort, slowPort := ports[0], ports[1]
	ngPorts := nginxPorts{http1: ports[2], grpc: ports[3], connectH2: ports[4]}
	gwURL := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	slowURL := fmt.Sprintf("http://127.0.0.1:%d", slowPort)
	gw, err := startGateway(ctx, gatewayBin, dir, "gateway", gwPort, upURL, false)
	if err != nil {
		return err
	}
	defer stopProcess(gw)
	// The same gateway with every request through net/http's server shows, in the same run, what
	// the fast path (ADR-0036) is worth.
	slow, err := startGateway(ctx, gatewayBin, dir, "gateway-nethttp", slowPort, upURL, true)
	if err != nil {
		return err
	}
	defer stopProcess(slow)
	ng, err := startNginx(ctx, nginxBin, dir, "nginx", ngPorts, upURL, false)
	if err != nil {
		return err
	}
	defer stopProcess(ng)
	for _, u := range []string{upURL, gwURL, slowURL} {
		if err := waitReady(ctx, u+"/readyz"); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", ngPorts.http1)); err != nil {
		return err
	}

	// suites holds each protocol's targets; HTTP/1.1 also measures the gateway without its
	// fast path, which the h2c protocols never take.
	suites := make([][]target, len(o.protocols))
	for i, p := range o.protocols {
		ngURL := fmt.Sprintf("http://127.0.0.1:%d", ngPorts.port(p))
		for _, base := range []string{upURL, gwURL, ngURL} {
			if err := p.check(ctx, base, token); err != nil {
				return err
			}
		}
		suites[i] = []target{{"direct", load(p, upURL), nil}, {"gateway", load(p, gwURL), gw}}
		if !p.h2 {
			suites[i] = append(suites[i], target{"net/http", load(p, slowURL), slow})
		}
		suites[i] = append(suites[i], target{"nginx", load(p, ngURL), ng})
	}
	results := map[string][]sample{}
	for round := 1; round <= o.rounds; round++ {
		for i, p := range o.protocols {
			for _, t := range suites[i] {
				fmt.Printf("round %d/%d: %s, %s\n", round, o.rounds, p.name, t.name)
				s, err := measureTarget(ctx, o, t, up)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", p.name, t.name, err)
				}
				results[p.name+" "+t.name] = append(results[p.name+" "+t.name], s)
			}
		}
	}

	if o.pairs > 0 {
		for i, p := range o.protocols {
			gwT, ngT := suites[i][1], suites[i][len(suites[i])-1]
			if err := runPairs(ctx, o, p, gwT, ngT, up); err != nil {
				return err
			}
		}
	}
	if o.rounds == 0 {
		return nil
	}
	nginxVersion, _ := exec.Command(nginxBin, "-v").CombinedOutput()
	for i, p := range o.protocols {
		report(o, p, suites[i], results, strings.TrimSpace(strings.TrimPrefix(string(nginxVersion), "nginx version: ")))
	}
	return nil
}

// measureTarget measures t once: throughput on many connections, then latency on one.
func measureTarget(ctx context.Context, o options, t target, up *exec.Cmd) (sample, error) {
	upBefore, proxyBefore := cpuTime(up.Process.Pid), cpu{}
	if t.proxy != nil {
		proxyBefore = cpuTime(t.proxy.Process.Pid)
	}
	tp, loadCPU, err := t.load.run(ctx, o.concurrency, o.warmup, o.duration)
	if err != nil {
		return sample{}, err
	}
	sent := float64(tp.Requests) * float64(o.warmup+o.duration) / float64(o.duration)
	var s sample
	perRequest := func(d time.Duration) time.Duration { return time.Duration(float64(d) / sent) }
	s.upstreamCPU = perRequest(cpuTime(up.Process.Pid).sub(upBefore).total())
	s.loadCPU = perRequest(loadCPU)
	if t.proxy != nil {
		used := cpuTime(t.proxy.Process.Pid).sub(proxyBefore)
		s.proxyCPU, s.proxySys = perRequest(used.total()), perRequest(used.system)
	}
	lat, _, err := t.load.run(ctx, 1, o.warmup/2, o.duration/2)
	if err != nil {
		return sample{}, err
	}
	for _, r := range []loadgen.Result{tp, lat} {
		if r.Errors > 0 {
			return sample{}, fmt.Errorf("%d failed requests, first: %v", r.Errors, r.FirstError)
		}
	}
	s.throughput, s.latency = tp, lat
	return s, nil
}

// report prints protocol p's table: the best round of each target, the ratios, and each
// round's gateway/nginx ratios.
func report(o options, p protocol, targets []target, results map[string][]sample, nginxVersion string) {
	fmt.Printf("\nGetCurrentUser, %s, %d rounds of %s per target and phase\n", p.title, o.rounds, o.duration)
	fmt.Printf("%s, gateway with token verification, rate limiting and access log; nginx %s without authentication\n\n",
		fmt.Sprintf("%d CPUs", runtime.NumCPU()), nginxVersion)
	fmt.Printf("%-8s | %57s | %27s\n", "", fmt.Sprintf("%d connections", o.concurrency), "1 connection")
	fmt.Printf("%-8s | %9s %8s %8s %9s %9s %9s | %9s %8s %8s\n", "target", "req/s", "p50", "p99", "proxy CPU", "svc CPU", "load CPU", "req/s", "p50", "p99")
	best := map[string]sample{}
	for _, t := range targets {
		// The best round of each target is reported: noise on a shared machine only ever
		// slows a run down.
		var b sample
		for _, s := range results[p.name+" "+t.name] {
			if s.throughput.RPS() > b.throughput.RPS() {
				b.throughput, b.proxyCPU, b.proxySys, b.upstreamCPU, b.loadCPU = s.throughput, s.proxyCPU, s.proxySys, s.upstreamCPU, s.loadCPU
			}
			if b.latency.Requests == 0 || s.latency.Percentile(0.99) < b.latency.Percentile(0.99) {
				b.latency = s.latency
			}
		}
		best[t.name] = b
		fmt.Printf("%-8s | %9.0f %8s %8s %9s %9s %9s | %9.0f %8s %8s\n", t.name,
			b.throughput.RPS(), ms(b.throughput.Percentile(0.5)), ms(b.throughput.Percentile(0.99)), us(b.proxyCPU), us(b.upstreamCPU), us(b.loadCPU),
			b.latency.RPS(), ms(b.latency.Percentile(0.5)), ms(b.latency.Percentile(0.99)))
	}
	g, n, d := best["gateway"], best["nginx"], best["direct"]
	fmt.Println("\nproxy, svc and load CPU: CPU time per request of the proxy's, the service's and the load generator's processes")
	fmt.Printf("gateway/nginx throughput: %.2fx\n", g.throughput.RPS()/n.throughput.RPS())
	fmt.Printf("gateway/nginx CPU per request: %.2fx\n", float64(g.proxyCPU)/float64(n.proxyCPU))
	fmt.Printf("proxy CPU per request in user / kernel time: gateway %s / %s, nginx %s / %s\n",
		us(g.proxyCPU-g.proxySys), us(g.proxySys), us(n.proxyCPU-n.proxySys), us(n.proxySys))
	fmt.Printf("gateway/direct throughput: %.2fx\n", g.throughput.RPS()/d.throughput.RPS())
	if nh, ok := best["net/http"]; ok {
		fmt.Printf("gateway/net/http (the gateway without its fast path) throughput: %.2fx, CPU per request: %.2fx\n",
			g.throughput.RPS()/nh.throughput.RPS(), float64(g.proxyCPU)/float64(nh.proxyCPU))
	}
	fmt.Printf("added p50 / p99 over direct, 1 connection: gateway %s / %s, nginx %s / %s\n",
		ms(g.latency.Percentile(0.5)-d.latency.Percentile(0.5)), ms(g.latency.Percentile(0.99)-d.latency.Percentile(0.99)),
		ms(n.latency.Percentile(0.5)-d.latency.Percentile(0.5)), ms(n.latency.Percentile(0.99)-d.latency.Percentile(0.99)))
	// Each round's gateway and nginx ran seconds apart, so their ratio within a round is the
	// least disturbed by the machine's drift; the best rounds above may come from different
	// moments.
	fmt.Println("\nper round, gateway/nginx throughput and CPU per request (user / kernel time of each):")
	for i := range o.rounds {
		g, n := results[p.name+" gateway"][i], results[p.name+" nginx"][i]
		fmt.Printf("round %d: %.2fx, %.2fx (gateway %s / %s, nginx %s / %s)\n", i+1,
			g.throughput.RPS()/n.throughput.RPS(), float64(g.proxyCPU)/float64(n.proxyCPU),
			us(g.proxyCPU-g.proxySys), us(g.proxySys), us(n.proxyCPU-n.proxySys), us(n.proxySys))
	}
}

func us(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }

func signingKey() (jwk.Key, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		return nil, nil, err
	}
	_ = key.Set(jwk.KeyIDKey, "bench")
	_ = key.Set(jwk.AlgorithmKey, jwa.EdDSA)
	pub, err := key.PublicKey()
	if err != nil {
		return nil, nil, err
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, err := json.Marshal(set)
	return key, b, err
}

// upstream serves GetCurrentUser and the JWKS until it is signalled; it prints its URL.
func upstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	jwksPath := fs.String("jwks", "", "JWKS file to publish")
	if err := fs.Parse(args); err != nil {
		return err
	}
	jwks, err := os.ReadFile(*jwksPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := config.HTTP{
		ListenAddr: "127.0.0.1:0", ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 64 << 10, MaxMessageBytes: 4 << 20, ShutdownTimeout: 5 * time.Second,
	}
	srv, err := server.New("identity", cfg, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	srv.Mount(identityv1connect.NewIdentityServiceHandler(benchIdentity{}, srv.HandlerOptions()...))
	srv.Handle("GET "+authn.JWKSPath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		fmt.Println(srv.URL())
	case err := <-done:
		return err
	}
	return <-done
}

type benchIdentity struct {
	identityv1connect.UnimplementedIdentityServiceHandler
}

func (benchIdentity) GetCurrentUser(context.Context, *connect.Request[identityv1.GetCurrentUserRequest]) (*connect.Response[identityv1.GetCurrentUserResponse], error) {
	return connect.NewResponse(&identityv1.GetCurrentUserResponse{User: &identityv1.User{
		Id: "01a20c7f-c74b-78a8-83ba-2cc36ebbd79f", Email: "bench@example.com", DisplayName: "Bench",
		Status: identityv1.UserStatus_USER_STATUS_ACTIVE,
	}}), nil
}

func startUpstream(ctx context.Context, self, jwksPath string, wrap ...func(*exec.Cmd)) (*exec.Cmd, string, error) {
	cmd := exec.CommandContext(ctx, self, "upstream", "-jwks", jwksPath)
	cmd.Stderr = os.Stderr
	for _, w := range wrap {
		w(cmd)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stopProcess(cmd)
		return nil, "", fmt.Errorf("upstream did not start: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, strings.TrimSpace(line), nil
}

// startGateway starts the gateway binary as name; netHTTP turns its fast path off. Only the
// gateway named "gateway" gets the admin listener (its profiles, at 127.0.0.1:9981). wrap may
// change the command before it starts (to run it under a profiler).
func startGateway(ctx context.Context, bin, dir, name string, port int, upURL string, netHTTP bool, wrap ...func(*exec.Cmd)) (*exec.Cmd, error) {
	admin := "127.0.0.1:9981"
	if netHTTP || name != "gateway" {
		admin = ""
	}
	conf := fmt.Sprintf(`listen: 127.0.0.1:%d
admin_listen: %q
upstreams:
  identity: [%[4]q]
  auth: [%[4]q]
  authz: [%[4]q]
  audit: [%[4]q]
  blog: [%[4]q]
rate_limits:
  authenticated: {rate: 1000000000, burst: 1000000000}
  public: {rate: 1000000000, burst: 1000000000}
limits:
  max_in_flight: 100000
  disable_fast_path: %[3]t
`, port, admin, netHTTP, upURL)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-config", path)
	cmd.Env = append(os.Environ(), "BASALT_LOG_FORMAT=json", "BASALT_STATIC_ENDPOINTS=")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	for _, w := range wrap {
		w(cmd)
	}
	return cmd, cmd.Start()
}

// nginxPorts are the ports of nginx's listeners: HTTP/1.1, and h2c for gRPC and for Connect.
// A zero port leaves its listener out.
type nginxPorts struct {
	http1, grpc, connectH2 int
}

// port returns the listener that serves p.
func (n nginxPorts) port(p protocol) int {
	switch p.name {
	case "grpc":
		return n.grpc
	case "connect-h2":
		return n.connectH2
	default:
		return n.http1
	}
}

// startNginx starts nginx as name with a worker per processor; single runs one worker in the
// master's process, as a profiler needs it.
//
// gRPC goes upstream with grpc_pass, over HTTP/2 connections kept alive, one call at a time on
// each (nginx does not multiplex upstream). Connect over h2c goes upstream as the HTTP/1.1 listener's
// calls do, with proxy_pass on keep-alive connections: nginx's proxy module speaks only HTTP/1.x
// upstream, grpc_pass is documented for gRPC alone, and an operator putting nginx in front of
// Connect services would deploy this, as the gateway itself sends Connect calls upstream over
// HTTP/1.1. The h2c listeners and their upstreams keep connections for as many requests as
// they carry (keepalive_requests, 1,000 by default): h2load does not dial again when nginx
// ends a connection, and the gateway ends none. The HTTP/1.1 listener keeps nginx's defaults,
// as it was measured before the h2c phases existed.
func startNginx(ctx context.Context, bin, dir, name string, ports nginxPorts, upURL string, single bool, wrap ...func(*exec.Cmd)) (*exec.Cmd, error) {
	upHost := strings.TrimPrefix(upURL, "http://")
	workers := "worker_processes auto;"
	if single {
		workers = "worker_processes 1;\nmaster_process off;"
	}
	var h2 strings.Builder
	if ports.grpc != 0 {
		h2.WriteString(h2cServer("backend_grpc", upHost, ports.grpc, `grpc_pass grpc://backend_grpc;
      grpc_set_header X-Forwarded-For $remote_addr;`))
	}
	if ports.connectH2 != 0 {
		h2.WriteString(h2cServer("backend_h2", upHost, ports.connectH2, `proxy_pass http://backend_h2;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;`))
	}
	conf := fmt.Sprintf(`%[4]s
pid %[1]s/%[5]s.pid;
error_log %[1]s/%[5]s-error.log warn;
events { worker_connections 4096; }
http {
  access_log %[1]s/%[5]s-access.log combined buffer=64k flush=1s;
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  upstream backend {
    server %[2]s;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:%[3]d;
    location = /healthz { return 200 "ok"; }
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
%[6]s}
`, dir, upHost, ports.http1, workers, name, h2.String())
	path := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-c", path, "-p", dir, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	for _, w := range wrap {
		w(cmd)
	}
	return cmd, cmd.Start()
}

// h2cServer is the nginx configuration of an h2c listener on port whose calls location's
// directives send to the upstream named upstream, the server at upHost; the listener and the
// upstream keep each connection for a million requests (see startNginx).
func h2cServer(upstream, upHost string, port int, location string) string {
	return fmt.Sprintf(`  upstream %[1]s {
    server %[2]s;
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:%[3]d http2;
    keepalive_requests 1000000;
    location / {
      %[4]s
    }
  }
`, upstream, upHost, port, location)
}

func stopProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("not ready: " + url)
}

// pickPorts picks n distinct loopback ports for the processes the benchmark starts, below the
// kernel's ephemeral range, from which the load generator's connections take theirs.
func pickPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for len(ports) < n {
		p, err := testkit.PickPort()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}
