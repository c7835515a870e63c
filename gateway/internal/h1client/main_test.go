package h1client

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// client is the kernel's balancing client carrying its HTTP/1.1 calls over a Transport, as the
// gateway builds it; its Exchange goes through the same Transport.
type client struct {
	*rpcclient.Client
	h1 *Transport
}

func (c *client) Exchange(ctx context.Context, service string, x *Exchange, a *Answer) error {
	return c.h1.Exchange(ctx, c.Client, service, x, a)
}

// staticClient returns a client of the service "echo" served at urls.
func staticClient(t *testing.T, urls []string, opts ...rpcclient.Option) *client {
	t.Helper()
	r, err := discovery.NewStatic(map[string][]string{"echo": urls})
	if err != nil {
		t.Fatal(err)
	}
	h1 := New()
	rc, err := rpcclient.New(r, append([]rpcclient.Option{rpcclient.WithLogger(testkit.Logger(t)), rpcclient.WithHTTP1Transport(h1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	return &client{Client: rc, h1: h1}
}

// ejectAtOnce makes a client eject an instance, for an hour, on the first failure held against
// it, so that a test can tell from where calls go whether any was.
var ejectAtOnce = rpcclient.WithEjection(1, time.Hour, time.Hour)

// checkNoneEjected fails the test unless two exchanges in a row reach the two instances of
// hosts, as round-robin sends them when neither is ejected.
func checkNoneEjected(t *testing.T, c *client, hosts ...string) {
	t.Helper()
	req := &recordingRequest{body: "z"}
	for range 2 {
		if _, _, err := exchangeAll(c, &Exchange{Request: req}); err != nil {
			t.Fatal(err)
		}
	}
	got := req.attempts()
	slices.Sort(got)
	want := slices.Sorted(slices.Values(hosts))
	if !slices.Equal(got, want) {
		t.Errorf("two exchanges reached %v, want %v: an instance was ejected", got, want)
	}
}
