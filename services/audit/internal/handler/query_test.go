package handler_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
)

// record appends events and fails the test on error.
func record(t *testing.T, client auditv1connect.AuditServiceClient, events ...*auditv1.Event) {
	t.Helper()
	if _, err := client.Record(context.Background(), connect.NewRequest(&auditv1.RecordRequest{Events: events})); err != nil {
		t.Fatal(err)
	}
}

func TestListEventsFiltersAndPagesNewestFirst(t *testing.T) {
	t.Parallel()
	url := start(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var all []*auditv1.Event
	for i := range 7 {
		ev := event("auth.login")
		ev.Time = timestamppb.New(base.Add(time.Duration(i) * time.Minute))
		if i%2 == 0 {
			ev.Action = "auth.logout"
			ev.Actor.Subject = "user-2"
			ev.Outcome = auditv1.Outcome_OUTCOME_FAILURE
		}
		all = append(all, ev)
	}
	for name, client := range clients(t, url) {
		t.Run(name, func(t *testing.T) {
			batch := make([]*auditv1.Event, len(all))
			// Each protocol's run gets fresh ids and its own subjects: both share one log.
			for i, ev := range all {
				c := proto.CloneOf(ev)
				c.Id = event("x.y").Id
				c.Actor.Subject += "-" + name
				batch[i] = c
			}
			record(t, client, batch...)
			ctx := context.Background()

			// Pages of 2 over user-2's failures, newest first, until the token runs out.
			filter := &auditv1.EventFilter{ActorSubject: "user-2-" + name, Outcome: auditv1.Outcome_OUTCOME_FAILURE, Action: "auth.logout", Service: "auth"}
			var got []string
			token := ""
			for {
				res, err := client.ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{Filter: filter, PageSize: 2, PageToken: token}))
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range res.Msg.GetEvents() {
					got = append(got, e.GetId())
					if len(e.GetHash()) != chain.HashSize || e.GetSequence() == 0 {
						t.Fatalf("listed event lacks its chain fields: %v", e)
					}
				}
				token = res.Msg.GetNextPageToken()
				if token == "" {
					break
				}
			}
			want := []string{batch[6].GetId(), batch[4].GetId(), batch[2].GetId(), batch[0].GetId()}
			if len(got) != len(want) {
				t.Fatalf("listed %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("listed %v, want %v (newest first)", got, want)
				}
			}

			// A time range keeps [start, end).
			res, err := client.ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{Filter: &auditv1.EventFilter{
				ActorSubject: "user-1-" + name, StartTime: timestamppb.New(base.Add(time.Minute)), EndTime: timestamppb.New(base.Add(3 * time.Minute)),
			}}))
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, e := range res.Msg.GetEvents() {
				ids[e.GetId()] = true
			}
			if !ids[batch[1].GetId()] || len(res.Msg.GetEvents()) != 1 {
				t.Fatalf("time range returned %d events", len(res.Msg.GetEvents()))
			}

			// A token from one filter is refused for another.
			first, err := client.ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{Filter: filter, PageSize: 1}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{PageSize: 1, PageToken: first.Msg.GetNextPageToken()}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("token replayed against another filter: %v", err)
			}
			_, err = client.ListEvents(ctx, connect.NewRequest(&auditv1.ListEventsRequest{PageSize: 1000}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("page_size 1000: %v", err)
			}
		})
	}
}

func TestExportStreamsEventsThenTheCheckpoint(t *testing.T) {
	t.Parallel()
	url := start(t)
	for name, client := range clients(t, url) {
		t.Run(name, func(t *testing.T) {
			record(t, client, event("auth.login"), event("auth.login"), event("auth.logout"))
			stream, err := client.ExportEvents(context.Background(), connect.NewRequest(&auditv1.ExportEventsRequest{
				Filter: &auditv1.EventFilter{Action: "auth.login"},
			}))
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			var cp *auditv1.Checkpoint
			for stream.Receive() {
				switch item := stream.Msg().GetItem().(type) {
				case *auditv1.ExportEventsResponse_Event:
					if cp != nil {
						t.Fatal("an event came after the checkpoint")
					}
					seqs = append(seqs, item.Event.GetSequence())
				case *auditv1.ExportEventsResponse_Checkpoint:
					cp = item.Checkpoint
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] <= seqs[i-1] {
					t.Fatalf("export out of order: %v", seqs)
				}
			}
			if len(seqs) < 2 || cp == nil || cp.GetSequence() < seqs[len(seqs)-1] || len(cp.GetSignature()) != 64 {
				t.Fatalf("export = %v then %v", seqs, cp)
			}
			// Resuming after the first event skips it.
			again, err := client.ExportEvents(context.Background(), connect.NewRequest(&auditv1.ExportEventsRequest{
				Filter: &auditv1.EventFilter{Action: "auth.login"}, AfterSequence: seqs[0],
			}))
			if err != nil {
				t.Fatal(err)
			}
			if again.Receive() && again.Msg().GetEvent().GetSequence() != seqs[1] {
				t.Fatalf("resumed export started at %d, want %d", again.Msg().GetEvent().GetSequence(), seqs[1])
			}
			_ = again.Close()
		})
	}
}

func TestVerifyLogReportsAnIntactLog(t *testing.T) {
	t.Parallel()
	url := start(t)
	for name, client := range clients(t, url) {
		t.Run(name, func(t *testing.T) {
			record(t, client, event("auth.login"), event("auth.logout"))
			res, err := client.VerifyLog(context.Background(), connect.NewRequest(&auditv1.VerifyLogRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Msg.GetOk() || res.Msg.GetEventsChecked() < 2 || res.Msg.GetCheckpointsChecked() < 1 || res.Msg.GetFirstBadSequence() != 0 {
				t.Fatalf("VerifyLog = %v", res.Msg)
			}
		})
	}
}
