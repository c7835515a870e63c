package handler_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/internal/handler"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// start serves the audit API on a real server over a real PostgreSQL schema.
func start(t *testing.T) string { return startB(t) }

func startB(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, testkit.Database(t, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	signer, err := chain.NewSigner(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(db, signer)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New("audit", testkit.HTTPConfig(), server.WithLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(auditv1connect.NewAuditServiceHandler(handler.New(st, chain.NewKeys(signer.PublicKey())), srv.HandlerOptions()...))
	testkit.Serve(t, srv)
	return srv.URL()
}

// clients are the protocols every scenario runs through.
func clients(t *testing.T, url string) map[string]auditv1connect.AuditServiceClient {
	return map[string]auditv1connect.AuditServiceClient{
		"connect": auditv1connect.NewAuditServiceClient(testkit.HTTP1Client(t), url),
		"grpc":    auditv1connect.NewAuditServiceClient(testkit.H2CClient(t), url, connect.WithGRPC()),
	}
}

func event(action string) *auditv1.Event {
	return &auditv1.Event{
		Id:        uuid.NewString(),
		Time:      timestamppb.Now(),
		Service:   "auth",
		Action:    action,
		Outcome:   auditv1.Outcome_OUTCOME_SUCCESS,
		Actor:     &auditv1.Actor{Subject: "user-1", Ip: "2001:db8::1", UserAgent: "curl/8"},
		Resource:  &auditv1.Resource{Type: "session", Id: "s-1"},
		RequestId: "req-1",
		TraceId:   strings.Repeat("ab", 16),
		Metadata:  map[string]string{"method": "password"},
	}
}

func TestRecordAppendsOnceAndAcknowledgesRetries(t *testing.T) {
	t.Parallel()
	url := start(t)
	ctx := context.Background()
	var seq int64
	for name, client := range clients(t, url) {
		t.Run(name, func(t *testing.T) {
			batch := []*auditv1.Event{event("auth.login"), event("auth.logout")}
			res, err := client.Record(ctx, connect.NewRequest(&auditv1.RecordRequest{Events: batch}))
			if err != nil {
				t.Fatal(err)
			}
			receipts := res.Msg.GetReceipts()
			if len(receipts) != 2 {
				t.Fatalf("%d receipts", len(receipts))
			}
			for i, r := range receipts {
				seq++
				if r.GetId() != batch[i].GetId() || r.GetSequence() != seq || r.GetStatus() != auditv1.ReceiptStatus_RECEIPT_STATUS_APPENDED {
					t.Fatalf("receipt %d = %v, want sequence %d appended", i, r, seq)
				}
			}
			res, err = client.Record(ctx, connect.NewRequest(&auditv1.RecordRequest{Events: batch}))
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res.Msg.GetReceipts() {
				if r.GetStatus() != auditv1.ReceiptStatus_RECEIPT_STATUS_DUPLICATE || r.GetSequence() != receipts[i].GetSequence() {
					t.Fatalf("retried receipt %d = %v", i, r)
				}
			}
		})
	}
}

func TestRecordRejectsInvalidEventsNamingTheField(t *testing.T) {
	t.Parallel()
	url := start(t)
	tests := []struct {
		name   string
		mutate func(*auditv1.Event)
		field  string
	}{
		{"id not a uuid", func(e *auditv1.Event) { e.Id = "42" }, "events[0].id"},
		{"sequence set by the client", func(e *auditv1.Event) { e.Sequence = 7 }, "events[0].sequence"},
		{"hash set by the client", func(e *auditv1.Event) { e.Hash = []byte{1} }, "events[0].sequence"},
		{"no time", func(e *auditv1.Event) { e.Time = nil }, "events[0].time"},
		{"time far in the future", func(e *auditv1.Event) { e.Time = timestamppb.New(time.Now().Add(time.Hour)) }, "events[0].time"},
		{"time before 2000", func(e *auditv1.Event) { e.Time = timestamppb.New(time.Unix(0, 0)) }, "events[0].time"},
		{"no service", func(e *auditv1.Event) { e.Service = "" }, "events[0].service"},
		{"upper-case service", func(e *auditv1.Event) { e.Service = "Auth" }, "events[0].service"},
		{"action without a dot", func(e *auditv1.Event) { e.Action = "login" }, "events[0].action"},
		{"no outcome", func(e *auditv1.Event) { e.Outcome = auditv1.Outcome_OUTCOME_UNSPECIFIED }, "events[0].outcome"},
		{"unknown outcome", func(e *auditv1.Event) { e.Outcome = 99 }, "events[0].outcome"},
		{"bad ip", func(e *auditv1.Event) { e.Actor.Ip = "999.1.1.1" }, "events[0].actor.ip"},
		{"bad trace id", func(e *auditv1.Event) { e.TraceId = "xyz" }, "events[0].trace_id"},
		{"long resource id", func(e *auditv1.Event) { e.Resource.Id = strings.Repeat("r", 300) }, "events[0].resource.id"},
		{"bad metadata key", func(e *auditv1.Event) { e.Metadata = map[string]string{"Bad Key": "v"} }, "events[0].metadata"},
		{"long metadata value", func(e *auditv1.Event) { e.Metadata = map[string]string{"k": strings.Repeat("v", 2000)} }, "events[0].metadata"},
	}
	for name, client := range clients(t, url) {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				ev := event("auth.login")
				tt.mutate(ev)
				_, err := client.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{Events: []*auditv1.Event{ev}}))
				assertInvalid(t, err, tt.field)
			})
		}
		t.Run(name+"/empty batch", func(t *testing.T) {
			_, err := client.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{}))
			assertInvalid(t, err, "events")
		})
		t.Run(name+"/batch too large", func(t *testing.T) {
			batch := make([]*auditv1.Event, handler.MaxBatch+1)
			for i := range batch {
				batch[i] = event("auth.login")
			}
			_, err := client.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{Events: batch}))
			assertInvalid(t, err, "events")
		})
	}
}

func assertInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	for _, d := range cerr.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, f := range br.GetFieldViolations() {
				if f.GetField() == field {
					return
				}
			}
			t.Fatalf("violations %v do not name %s", br.GetFieldViolations(), field)
		}
	}
	t.Fatalf("no BadRequest detail in %v", err)
}

func TestUserAgentIsTruncatedNotRejected(t *testing.T) {
	t.Parallel()
	url := start(t)
	client := auditv1connect.NewAuditServiceClient(testkit.HTTP1Client(t), url)
	ev := event("auth.login")
	ev.Actor.UserAgent = strings.Repeat("é", 400) // 800 bytes
	if _, err := client.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{Events: []*auditv1.Event{ev}})); err != nil {
		t.Fatalf("a long user agent must be truncated, got %v", err)
	}
}

// BenchmarkRecord measures Record over Connect with batches of 100 events, the relay's batch
// size; events/s is the log's append throughput from one client.
func BenchmarkRecord(b *testing.B) {
	url := startB(b)
	client := auditv1connect.NewAuditServiceClient(testkit.H2CClient(b), url, connect.WithGRPC())
	const batch = 100
	b.ReportAllocs()
	for b.Loop() {
		events := make([]*auditv1.Event, batch)
		for i := range events {
			events[i] = event("auth.login")
		}
		if _, err := client.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{Events: events})); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}
