package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"

	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

// readiness is what the gateway's /readyz answered.
type readiness struct {
	code    int
	Status  string   `json:"status"`
	Failing []string `json:"failing"`
	Empty   []string `json:"empty_services"`
}

func (f *fixture) readiness(t *testing.T) readiness {
	t.Helper()
	resp, body := f.do(t, "GET", "/readyz", "", nil)
	r := readiness{code: resp.StatusCode}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz answered %d %q: %v", resp.StatusCode, body, err)
	}
	return r
}

// TestReadinessNamesRoutedServicesWithoutAnInstance runs the gateway on a real Consul agent: it
// is ready while every service its routes lead to has a passing instance, names the services
// that have none, and keeps the last known instances while Consul itself is down.
func TestReadinessNamesRoutedServicesWithoutAnInstance(t *testing.T) {
	t.Parallel()
	agent := testkit.StartConsulAgent(t)
	consul, err := discovery.NewConsul(agent.Addr(), discovery.WithCheck(500*time.Millisecond, 400*time.Millisecond, time.Minute), discovery.WithMaxBackoff(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consul.Close)
	k := newKeys(t)
	up := startUpstream(t, "upstream-a", k.jwks)
	host, port, _ := net.SplitHostPort(up.url[len("http://"):])
	p, _ := strconv.Atoi(port)
	ctx := context.Background()
	instances := map[string]discovery.Instance{}
	for _, name := range []string{"auth", "identity", "audit", "authz", "blog"} {
		inst := discovery.Instance{ID: discovery.NewInstanceID(name), Service: name, Host: host, Port: p, HealthURL: up.url + "/readyz"}
		if err := consul.Register(ctx, inst); err != nil {
			t.Fatal(err)
		}
		instances[name] = inst
	}
	f := newFixtureWithKeys(t, k, 0, func(c *config.Config) { c.Upstreams = nil }, WithResolver(consul))
	testkit.Eventually(t, 15*time.Second, "the gateway is ready", func() bool { return f.readiness(t).code == http.StatusOK })

	if err := consul.Deregister(ctx, instances["blog"]); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the gateway names blog as a service without an instance", func() bool {
		r := f.readiness(t)
		return r.code == http.StatusServiceUnavailable && slices.Equal(r.Empty, []string{"blog"}) && len(r.Failing) == 0
	})
	blog := blogv1connect.NewBlogServiceClient(f.h1, f.url)
	if _, err := blog.ListPosts(ctx, connect.NewRequest(&blogv1.ListPostsRequest{})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("a call to blog without an instance = %v, want unavailable", err)
	}

	if err := consul.Register(ctx, instances["blog"]); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the gateway is ready again", func() bool { return f.readiness(t).code == http.StatusOK })

	// With Consul gone the last known instances still serve, so the gateway stays ready.
	agent.Stop()
	for range 5 {
		if r := f.readiness(t); r.code != http.StatusOK {
			t.Fatalf("/readyz while Consul is down = %+v, want ready on the last known instances", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReadinessNamesServicesMissingFromTheStaticTable covers the static table: a routed service
// the table lacks can never be called, so the gateway is not ready and says which.
func TestReadinessNamesServicesMissingFromTheStaticTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *config.Config) { delete(c.Upstreams, "blog") })
	r := f.readiness(t)
	if r.code != http.StatusServiceUnavailable || !slices.Equal(r.Empty, []string{"blog"}) {
		t.Fatalf("/readyz without blog in the table = %+v, want 503 naming blog", r)
	}
}
