package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/basaltplatform/basalt/kernel/telemetry"
)

// collector is a minimal OTLP/HTTP endpoint that counts what it receives per path.
type collector struct {
	mu    sync.Mutex
	bytes map[string]int
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.bytes[r.URL.Path] += len(body)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *collector) received(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes[path]
}

func TestExportsOverOTLPWhenConfigured(t *testing.T) {
	t.Parallel()
	col := &collector{bytes: map[string]int{}}
	srv := httptest.NewServer(col)
	defer srv.Close()

	ctx := context.Background()
	tel, err := telemetry.New(ctx, "audit", "test", telemetry.WithOTLPEndpoint(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider().Tracer("t").Start(ctx, "work")
	span.End()
	counter, err := tel.MeterProvider().Meter("t").Int64Counter("things")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(ctx, 3)
	if err := tel.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if col.received("/v1/traces") == 0 {
		t.Error("no traces reached the collector")
	}
	if col.received("/v1/metrics") == 0 {
		t.Error("no metrics reached the collector")
	}
}

func TestTracesWithoutExporterStillPropagate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tel, err := telemetry.New(ctx, "audit", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	ctx, span := tel.TracerProvider().Tracer("t").Start(ctx, "work")
	defer span.End()
	carrier := propagation.MapCarrier{}
	tel.Propagator().Inject(ctx, carrier)
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if carrier["traceparent"] != want {
		t.Fatalf("traceparent = %q, want %q", carrier["traceparent"], want)
	}
}

func TestPrometheusServesTheMeterProvidersMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tel, err := telemetry.New(ctx, "blog", "test", telemetry.WithPrometheus())
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	counter, err := tel.MeterProvider().Meter("t").Int64Counter("basalt.things", metric.WithUnit("{thing}"))
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(ctx, 3, metric.WithAttributes(attribute.String("kind", "round")))

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{"go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("the metrics lack %q:\n%s", want, body)
		}
	}
	// The series itself names its service, not only target_info.
	var series string
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "basalt_things_total{") {
			series = line
		}
	}
	if !strings.Contains(series, `kind="round"`) || !strings.Contains(series, `service_name="blog"`) || !strings.HasSuffix(strings.TrimSpace(series), " 3") {
		t.Errorf("basalt_things_total is %q; want 3 with kind=round and service_name=blog:\n%s", series, body)
	}
}

func TestNoMetricsHandlerWithoutPrometheus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tel, err := telemetry.New(ctx, "blog", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	if tel.MetricsHandler() != nil {
		t.Fatal("MetricsHandler is set without WithPrometheus")
	}
}

func TestSpanProcessorSeesEverySpan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(ctx, "blog", "test", telemetry.WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	_, span := tel.TracerProvider().Tracer("t").Start(ctx, "work")
	span.End()
	if ended := rec.Ended(); len(ended) != 1 || ended[0].Name() != "work" {
		t.Fatalf("recorded %v, want the one span named work", ended)
	}
}
