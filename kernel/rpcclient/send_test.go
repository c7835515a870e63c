package rpcclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// http1Server answers every request with status, counting requests. It speaks only HTTP/1.1,
// which the client's own transport (HTTP/2 only) cannot.
func http1Server(t *testing.T, status int) (url string, requests *atomic.Int64) {
	t.Helper()
	requests = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, requests
}

// countingTransport is net/http's HTTP/1.1 Transport, counting the connections it dials.
func countingTransport(t *testing.T) (*http.Transport, *atomic.Int64) {
	t.Helper()
	var dials atomic.Int64
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, &dials
}

func TestHTTP1CallsTakeTheTransportGiven(t *testing.T) {
	t.Parallel()
	url, requests := http1Server(t, http.StatusOK)
	tr, dials := countingTransport(t)
	c := staticClient(t, []string{url}, WithHTTP1Transport(tr))
	call := func() {
		t.Helper()
		req, err := http.NewRequestWithContext(WithCallOptions(context.Background(), CallOptions{HTTP1: true}), http.MethodGet, BaseURL("echo")+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.HTTPClient("echo").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	call()
	call()
	if n, d := requests.Load(), dials.Load(); n != 2 || d != 1 {
		t.Fatalf("%d requests over %d dials, want 2 over 1: the calls did not take the transport given", n, d)
	}
	// Close closes the given transport's idle connections too: the next call dials anew.
	c.Close()
	call()
	if d := dials.Load(); d != 2 {
		t.Errorf("%d dials after Close, want 2", d)
	}
}

// getAttempter sends a GET to each instance it is given, recording the instances' hosts, or
// refuses every call with refusal when that is set.
type getAttempter struct {
	client  *http.Client
	refusal error

	mu    sync.Mutex
	hosts []string
}

func (g *getAttempter) Attempt(ctx context.Context, ep discovery.Endpoint, _ int) (int, error) {
	g.mu.Lock()
	g.hosts = append(g.hosts, ep.Host)
	g.mu.Unlock()
	if g.refusal != nil {
		return 0, Refused(g.refusal)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.URL()+"/", nil)
	if err != nil {
		return 0, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (g *getAttempter) tried() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.hosts)
}

// TestSendBalancesAttempts runs calls sent by an Attempter through Send: they get the
// retries and the passive health checks of the services' clients.
func TestSendBalancesAttempts(t *testing.T) {
	t.Parallel()
	const calls = 6
	dead := "http://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	refusal := errors.New("refused by its sender")
	tests := []struct {
		name string
		// other is the instance beside a healthy one: dead refuses connections, and a status
		// answers every call with it.
		dead    bool
		status  int
		refusal error
		// wantOther is how many attempts reach the other instance, and wantErr whether the
		// calls fail.
		wantOther int
		wantErr   bool
	}{
		{name: "a refused connection is tried elsewhere and ejects its instance", dead: true, wantOther: 1},
		{name: "an instance answering 503 is ejected", status: http.StatusServiceUnavailable, wantOther: 1},
		{name: "an instance answering 200 keeps its share", status: http.StatusOK, wantOther: calls / 2},
		{name: "a call its sender refused ends there and blames no instance", status: http.StatusOK, refusal: refusal, wantOther: calls / 2, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			good, _ := http1Server(t, http.StatusOK)
			other := dead
			if !tt.dead {
				other, _ = http1Server(t, tt.status)
			}
			tr, _ := countingTransport(t)
			a := &getAttempter{client: &http.Client{Transport: tr}, refusal: tt.refusal}
			c := staticClient(t, []string{good, other}, WithEjection(1, time.Hour, time.Hour))
			for i := range calls {
				err := c.Send(context.Background(), "echo", false, a)
				if tt.wantErr && !errors.Is(err, refusal) {
					t.Fatalf("call %d = %v, want the refusal", i, err)
				}
				if !tt.wantErr && err != nil {
					t.Fatalf("call %d = %v", i, err)
				}
			}
			hosts := a.tried()
			otherHost := strings.TrimPrefix(other, "http://")
			if n := len(slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return h != otherHost })); n != tt.wantOther {
				t.Errorf("%d attempts reached the other instance, want %d (attempts: %v)", n, tt.wantOther, hosts)
			}
			if tt.refusal != nil && len(hosts) != calls {
				t.Errorf("%d attempts for %d refused calls, want one each", len(hosts), calls)
			}
		})
	}
}
