package outbox_test

import (
	"context"
	"database/sql"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/telemetry"
)

func newTelemetry(t *testing.T, opts ...telemetry.Option) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(context.Background(), "svc", "test", append(opts, telemetry.WithSpanProcessor(rec))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, rec
}

// TestADeliveryLinksToTheRequestsThatWroteItsEvents writes events in two traced requests and
// one untraced, relays them in one batch, and checks the delivery's span: a trace of its own,
// linked to exactly the two requests' spans.
func TestADeliveryLinksToTheRequestsThatWroteItsEvents(t *testing.T) {
	t.Parallel()
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tel, rec := newTelemetry(t)
			db, err := database.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			o := outbox.New(db, "svc", outbox.WithTracerProvider(tel.TracerProvider()))
			if err := o.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, client := startSink(t)

			tracer := tel.TracerProvider().Tracer("test")
			var writers []trace.SpanContext
			for range 2 {
				ctx, span := tracer.Start(context.Background(), "request")
				// One in a transaction of the caller's, one in the outbox's own.
				err := database.WithTx(ctx, begin(db), func(tx *sql.Tx) error {
					return o.Add(ctx, tx, o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil))
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := o.Record(ctx, o.Event(ctx, "svc.thing.updated", outbox.Success, "", "", nil)); err != nil {
					t.Fatal(err)
				}
				span.End()
				writers = append(writers, span.SpanContext())
			}
			untraced := context.Background()
			if err := o.Record(untraced, o.Event(untraced, "svc.thing.created", outbox.Success, "", "", nil)); err != nil {
				t.Fatal(err)
			}
			if n, err := o.RelayOnce(context.Background(), client, outbox.RelayOptions{}); err != nil || n != 5 {
				t.Fatalf("RelayOnce = %d, %v; want the 5 events", n, err)
			}

			var deliveries int
			for _, span := range rec.Ended() {
				if span.Name() != "outbox.relay" {
					continue
				}
				deliveries++
				if span.Parent().IsValid() {
					t.Errorf("the delivery's parent is %v; want a trace of its own", span.Parent())
				}
				if span.SpanKind() != trace.SpanKindProducer {
					t.Errorf("the delivery is a %v span, want a producer", span.SpanKind())
				}
				// A link names a span by its trace and span ids.
				type spanID struct {
					trace trace.TraceID
					span  trace.SpanID
				}
				var linked []spanID
				for _, l := range span.Links() {
					id := spanID{l.SpanContext.TraceID(), l.SpanContext.SpanID()}
					if !slices.Contains(linked, id) {
						linked = append(linked, id)
					}
				}
				if len(linked) != len(writers) ||
					!slices.Contains(linked, spanID{writers[0].TraceID(), writers[0].SpanID()}) ||
					!slices.Contains(linked, spanID{writers[1].TraceID(), writers[1].SpanID()}) {
					t.Errorf("the delivery links to %v, want the writers' spans %v", linked, writers)
				}
				if len(span.Links()) != 4 {
					t.Errorf("the delivery has %d links, want one per traced event (4)", len(span.Links()))
				}
			}
			if deliveries != 1 {
				t.Fatalf("%d delivery spans, want 1", deliveries)
			}
		})
	}
}

func TestTheBacklogIsAMetric(t *testing.T) {
	t.Parallel()
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reader := sdkmetric.NewManualReader()
			tel, _ := newTelemetry(t, telemetry.WithMetricReader(reader))
			db, err := database.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			start := time.UnixMilli(1_800_000_000_000)
			var now atomic.Int64
			now.Store(start.UnixMilli())
			o := outbox.New(db, "svc", outbox.WithClock(func() time.Time { return time.UnixMilli(now.Load()) }))
			if err := o.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			reg, err := o.ObserveBacklog(tel.MeterProvider())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = reg.Unregister() })
			collect := func() map[string]float64 {
				t.Helper()
				var rm metricdata.ResourceMetrics
				if err := reader.Collect(context.Background(), &rm); err != nil {
					t.Fatal(err)
				}
				got := map[string]float64{}
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						switch data := m.Data.(type) {
						case metricdata.Gauge[int64]:
							got[m.Name] = float64(data.DataPoints[0].Value)
						case metricdata.Gauge[float64]:
							got[m.Name] = data.DataPoints[0].Value
						}
					}
				}
				return got
			}
			want := func(step string, backlog, age, dead float64) {
				t.Helper()
				got := collect()
				if got["basalt.outbox.backlog"] != backlog || got["basalt.outbox.oldest_age"] != age || got["basalt.outbox.dead"] != dead {
					t.Fatalf("%s: got %v, want backlog %v, oldest_age %v, dead %v", step, got, backlog, age, dead)
				}
			}

			want("empty", 0, 0, 0)
			ctx := context.Background()
			if err := o.Record(ctx, o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil)); err != nil {
				t.Fatal(err)
			}
			now.Add(30_000)
			bad := o.Event(ctx, "svc.thing.created", outbox.Success, "", "", nil)
			bad.Action = "bad.event"
			if err := o.Record(ctx, bad); err != nil {
				t.Fatal(err)
			}
			now.Add(60_000)
			want("two waiting, the first for 90s", 2, 90, 0)

			_, client := startSink(t)
			if _, err := o.RelayOnce(ctx, client, outbox.RelayOptions{}); err != nil {
				t.Fatal(err)
			}
			want("relayed, the bad one set aside", 0, 0, 1)
		})
	}
}
