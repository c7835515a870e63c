package rpcclient

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/internal/echo"
	"github.com/basaltplatform/basalt/kernel/requestid"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
}

// counting returns an Echo handler that counts its calls.
func counting(n *atomic.Int64) echo.UnaryFunc {
	return func(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		n.Add(1)
		return echo.Echo(ctx, req)
	}
}

func staticClient(t *testing.T, urls []string, opts ...Option) *Client {
	t.Helper()
	r, err := discovery.NewStatic(map[string][]string{"echo": urls})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(r, append([]Option{WithLogger(testkit.Logger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestRoundRobinSpreadsCallsEvenly(t *testing.T) {
	t.Parallel()
	var counts [3]atomic.Int64
	var urls []string
	for i := range counts {
		urls = append(urls, echo.Start(t, echo.HTTPConfig(), counting(&counts[i])).URL())
	}
	c := staticClient(t, urls)
	for _, p := range protocols {
		client := For(c, "echo", echo.NewClient, p.opts...)
		for range 30 {
			if _, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("x"))); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
		}
	}
	for i := range counts {
		if got := counts[i].Load(); got != 20 {
			t.Errorf("instance %d got %d of 60 calls, want 20", i, got)
		}
	}
}

func TestStreamingThroughTheBalancer(t *testing.T) {
	t.Parallel()
	c := staticClient(t, []string{echo.Start(t, echo.HTTPConfig(), nil).URL()})
	for _, p := range protocols {
		client := For(c, "echo", echo.NewClient, p.opts...)
		stream, err := client.Count(context.Background(), connect.NewRequest(wrapperspb.Int64(5)))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for stream.Receive() {
			n++
		}
		if err := stream.Err(); err != nil || n != 5 {
			t.Fatalf("%s: %d messages, %v", p.name, n, err)
		}
	}
}

// crashable is an instance that can die without deregistering, as a killed process does.
type crashable struct {
	srv   *http.Server
	inst  discovery.Instance
	calls atomic.Int64
	done  chan struct{}
}

func startCrashable(t *testing.T) *crashable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &crashable{done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle(echo.Handler(counting(&c.calls), nil))
	mux.HandleFunc("/readyz", func(http.ResponseWriter, *http.Request) {})
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	c.srv = &http.Server{Handler: mux, Protocols: p, ReadHeaderTimeout: time.Second}
	go func() { _ = c.srv.Serve(ln); close(c.done) }()
	port := ln.Addr().(*net.TCPAddr).Port
	c.inst = discovery.Instance{
		ID: discovery.NewInstanceID("crash"), Service: "crash", Host: "127.0.0.1", Port: port,
		HealthURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz",
	}
	t.Cleanup(c.crash)
	return c
}

// crash closes the listener and every connection at once.
func (c *crashable) crash() {
	_ = c.srv.Close()
	<-c.done
}

func TestFailsOverFromAKilledInstance(t *testing.T) {
	t.Parallel()
	consul, err := discovery.NewConsul(testkit.Consul(t), discovery.WithCheck(time.Second, 500*time.Millisecond, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consul.Close)
	a, b := startCrashable(t), startCrashable(t)
	ctx := context.Background()
	for _, inst := range []*crashable{a, b} {
		if err := consul.Register(ctx, inst.inst); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(consul, WithLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	testkit.Eventually(t, 15*time.Second, "both instances resolve", func() bool {
		eps, err := consul.Endpoints(ctx, "crash")
		return err == nil && len(eps) == 2
	})

	for _, p := range protocols {
		client := For(c, "crash", echo.NewClient, p.opts...)
		for range 4 {
			if _, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("warm"))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a.calls.Load() == 0 || b.calls.Load() == 0 {
		t.Fatalf("warm-up reached a=%d b=%d; both must have pooled connections before the crash", a.calls.Load(), b.calls.Load())
	}

	a.crash()
	before := b.calls.Load()
	// Consul still lists a as passing until its next check fails. In that window a call whose
	// method is declared idempotent must still succeed: a refused connection, or a pooled one
	// the crash broke, is retried on b.
	for _, p := range protocols {
		client := For(c, "crash", echo.NewClient, append(p.opts, connect.WithIdempotency(connect.IdempotencyNoSideEffects))...)
		for i := range 20 {
			if _, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("after"))); err != nil {
				t.Fatalf("%s call %d after the crash: %v", p.name, i, err)
			}
		}
	}
	if got := b.calls.Load() - before; got != 40 {
		t.Fatalf("b served %d of 40 calls after the crash", got)
	}
	if !c.HTTPClient("crash").(*balancer).ejected(a.inst.ID) {
		t.Fatal("the crashed instance was not ejected")
	}
	testkit.Eventually(t, 15*time.Second, "Consul's check takes the crashed instance out", func() bool {
		eps, err := consul.Endpoints(ctx, "crash")
		return err == nil && len(eps) == 1 && eps[0].ID == b.inst.ID
	})
}

func TestANonIdempotentCallFailsOverOnlyWhenItWasNotSent(t *testing.T) {
	t.Parallel()
	var aCalls, bCalls atomic.Int64
	a := echo.Start(t, echo.HTTPConfig(), counting(&aCalls))
	b := echo.Start(t, echo.HTTPConfig(), counting(&bCalls))
	c := staticClient(t, []string{a.URL(), b.URL()})
	client := For(c, "echo", echo.NewClient, connect.WithGRPC())
	ctx := context.Background()
	for range 4 {
		if _, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("warm"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	// After a stops, a call either goes to b or, when it may have reached a, fails with an
	// explicit unavailable: never a silent duplicate, never another code.
	failures := 0
	for range 10 {
		_, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("after")))
		if err != nil {
			failures++
			if connect.CodeOf(err) != connect.CodeUnavailable {
				t.Fatalf("a failed call must be unavailable, got %v", err)
			}
		}
	}
	if failures > 1 {
		t.Fatalf("%d of 10 calls failed; only one sent on the connection a closed may", failures)
	}
}

func TestACallThatWasSentIsNotRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	abort := func(context.Context, *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		calls.Add(1)
		panic(http.ErrAbortHandler) // the connection dies after the server got the call
	}
	bad := echo.Start(t, echo.HTTPConfig(), abort).URL()
	c := staticClient(t, []string{bad, bad + "/"}) // two "instances", both break mid-call
	client := For(c, "echo", echo.NewClient, connect.WithGRPC())
	_, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("x")))
	if err == nil {
		t.Fatal("a broken call reported success")
	}
	if calls.Load() != 1 {
		t.Fatalf("the handler ran %d times; a call that reached a server must not be resent", calls.Load())
	}
}

func TestRefusedConnectionsAreRetriedElsewhere(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	live := echo.Start(t, echo.HTTPConfig(), counting(&calls)).URL()
	dead := "http://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	c := staticClient(t, []string{dead, live})
	for _, p := range protocols {
		client := For(c, "echo", echo.NewClient, p.opts...)
		for range 10 {
			if _, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("x"))); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
		}
	}
	if calls.Load() != 20 {
		t.Fatalf("live instance got %d of 20 calls", calls.Load())
	}
}

func TestConsecutiveFailuresEjectAnInstanceForAWhile(t *testing.T) {
	t.Parallel()
	var goodCalls, badCalls atomic.Int64
	failing := func(context.Context, *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		badCalls.Add(1)
		return nil, errs.Unavailable(nil, "database down")
	}
	good := echo.Start(t, echo.HTTPConfig(), counting(&goodCalls)).URL()
	bad := echo.Start(t, echo.HTTPConfig(), failing).URL()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := staticClient(t, []string{good, bad}, WithEjection(3, 10*time.Second, time.Minute), withClock(clock))
	client := For(c, "echo", echo.NewClient) // Connect answers unavailable with HTTP 503
	call := func() error {
		_, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("x")))
		return err
	}
	for badCalls.Load() < 3 {
		_ = call()
	}
	before := badCalls.Load()
	for range 10 {
		if err := call(); err != nil {
			t.Fatalf("call while the bad instance is ejected: %v", err)
		}
	}
	if badCalls.Load() != before {
		t.Fatal("an ejected instance kept getting calls")
	}
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	for range 4 {
		_ = call()
	}
	if badCalls.Load() == before {
		t.Fatal("the instance was not tried again after its ejection ended")
	}
}

func TestCallerIdentityAndDeadlineTravel(t *testing.T) {
	t.Parallel()
	deadlines := make(chan time.Duration, 4)
	handler := func(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Now().Add(time.Hour)
		}
		deadlines <- time.Until(dl)
		return echo.Echo(ctx, req)
	}
	c := staticClient(t, []string{echo.Start(t, echo.HTTPConfig(), handler).URL()}, WithDefaultTimeout(3*time.Second))
	for _, p := range protocols {
		client := For(c, "echo", echo.NewClient, p.opts...)
		ctx := authn.WithToken(requestid.With(context.Background(), "req-42"), "tok.en")
		res, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("x")))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Header().Get("Echo-X-Request-Id"); got != "req-42" {
			t.Errorf("%s: request id arrived as %q", p.name, got)
		}
		if got := res.Header().Get("Echo-Authorization"); got != "Bearer tok.en" {
			t.Errorf("%s: authorization arrived as %q", p.name, got)
		}
		if d := <-deadlines; d <= 0 || d > 3*time.Second {
			t.Errorf("%s: default deadline arrived as %s, want within 3s", p.name, d)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = client.Echo(ctx, connect.NewRequest(wrapperspb.String("x")))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if d := <-deadlines; d <= 0 || d > time.Second {
			t.Errorf("%s: caller's deadline arrived as %s, want within 1s", p.name, d)
		}
	}
}

func TestNoInstanceIsUnavailable(t *testing.T) {
	t.Parallel()
	consul, err := discovery.NewConsul(testkit.Consul(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consul.Close)
	c, err := New(consul)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	client := For(c, "nobody-runs-this", echo.NewClient)
	_, err = client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("x")))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("calling a service without instances: %v, want unavailable", err)
	}
}
