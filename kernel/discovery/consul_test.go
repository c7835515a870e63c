package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// instance is a real HTTP server that answers /readyz, registered under service.
func instance(t *testing.T, service string) (*httptest.Server, Instance) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return srv, Instance{ID: NewInstanceID(service), Service: service, Host: host, Port: p, HealthURL: srv.URL + "/readyz"}
}

func newConsul(t *testing.T, addr string) *Consul {
	t.Helper()
	c, err := NewConsul(addr, WithCheck(time.Second, 500*time.Millisecond, time.Minute), WithWaitTime(10*time.Second), WithMaxBackoff(200*time.Millisecond), WithConsulLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ids(t *testing.T, r Resolver, service string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	eps, err := r.Endpoints(ctx, service)
	if err != nil {
		t.Fatalf("Endpoints(%s): %v", service, err)
	}
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestConsulResolvesThePassingSet(t *testing.T) {
	t.Parallel()
	c := newConsul(t, testkit.Consul(t))
	ctx := context.Background()
	srvA, a := instance(t, "passing")
	_, b := instance(t, "passing")
	for _, inst := range []Instance{a, b} {
		if err := c.Register(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 15*time.Second, "both instances resolve", func() bool {
		return slices.Equal(ids(t, c, "passing"), sorted(a.ID, b.ID))
	})
	eps, _ := c.Endpoints(ctx, "passing")
	for _, ep := range eps {
		if ep.ID == a.ID && ep.URL() != "http://"+a.Addr() {
			t.Fatalf("endpoint URL = %s, want http://%s", ep.URL(), a.Addr())
		}
	}

	// A crashed instance is not deregistered; its check fails and it leaves the passing set.
	srvA.Close()
	testkit.Eventually(t, 15*time.Second, "the stopped instance leaves the passing set", func() bool {
		return slices.Equal(ids(t, c, "passing"), []string{b.ID})
	})
	all, _, err := c.Client().Health().Service("passing", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stillRegistered bool
	for _, e := range all {
		if e.Service.ID == a.ID {
			stillRegistered = e.Checks.AggregatedStatus() == api.HealthCritical
		}
	}
	if !stillRegistered {
		t.Fatal("the stopped instance should still be registered, as critical: the resolver must filter on health, not on registration")
	}

	if err := c.Deregister(ctx, b); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the deregistered instance disappears", func() bool {
		return len(ids(t, c, "passing")) == 0
	})
}

func TestConsulResolverKeepsLastKnownInstancesWhileConsulIsDown(t *testing.T) {
	t.Parallel()
	consul := testkit.Consul(t)
	proxy := newProxy(t, consul)
	c := newConsul(t, proxy.addr)
	admin := newConsul(t, consul)
	ctx := context.Background()
	_, a := instance(t, "outage")
	if err := admin.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the instance resolves", func() bool {
		return slices.Equal(ids(t, c, "outage"), []string{a.ID})
	})

	proxy.stop()
	w, _ := c.watch("outage")
	testkit.Eventually(t, 15*time.Second, "the watch notices the outage", func() bool { return w.lastError() != nil })
	if got := ids(t, c, "outage"); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("during the outage the resolver returned %v, want the last known %v", got, []string{a.ID})
	}

	// Once Consul is back, changes flow again.
	proxy.start(t)
	_, b := instance(t, "outage")
	if err := admin.Register(ctx, b); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "changes after the outage resolve", func() bool {
		return slices.Equal(ids(t, c, "outage"), sorted(a.ID, b.ID))
	})
}

func TestStaticResolver(t *testing.T) {
	t.Parallel()
	s, err := NewStatic(map[string][]string{"audit": {"http://127.0.0.1:7101", "https://audit.internal:443"}})
	if err != nil {
		t.Fatal(err)
	}
	eps, err := s.Endpoints(context.Background(), "audit")
	if err != nil || len(eps) != 2 || eps[1].Scheme != "https" || eps[1].Host != "audit.internal:443" {
		t.Fatalf("Endpoints = %v, %v", eps, err)
	}
	if _, err := s.Endpoints(context.Background(), "nope"); err == nil {
		t.Fatal("unknown service resolved")
	}
	if _, err := NewStatic(map[string][]string{"audit": {"127.0.0.1:7101"}}); err == nil {
		t.Fatal("a URL without scheme was accepted")
	}
}

// proxy forwards TCP to target and can be stopped and restarted on the same address, to make
// Consul unreachable for one client while it keeps running for others.
type proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, addr: "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
			p.wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
		}
	})
}

func (p *proxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// checkStatus returns the status of inst's readiness check in the agent's catalogue, or "" when
// the agent does not have the instance.
func checkStatus(t *testing.T, c *Consul, inst Instance) string {
	t.Helper()
	entries, _, err := c.Client().Health().Service(inst.Service, "", false, nil)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if e.Service.ID != inst.ID {
			continue
		}
		for _, check := range e.Checks {
			if check.CheckID == CheckID(inst) {
				return check.Status
			}
		}
	}
	return ""
}

func TestRegistrationComesBackAfterTheAgentRestarts(t *testing.T) {
	t.Parallel()
	agent := testkit.StartConsulAgent(t)
	// The registrar talks to the agent through a recorder, to see the state each registration
	// asks for: a check's first run may change it before the test can look.
	rec := newRegistrations(t, agent.Addr())
	c := newConsul(t, rec.addr)
	ctx := context.Background()
	_, ready := instance(t, "restart-ready")
	// An instance that is not ready when the agent comes back must come back critical, not as
	// a passing instance that callers would send traffic to.
	srv, unready := instance(t, "restart-unready")
	var up atomic.Bool
	unready.Ready = func(context.Context) bool { return up.Load() }
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	for _, inst := range []Instance{ready, unready} {
		if err := c.Register(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 15*time.Second, "the ready instance resolves", func() bool {
		return slices.Equal(ids(t, c, "restart-ready"), []string{ready.ID})
	})

	// The restarted dev agent has lost both registrations. Looking for that here would race the
	// registrar, which may have registered them again already; the second registration each
	// one gets below is the proof, since the registrar registers again only what the agent lost.
	agent.Restart(t)
	testkit.Eventually(t, 15*time.Second, "the ready instance is registered again and passing, with the same check", func() bool {
		return checkStatus(t, c, ready) == api.HealthPassing
	})
	testkit.Eventually(t, 15*time.Second, "the resolver's watch sees it again", func() bool {
		return slices.Equal(ids(t, c, "restart-ready"), []string{ready.ID})
	})
	testkit.Eventually(t, 15*time.Second, "the unready instance is registered again", func() bool {
		return checkStatus(t, c, unready) != ""
	})
	if got, want := rec.statuses(ready.ID), []string{api.HealthPassing, api.HealthPassing}; !slices.Equal(got, want) {
		t.Fatalf("the ready instance was registered as %v, want %v", got, want)
	}
	if got, want := rec.statuses(unready.ID), []string{api.HealthPassing, api.HealthCritical}; !slices.Equal(got, want) {
		t.Fatalf("the unready instance was registered as %v, want %v", got, want)
	}
	up.Store(true)
	testkit.Eventually(t, 15*time.Second, "its check passes once it is ready", func() bool {
		return checkStatus(t, c, unready) == api.HealthPassing
	})
}

// registrations is an HTTP proxy to a Consul agent that notes the initial check status of every
// registration passing through, by instance id.
type registrations struct {
	addr string
	mu   sync.Mutex
	seen map[string][]string
}

func newRegistrations(t *testing.T, agent string) *registrations {
	t.Helper()
	r := &registrations{seen: map[string][]string{}}
	target, _ := url.Parse("http://" + agent)
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPut && req.URL.Path == "/v1/agent/service/register" {
			body, _ := io.ReadAll(req.Body)
			var reg api.AgentServiceRegistration
			if err := json.Unmarshal(body, &reg); err == nil && reg.Check != nil {
				r.mu.Lock()
				r.seen[reg.ID] = append(r.seen[reg.ID], reg.Check.Status)
				r.mu.Unlock()
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.addr = srv.Listener.Addr().String()
	return r
}

func (r *registrations) statuses(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen[id])
}

func TestDeregisterStopsKeepingTheRegistration(t *testing.T) {
	t.Parallel()
	agent := testkit.StartConsulAgent(t)
	c := newConsul(t, agent.Addr())
	ctx := context.Background()
	_, inst := instance(t, "leaving")
	if err := c.Register(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if err := c.Deregister(ctx, inst); err != nil {
		t.Fatal(err)
	}
	// Deregister returns only after the loop keeping the instance has stopped, so nothing can
	// register it again behind the caller's back; a restarted agent then stays without it.
	c.mu.Lock()
	kept := len(c.kept)
	c.mu.Unlock()
	if kept != 0 {
		t.Fatalf("%d registrations are still kept after Deregister", kept)
	}
	if s := checkStatus(t, c, inst); s != "" {
		t.Fatalf("the deregistered instance is still registered (%s)", s)
	}
}

func TestResolverKeepsInstancesWhileARestartedAgentRelearnsThem(t *testing.T) {
	t.Parallel()
	agent := testkit.StartConsulAgent(t)
	resolver, err := NewConsul(agent.Addr(), WithWaitTime(10*time.Second), WithMaxBackoff(200*time.Millisecond), WithRecoveryGrace(3*time.Second), WithConsulLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(resolver.Close)
	ctx := context.Background()
	_, inst := instance(t, "relearned")
	// The instance is registered by a registrar that is gone before the agent restarts, so that
	// nothing registers it again until the test does.
	once := newConsul(t, agent.Addr())
	if err := once.Register(ctx, inst); err != nil {
		t.Fatal(err)
	}
	once.Close()
	testkit.Eventually(t, 15*time.Second, "the instance resolves", func() bool {
		return slices.Equal(ids(t, resolver, "relearned"), []string{inst.ID})
	})

	agent.Restart(t)
	w, _ := resolver.watch("relearned")
	// The watch fails while the agent is down and then hears from the new agent, which has no
	// instance: the last known one stays for the grace.
	testkit.Eventually(t, 15*time.Second, "the watch hears from the restarted agent", func() bool { return w.lastError() == nil })
	if got := ids(t, resolver, "relearned"); !slices.Equal(got, []string{inst.ID}) {
		t.Fatalf("right after the agent restarted the resolver returned %v, want the last known %v", got, []string{inst.ID})
	}
	// An instance that does not come back within the grace is gone.
	testkit.Eventually(t, 15*time.Second, "an instance not registered again leaves after the grace", func() bool {
		return len(ids(t, resolver, "relearned")) == 0
	})
	again := newConsul(t, agent.Addr())
	if err := again.Register(ctx, inst); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "it resolves once registered again", func() bool {
		return slices.Equal(ids(t, resolver, "relearned"), []string{inst.ID})
	})
}
