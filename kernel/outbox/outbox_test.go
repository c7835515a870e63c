package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/clientinfo"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/requestid"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// sink is a stand-in for the audit service's Record over a real Connect server: it keeps
// events by id (deduplicating, as audit does), can be made to fail, and rejects events with
// the action "bad.event" as invalid.
type sink struct {
	auditv1connect.UnimplementedAuditServiceHandler
	mu     sync.Mutex
	events map[string]*auditv1.Event
	calls  int
	down   bool
}

func (s *sink) Record(_ context.Context, req *connect.Request[auditv1.RecordRequest]) (*connect.Response[auditv1.RecordResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return nil, errs.Unavailable(nil, "audit is down")
	}
	for _, ev := range req.Msg.GetEvents() {
		if ev.GetAction() == "bad.event" {
			return nil, errs.Invalid("events", "bad event")
		}
	}
	for _, ev := range req.Msg.GetEvents() {
		s.events[ev.GetId()] = ev
	}
	return connect.NewResponse(&auditv1.RecordResponse{}), nil
}

func (s *sink) setDown(v bool) { s.mu.Lock(); s.down = v; s.mu.Unlock() }

func (s *sink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.events) }

func startSink(t *testing.T) (*sink, auditv1connect.AuditServiceClient) {
	t.Helper()
	s := &sink{events: map[string]*auditv1.Event{}}
	srv, err := server.New("audit", testkit.HTTPConfig(), server.WithLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(auditv1connect.NewAuditServiceHandler(s, srv.HandlerOptions()...))
	testkit.Serve(t, srv)
	return s, auditv1connect.NewAuditServiceClient(testkit.H2CClient(t), srv.URL(), connect.WithGRPC())
}

func backends(t *testing.T) map[string]config.Database {
	return map[string]config.Database{
		"postgres": testkit.Database(t, "outbox"),
		"sqlite":   {URL: config.NewSecret("sqlite://" + filepath.Join(t.TempDir(), "svc.db")), Schema: "svc", MaxConns: 4},
	}
}

func openOutbox(t *testing.T, cfg config.Database) (*outbox.Outbox, *database.DB) {
	t.Helper()
	db, err := database.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	o := outbox.New(db, "svc", outbox.WithLogger(testkit.Logger(t)))
	if err := o.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return o, db
}

func begin(db *database.DB) func(context.Context) (*sql.Tx, error) {
	return func(ctx context.Context) (*sql.Tx, error) { return db.SQL().BeginTx(ctx, nil) }
}

func pending(t *testing.T, o *outbox.Outbox) int {
	t.Helper()
	n, err := o.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMigrateIsVersionedAndAdoptsTheOldTable checks that the outbox's table comes from its own
// migrations, recorded under the component "outbox", each once however often services start,
// and that a table made before migrations were versioned is taken over with its rows.
func TestMigrateIsVersionedAndAdoptsTheOldTable(t *testing.T) {
	t.Parallel()
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := database.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			// The table as the unversioned Migrate made it, with an event waiting in it.
			old := `CREATE TABLE basalt_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL,
				created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,
				dead BOOLEAN NOT NULL DEFAULT FALSE, last_error TEXT NOT NULL DEFAULT '')`
			if db.Dialect() == "postgres" {
				old = `CREATE TABLE basalt_outbox (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text NOT NULL UNIQUE, payload bytea NOT NULL,
					created_at bigint NOT NULL, attempts integer NOT NULL DEFAULT 0, next_attempt_at bigint NOT NULL,
					dead boolean NOT NULL DEFAULT false, last_error text NOT NULL DEFAULT '')`
			}
			// The old code made it as the role that owned the schema, which migrations run as.
			if err := db.Migrate(ctx, func(ctx context.Context, owner *sql.DB) error {
				_, err := owner.ExecContext(ctx, old)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.SQL().ExecContext(ctx, db.Rebind(`INSERT INTO basalt_outbox (event_id, payload, created_at, next_attempt_at) VALUES (?, ?, 0, 0)`), "e1", []byte{1}); err != nil {
				t.Fatal(err)
			}
			o := outbox.New(db, "svc")
			for range 2 {
				if err := o.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
			records, err := migrate.Applied(ctx, db, "outbox")
			var names []string
			for _, r := range records {
				names = append(names, r.Name)
			}
			if want := []string{"create_outbox", "trace_context"}; err != nil || !slices.Equal(names, want) {
				t.Fatalf("outbox migrations applied = %+v (%v), want %v once each", records, err, want)
			}
			if n := pending(t, o); n != 1 {
				t.Fatalf("pending = %d, want the event from before the migration", n)
			}
		})
	}
}

func TestEventsShareTheChangesTransaction(t *testing.T) {
	t.Parallel()
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			o, db := openOutbox(t, cfg)
			ctx := context.Background()
			err := database.WithTx(ctx, begin(db), func(tx *sql.Tx) error {
				return o.Add(ctx, tx, o.Event(ctx, "svc.thing.created", outbox.Success, "thing", "1", nil))
			})
			if err != nil || pending(t, o) != 1 {
				t.Fatalf("committed: %v, pending %d", err, pending(t, o))
			}
			boom := errs.FailedPrecondition("the change failed")
			err = database.WithTx(ctx, begin(db), func(tx *sql.Tx) error {
				if err := o.Add(ctx, tx, o.Event(ctx, "svc.thing.created", outbox.Success, "thing", "2", nil)); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) || pending(t, o) != 1 {
				t.Fatalf("rolled back: %v, pending %d; an event of a change that did not happen must not be kept", err, pending(t, o))
			}
		})
	}
}

func TestEventCarriesWhoWhereAndWhich(t *testing.T) {
	t.Parallel()
	o, _ := openOutbox(t, config.Database{URL: config.NewSecret("sqlite://" + filepath.Join(t.TempDir(), "svc.db")), Schema: "svc", MaxConns: 1})
	ctx := authn.WithPrincipal(context.Background(), authn.Principal{Subject: "user-7"})
	ctx = clientinfo.With(ctx, clientinfo.Info{IP: "198.51.100.4", UserAgent: "browser/1"})
	ctx = requestid.With(ctx, "req-9")
	ev := o.Event(ctx, "svc.thing.deleted", outbox.Success, "thing", "42", map[string]string{"why": "test"})
	if ev.GetActor().GetSubject() != "user-7" || ev.GetActor().GetIp() != "198.51.100.4" || ev.GetActor().GetUserAgent() != "browser/1" ||
		ev.GetRequestId() != "req-9" || ev.GetService() != "svc" || ev.GetResource().GetId() != "42" || len(ev.GetId()) != 36 {
		t.Fatalf("event = %v", ev)
	}
}

func TestRelayDeliversAfterAnOutageWithoutLossOrDuplicates(t *testing.T) {
	t.Parallel()
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			o, _ := openOutbox(t, cfg)
			s, client := startSink(t)
			ctx := context.Background()
			s.setDown(true)
			for range 25 {
				if err := o.Record(ctx, o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil)); err != nil {
					t.Fatal(err)
				}
			}
			opts := outbox.RelayOptions{BatchSize: 10, MaxBackoff: time.Millisecond}
			if _, err := o.RelayOnce(ctx, client, opts); err == nil {
				t.Fatal("relaying to a down audit service reported success")
			}
			if pending(t, o) != 25 || s.count() != 0 {
				t.Fatalf("during the outage: pending %d, delivered %d", pending(t, o), s.count())
			}
			s.setDown(false)
			time.Sleep(5 * time.Millisecond) // past the (1ms) backoff of the failed batch
			for range 10 {
				if n, err := o.RelayOnce(ctx, client, opts); err != nil {
					t.Fatal(err)
				} else if n == 0 {
					break
				}
			}
			if pending(t, o) != 0 || s.count() != 25 {
				t.Fatalf("after the outage: pending %d, delivered %d, want 0 and 25", pending(t, o), s.count())
			}
		})
	}
}

func TestRelayRunsInTheBackgroundUntilStopped(t *testing.T) {
	t.Parallel()
	o, _ := openOutbox(t, testkit.Database(t, "relay"))
	s, client := startSink(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Relay(ctx, client, outbox.RelayOptions{Interval: 20 * time.Millisecond}); close(done) }()
	for range 3 {
		if err := o.Record(context.Background(), o.Event(context.Background(), "svc.thing.created", outbox.Success, "", "", nil)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, "the relay delivers", func() bool { return s.count() == 3 })
	cancel()
	<-done
}

func TestAnInvalidEventIsSetAsideWithoutBlockingTheRest(t *testing.T) {
	t.Parallel()
	cfg := testkit.Database(t, "invalid")
	o, _ := openOutbox(t, cfg)
	s, client := startSink(t)
	ctx := context.Background()
	good1 := o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil)
	bad := o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil)
	bad.Action = "bad.event"
	good2 := o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil)
	if err := o.Record(ctx, good1, bad, good2); err != nil {
		t.Fatal(err)
	}
	if _, err := o.RelayOnce(ctx, client, outbox.RelayOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.count() != 2 || pending(t, o) != 0 {
		t.Fatalf("delivered %d, pending %d; the two good events must go and the bad one be set aside", s.count(), pending(t, o))
	}
	if n := testkit.QueryInt(t, `SELECT count(*) FROM `+cfg.Schema+`.basalt_outbox WHERE dead AND last_error <> ''`); n != 1 {
		t.Fatalf("%d dead events kept, want the bad one with its error", n)
	}
}
