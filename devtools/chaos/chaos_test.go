//go:build unix

// Package chaos runs the platform in the real-parts mode (its own PostgreSQL cluster and Consul
// agent, two instances of blog and identity, every process supervised as `task up` does) under
// steady traffic through the gateway, and breaks one part at a time: an instance killed, the
// database stopped, the Consul agent restarted or stopped, the audit service stopped. It counts
// what the traffic saw and checks what operators are promised: no idempotent read lost to an
// instance's death, every write answered, every audit event of a successful write recorded
// once, recovery within 15 s of a fault's end, and /readyz telling the truth throughout.
//
// Run it alone, with its table of figures, with
//
//	go test -v -count=1 -run TestChaos ./devtools/chaos
package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/auth/v1/authv1connect"
	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/devtools/internal/launcher"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// only runs the faults whose names contain it, for a quicker look at one of them:
// go test -v -run TestChaos ./devtools/chaos -args -chaos.only=kill
var only = flag.String("chaos.only", "", "run only the faults whose names contain this")

// The promises the suite checks.
const (
	// recoveryBound is how soon after a fault ends every kind of call must succeed again.
	recoveryBound = 15 * time.Second
	// readinessLag is how long a /readyz may disagree with the truth: Consul's checks run every
	// second, and the gateway hears of their results through a blocking query.
	readinessLag = 5 * time.Second
	// callTimeout bounds each call of the traffic; a call that reaches it was not answered.
	callTimeout = 5 * time.Second
)

// The kinds of call the traffic makes.
const (
	readPost = "read post (blog)"
	readMe   = "read me (identity)"
	write    = "create post (blog)"
)

var kinds = []string{readPost, readMe, write}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos suite takes minutes")
	}
	pg := startCluster(t)
	consul := testkit.StartConsulAgent(t)
	p := startPlatform(t, pg.url(), consul.Addr())
	ctx := context.Background()

	gw := p.url("gateway")
	h1, h2 := testkit.HTTP1Client(t), testkit.H2CClient(t)
	auth := authv1connect.NewAuthServiceClient(h1, gw)
	reg, err := auth.Register(ctx, connect.NewRequest(&authv1.RegisterRequest{Email: "chaos@example.com", Password: "a password for chaos", DisplayName: "Chaos"}))
	if err != nil {
		t.Fatal(err)
	}
	member := connect.WithInterceptors(authn.Bearer(reg.Msg.GetTokens().GetAccessToken()))
	// The member role reaches authz through identity's grant relay shortly after registration.
	var seed *blogv1.Post
	testkit.Eventually(t, 30*time.Second, "the new member can write", func() bool {
		res, err := blogv1connect.NewBlogServiceClient(h1, gw, member).CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: "the post every reader reads", Body: "."}))
		if err == nil {
			seed = res.Msg.GetPost()
		}
		return err == nil
	})

	// Each kind of call runs over two protocols: Connect over HTTP/1.1 (the gateway's fast
	// path for unary calls) and gRPC over h2c.
	clients := []struct {
		blog     blogv1connect.BlogServiceClient
		identity identityv1connect.IdentityServiceClient
	}{
		{blogv1connect.NewBlogServiceClient(h1, gw, member), identityv1connect.NewIdentityServiceClient(h1, gw, member)},
		{blogv1connect.NewBlogServiceClient(h2, gw, member, connect.WithGRPC()), identityv1connect.NewIdentityServiceClient(h2, gw, member, connect.WithGRPC())},
	}
	rec := &recorder{}
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	protocols := []string{"connect over HTTP/1.1", "gRPC over h2c"}
	loop := func(kind string, every time.Duration, call func(ctx context.Context, n int) (string, error)) {
		traffic.Go(func() {
			for n := 0; ; n++ {
				start := time.Now()
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				id, err := call(cctx, n)
				timedOut := err != nil && cctx.Err() != nil
				cancel()
				rec.add(outcome{at: start, kind: kind, code: connect.CodeOf(err), err: err, timedOut: timedOut, postID: id, protocol: protocols[n%2]})
				select {
				case <-stop:
					return
				case <-time.After(every):
				}
			}
		})
	}
	loop(readPost, 50*time.Millisecond, func(ctx context.Context, n int) (string, error) {
		_, err := clients[n%2].blog.GetPost(ctx, connect.NewRequest(&blogv1.GetPostRequest{PostId: seed.GetPostId()}))
		return "", err
	})
	loop(readMe, 50*time.Millisecond, func(ctx context.Context, n int) (string, error) {
		_, err := clients[n%2].identity.GetCurrentUser(ctx, connect.NewRequest(&identityv1.GetCurrentUserRequest{}))
		return "", err
	})
	loop(write, 200*time.Millisecond, func(ctx context.Context, n int) (string, error) {
		res, err := clients[n%2].blog.CreatePost(ctx, connect.NewRequest(&blogv1.CreatePostRequest{Title: fmt.Sprintf("chaos %d", n), Body: "."}))
		if err != nil {
			return "", err
		}
		return res.Msg.GetPost().GetPostId(), nil
	})

	watch := newReadinessWatch(p)
	watch.start()

	faults := []*fault{
		{name: "kill -9 one blog instance", start: func() {
			blog := p.byName["blog"]
			old := blog.PID()
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 60*time.Second, "the killed instance is restarted", func() bool {
				return blog.Running() && blog.PID() != old && launcher.Ready(watch.client, blog.URL)
			})
		}},
		{name: "PostgreSQL stopped for 120 s", hold: 120 * time.Second, start: func() {
			watch.setDatabase(false)
			pg.stop(t)
		}, end: func() {
			pg.start(t)
			watch.setDatabase(true)
		}},
		{name: "Consul agent restarted", start: func() { consul.Restart(t) }},
		{name: "Consul stopped for 60 s", hold: 60 * time.Second, start: consul.Stop, end: func() { consul.Start(t) }},
		{name: "audit stopped for 60 s", hold: 60 * time.Second, start: func() {
			audit := p.byName["audit"]
			p.unsupervise(audit)
			watch.setStopped("audit", true)
			if err := audit.Stop(30 * time.Second); err != nil {
				t.Errorf("stopping audit: %v", err)
			}
		}, end: func() {
			audit := p.byName["audit"]
			if err := audit.Start(p.binDir, p.env, p.logs); err != nil {
				t.Fatal(err)
			}
			watch.setStopped("audit", false)
			p.supervise(audit)
		}},
	}
	faults = slices.DeleteFunc(faults, func(f *fault) bool { return !strings.Contains(f.name, *only) })
	time.Sleep(5 * time.Second)
	for _, f := range faults {
		f.run(t)
		// Each fault is followed by its recovery and a quiet spell before the next.
		time.Sleep(recoveryBound + 5*time.Second)
	}
	close(stop)
	traffic.Wait()
	watch.stop()

	outcomes := rec.all()
	report := newReport(faults, outcomes)
	t.Log("\n" + report.table(watch))
	report.check(t)
	p.explain(t, report.unexpected)
	watch.check(t)
	// Only the killed instance was restarted: the platform rode out every other fault, the
	// database outage included, with the processes it had.
	if exits := strings.Count(p.events.String(), " exited ("); *only == "" && (exits != 1 || !strings.Contains(p.events.String(), "basalt: blog exited")) {
		t.Errorf("want exactly one restart, of the killed blog instance; the supervisors said:\n%s", p.events.String())
	}
	checkAuditOnce(t, p, pg, seed.GetPostId(), outcomes)
}

// outcome is one call of the traffic.
type outcome struct {
	at       time.Time
	kind     string
	code     connect.Code
	err      error
	timedOut bool
	postID   string
	protocol string
}

func (o outcome) ok() bool { return o.err == nil }

type recorder struct {
	mu       sync.Mutex
	outcomes []outcome
}

func (r *recorder) add(o outcome) {
	r.mu.Lock()
	r.outcomes = append(r.outcomes, o)
	r.mu.Unlock()
}

func (r *recorder) all() []outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.outcomes)
}

// fault is one thing the suite breaks: start breaks it, hold is how long it stays broken, and
// end mends it (nil when the platform mends itself, as a killed instance is restarted).
type fault struct {
	name       string
	hold       time.Duration
	start, end func()

	began, ended time.Time
}

func (f *fault) run(t *testing.T) {
	t.Logf("fault: %s", f.name)
	f.began = time.Now()
	f.start()
	time.Sleep(f.hold)
	if f.end != nil {
		f.end()
	}
	f.ended = time.Now()
}

// report counts the traffic's outcomes by fault: during it and from its end until the next.
type report struct {
	faults []*fault
	rows   []row
	// unexpected are the start times of failed calls the checks did not allow.
	unexpected []time.Time
}

type row struct {
	fault *fault
	// during and after count each kind's outcomes: while the fault lasted, and from its end
	// to the next fault's start.
	during, after map[string]*counts
	// recovery is, for each kind, how long after the fault's end the first call succeeded.
	recovery map[string]time.Duration
	// relapsed counts, for each kind, the calls that failed after that first success.
	relapsed map[string]int
	// firstFailure describes each kind's first failed call, for the messages of failed checks.
	firstFailure map[string]string
	// failures are the failed calls, in order.
	failures []outcome
}

type counts struct {
	ok, failed, timedOut int
	codes                map[connect.Code]int
}

func newReport(faults []*fault, outcomes []outcome) *report {
	r := &report{faults: faults}
	for i, f := range faults {
		next := time.Now()
		if i+1 < len(faults) {
			next = faults[i+1].began
		}
		rw := row{fault: f, during: map[string]*counts{}, after: map[string]*counts{}, recovery: map[string]time.Duration{}, relapsed: map[string]int{}, firstFailure: map[string]string{}}
		for _, k := range kinds {
			rw.during[k], rw.after[k] = &counts{codes: map[connect.Code]int{}}, &counts{codes: map[connect.Code]int{}}
			rw.recovery[k] = -1
		}
		for _, o := range outcomes {
			var c *counts
			switch {
			case !o.at.Before(f.began) && o.at.Before(f.ended):
				c = rw.during[o.kind]
			case !o.at.Before(f.ended) && o.at.Before(next):
				c = rw.after[o.kind]
				// One worker makes each kind's calls, so they are recorded in order.
				if o.ok() && rw.recovery[o.kind] < 0 {
					rw.recovery[o.kind] = o.at.Sub(f.ended)
				}
				if !o.ok() && rw.recovery[o.kind] >= 0 {
					rw.relapsed[o.kind]++
				}
			default:
				continue
			}
			switch {
			case o.ok():
				c.ok++
			case o.timedOut:
				c.timedOut++
			default:
				c.failed++
				c.codes[o.code]++
				rw.failures = append(rw.failures, o)
				if rw.firstFailure[o.kind] == "" {
					rw.firstFailure[o.kind] = fmt.Sprintf("%s at %s: %v", o.protocol, o.at.Format("15:04:05.000"), o.err)
				}
			}
		}
		r.rows = append(r.rows, rw)
	}
	return r
}

func (r *report) table(w *readinessWatch) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\tcall\tduring: ok/failed/unanswered\tafter: ok/failed/unanswered\trecovered in\terror codes")
	for _, rw := range r.rows {
		for i, k := range kinds {
			name := ""
			if i == 0 {
				name = fmt.Sprintf("%s (%s)", rw.fault.name, rw.fault.ended.Sub(rw.fault.began).Round(time.Second))
			}
			d, a := rw.during[k], rw.after[k]
			recovered := "never"
			if rw.recovery[k] >= 0 {
				recovered = rw.recovery[k].Round(10 * time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d/%d\t%d/%d/%d\t%s\t%s\n", name, k, d.ok, d.failed, d.timedOut, a.ok, a.failed, a.timedOut, recovered, codes(d, a))
		}
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nreadiness: %d samples; longest disagreement with the truth per target: %s\n", w.samples(), w.longestLags())
	return b.String()
}

func codes(cs ...*counts) string {
	all := map[connect.Code]int{}
	for _, c := range cs {
		for code, n := range c.codes {
			all[code] += n
		}
	}
	var parts []string
	for code, n := range all {
		parts = append(parts, fmt.Sprintf("%s×%d", code, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// explain notes the times of rw's failed calls of kind that which picks, so that a failing run
// can show what the gateway logged about them.
func (r *report) explain(rw row, kind string, which func(outcome) bool) {
	for _, o := range rw.failures {
		if o.kind == kind && which(o) {
			r.unexpected = append(r.unexpected, o.at)
		}
	}
}

// check asserts the promises on the counted outcomes.
func (r *report) check(t *testing.T) {
	t.Helper()
	for _, rw := range r.rows {
		for _, k := range kinds {
			d, a := rw.during[k], rw.after[k]
			if d.timedOut+a.timedOut > 0 {
				t.Errorf("%s: %d calls of %q got no answer within %s", rw.fault.name, d.timedOut+a.timedOut, k, callTimeout)
			}
			if rw.recovery[k] < 0 || rw.recovery[k] > recoveryBound {
				t.Errorf("%s: %q did not succeed again within %s of the fault's end (took %s)", rw.fault.name, k, recoveryBound, rw.recovery[k])
			}
			if a.ok == 0 {
				t.Errorf("%s: no %q succeeded after the fault", rw.fault.name, k)
			}
			// Once recovered, calls keep succeeding until the next fault.
			if n := rw.relapsed[k]; n > 0 {
				t.Errorf("%s: %d calls of %q failed after they had recovered", rw.fault.name, n, k)
				r.explain(rw, k, func(o outcome) bool { return rw.recovery[k] >= 0 && o.at.Sub(rw.fault.ended) > rw.recovery[k] })
			}
		}
		// Losing an instance, or Consul, or the audit service, loses no read: an idempotent
		// read goes to another instance, and calls are routed from the last known instances.
		if !strings.HasPrefix(rw.fault.name, "PostgreSQL") {
			for _, k := range []string{readPost, readMe} {
				if n := rw.during[k].failed + rw.after[k].failed; n > 0 {
					t.Errorf("%s: %d reads of %q failed (%s), want none; first: %s", rw.fault.name, n, k, codes(rw.during[k], rw.after[k]), rw.firstFailure[k])
					r.explain(rw, k, func(outcome) bool { return true })
				}
			}
		}
	}
}

// checkAuditOnce waits for the outboxes to deliver and checks that every successful write's
// audit event is in the log exactly once, that no event names a post that does not exist, and
// that the log's chain still verifies.
func checkAuditOnce(t *testing.T, p *platform, pg *cluster, seed string, outcomes []outcome) {
	t.Helper()
	// The seed post was written before the traffic began.
	created := map[string]bool{seed: true}
	failedWrites := 0
	for _, o := range outcomes {
		if o.kind != write {
			continue
		}
		if o.ok() {
			created[o.postID] = true
		} else {
			failedWrites++
		}
	}
	eventsFor := func() map[string]int {
		n := map[string]int{}
		for _, id := range pg.queryStrings(t, `SELECT resource_id FROM audit.events WHERE action = 'blog.post.create'`) {
			n[id]++
		}
		return n
	}
	testkit.Eventually(t, 2*time.Minute, "every successful write's audit event arrives", func() bool {
		events := eventsFor()
		for id := range created {
			if events[id] == 0 {
				return false
			}
		}
		return true
	})
	events := eventsFor()
	var twice, unknown []string
	for id, n := range events {
		if n > 1 {
			twice = append(twice, id)
		}
		if !created[id] {
			unknown = append(unknown, id)
		}
	}
	posts := map[string]bool{}
	for _, id := range pg.queryStrings(t, `SELECT id::text FROM blog.posts`) {
		posts[id] = true
	}
	var orphans []string
	for _, id := range unknown {
		if !posts[id] {
			orphans = append(orphans, id)
		}
	}
	t.Logf("audit: %d successful writes, each recorded once: %t; %d failed writes, %d of them committed all the same (their answer was lost), each recorded once",
		len(created), len(twice) == 0, failedWrites, len(unknown))
	if len(twice) > 0 {
		t.Errorf("%d writes were recorded more than once: %v", len(twice), twice)
	}
	if len(orphans) > 0 {
		t.Errorf("%d audit events name posts that do not exist: %v", len(orphans), orphans)
	}
	for id := range created {
		if !posts[id] {
			t.Errorf("the successful write of post %s is not in the database", id)
		}
	}
	admin, err := authv1connect.NewAuthServiceClient(testkit.H2CClient(t), p.url("gateway")).Login(context.Background(), connect.NewRequest(&authv1.LoginRequest{
		Email: "admin@basalt.local", Password: p.secret(t, "BASALT_ADMIN_PASSWORD"),
	}))
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	audit := auditv1connect.NewAuditServiceClient(testkit.H2CClient(t), p.url("gateway"), connect.WithInterceptors(authn.Bearer(admin.Msg.GetTokens().GetAccessToken())))
	res, err := audit.VerifyLog(context.Background(), connect.NewRequest(&auditv1.VerifyLogRequest{}))
	if err != nil || !res.Msg.GetOk() {
		t.Fatalf("VerifyLog after the faults = %v, %v", res, err)
	}
	if dup := pg.queryInt(t, `SELECT count(*) - count(DISTINCT id) FROM audit.events`); dup != 0 {
		t.Errorf("%d audit events are duplicated", dup)
	}
}

// readinessWatch samples every process's /readyz and the gateway's, and compares each with
// the truth the suite knows: a service's instance is ready while it runs and the database is
// up; the gateway is ready while every service has a ready instance.
type readinessWatch struct {
	p      *platform
	client *http.Client
	done   chan struct{}
	wg     sync.WaitGroup

	database atomic.Bool
	mu       sync.Mutex
	stopped  map[string]bool
	// disagree is when each target's /readyz began to disagree with the truth, zero while
	// they agree; longest is each target's longest disagreement.
	disagree map[string]time.Time
	longest  map[string]time.Duration
	count    int
}

func newReadinessWatch(p *platform) *readinessWatch {
	w := &readinessWatch{p: p, client: &http.Client{Timeout: time.Second}, done: make(chan struct{}),
		stopped: map[string]bool{}, disagree: map[string]time.Time{}, longest: map[string]time.Duration{}}
	w.database.Store(true)
	return w
}

func (w *readinessWatch) setDatabase(up bool) { w.database.Store(up) }

func (w *readinessWatch) setStopped(name string, stopped bool) {
	w.mu.Lock()
	w.stopped[name] = stopped
	w.mu.Unlock()
}

func (w *readinessWatch) start() {
	w.wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
				w.sample()
			}
		}
	})
}

func (w *readinessWatch) stop() {
	close(w.done)
	w.wg.Wait()
	w.client.CloseIdleConnections()
}

func (w *readinessWatch) sample() {
	now := time.Now()
	services := map[string]bool{}
	said := map[string]bool{}
	truth := map[string]bool{}
	for _, proc := range w.p.all {
		if proc.Name == "gateway" {
			continue
		}
		service := proc.Name
		if s, ok := seconds[proc.Name]; ok {
			service = s
		}
		w.mu.Lock()
		stopped := w.stopped[proc.Name]
		w.mu.Unlock()
		// A killed instance is not ready until its restart serves; the truth of a process
		// that runs is whether its database is up.
		truth[proc.Name] = !stopped && proc.Running() && w.database.Load()
		said[proc.Name] = launcher.Ready(w.client, proc.URL)
		if !proc.Running() {
			// Between a kill and the restart nothing answers; the truth is the same.
			truth[proc.Name] = said[proc.Name]
		}
		services[service] = services[service] || truth[proc.Name]
	}
	truth["gateway"] = true
	for _, up := range services {
		truth["gateway"] = truth["gateway"] && up
	}
	said["gateway"] = launcher.Ready(w.client, w.p.url("gateway"))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count++
	for name := range said {
		if said[name] == truth[name] {
			w.disagree[name] = time.Time{}
			continue
		}
		if w.disagree[name].IsZero() {
			w.disagree[name] = now
		}
		w.longest[name] = max(w.longest[name], now.Sub(w.disagree[name]))
	}
}

func (w *readinessWatch) samples() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

func (w *readinessWatch) longestLags() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for name, d := range w.longest {
		parts = append(parts, fmt.Sprintf("%s %s", name, d.Round(10*time.Millisecond)))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none (every sample agreed)"
	}
	return strings.Join(parts, ", ")
}

func (w *readinessWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.count < 100 {
		t.Errorf("only %d readiness samples were taken", w.count)
	}
	for name, d := range w.longest {
		if d > readinessLag {
			t.Errorf("%s's /readyz disagreed with the truth for %s, more than %s", name, d.Round(10*time.Millisecond), readinessLag)
		}
	}
}
