package handler_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/blog/v1/blogv1connect"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/kernel/telemetry"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/blog/internal/handler"
)

// spanText is everything of a span that an exporter sends, for a search for a value that must
// not be there.
func spanText(s sdktrace.ReadOnlySpan) string {
	parts := []string{s.Name(), s.Status().Description}
	for _, kv := range s.Attributes() {
		parts = append(parts, string(kv.Key), kv.Value.Emit())
	}
	for _, ev := range s.Events() {
		parts = append(parts, ev.Name)
		for _, kv := range ev.Attributes {
			parts = append(parts, kv.Value.Emit())
		}
	}
	return strings.Join(parts, "\n")
}

func attrOf(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestACallsStatementsAreItsChildSpansAndItsEventsDeliveryLinksBack creates a post whose
// title and body look like secrets, through each protocol, and follows the call in the spans
// the service made: the INSERT is a client span under the RPC's span, with the database
// conventions and the statement without its values, no span holds the values, and the relay's
// delivery of the post's audit event links to the RPC's span.
func TestACallsStatementsAreItsChildSpansAndItsEventsDeliveryLinksBack(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	e := start(t, false, service.WithTelemetryOptions(telemetry.WithSpanProcessor(rec)))
	pc, err := pgx.ParseConfig(e.svc.Config.Database.URL.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	token, _ := e.member(t)
	isCall := func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanKind() == trace.SpanKindServer && s.Name() == strings.TrimPrefix(blogv1connect.BlogServiceCreatePostProcedure, "/")
	}
	seen := map[trace.SpanID]bool{}
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			secret := "sk_live_" + strings.ReplaceAll(name, "-", "") + "_7f3a9c1e5b"
			res, err := e.as(t, token, opts...).CreatePost(context.Background(), connect.NewRequest(&blogv1.CreatePostRequest{Title: "Key " + secret, Body: "password=" + secret}))
			if err != nil {
				t.Fatal(err)
			}
			postID := res.Msg.GetPost().GetPostId()

			// The call's server span: the one CreatePost span no earlier call made.
			var call sdktrace.ReadOnlySpan
			testkit.Eventually(t, 10*time.Second, "the call's span ends", func() bool {
				for _, s := range rec.Ended() {
					if isCall(s) && !seen[s.SpanContext().SpanID()] {
						call = s
					}
				}
				return call != nil
			})
			seen[call.SpanContext().SpanID()] = true
			var insert sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Parent().SpanID() == call.SpanContext().SpanID() && attrOf(s, "db.operation.name") == "INSERT" && strings.Contains(attrOf(s, "db.query.text"), "posts") {
					insert = s
				}
			}
			if insert == nil {
				t.Fatalf("no INSERT into posts under the call's span %s", call.SpanContext().SpanID())
			}
			want := map[attribute.Key]string{
				"db.system.name": "postgresql",
				"db.namespace":   pc.Database + "." + e.svc.Config.Database.Schema,
				"server.address": pc.Host,
			}
			for k, v := range want {
				if got := attrOf(insert, k); got != v {
					t.Errorf("the INSERT's %s = %q, want %q", k, got, v)
				}
			}
			if q := attrOf(insert, "db.query.text"); !strings.Contains(q, "$1") || insert.SpanKind() != trace.SpanKindClient {
				t.Errorf("the INSERT is a %v span with db.query.text %q; want a client span with the parameterised statement", insert.SpanKind(), q)
			}
			for _, s := range rec.Ended() {
				if text := spanText(s); strings.Contains(text, secret) {
					t.Errorf("span %q carries the post's values:\n%s", s.Name(), text)
				}
			}

			// The audit event of the post goes out in a delivery linked to the call.
			testkit.Eventually(t, 10*time.Second, "the post's event reaches audit", func() bool {
				for _, ev := range e.auth.Events() {
					if ev.GetAction() == handler.ActionCreate && ev.GetResource().GetId() == postID {
						return true
					}
				}
				return false
			})
			testkit.Eventually(t, 10*time.Second, "a delivery links to the call", func() bool {
				return slices.ContainsFunc(rec.Ended(), func(s sdktrace.ReadOnlySpan) bool {
					return s.Name() == "outbox.relay" && linksTo(s, call)
				})
			})
		})
	}
}

// linksTo reports whether span s links to span to.
func linksTo(s, to sdktrace.ReadOnlySpan) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == to.SpanContext().TraceID() && l.SpanContext.SpanID() == to.SpanContext().SpanID() {
			return true
		}
	}
	return false
}
