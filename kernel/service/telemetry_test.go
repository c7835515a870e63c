package service_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/internal/echo"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/service"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// scrape reads the service's /metrics as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// rpcLabels are the labels an RPC's series may carry: what the call was and how it ended, and
// what made the series. Anything naming the peer or the request would multiply the series.
var rpcLabels = []string{"rpc_method", "rpc_response_status_code", "rpc_system_name", "error_type", "service_name", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}

// TestServicesServeTheirMetricsOnTheAdminPort runs a service on PostgreSQL with its admin
// listener on, calls it, leaves an audit event waiting (audit is down), and reads /metrics:
// the RPC by procedure and code, the pool's state and the outbox's backlog are there.
func TestServicesServeTheirMetricsOnTheAdminPort(t *testing.T) {
	t.Parallel()
	a := authority.New(t)
	a.Fail(auditv1connect.AuditServiceRecordProcedure, true)
	cfg := a.ServiceConfig(t, "notes")
	cfg.HTTP.AdminListen = "127.0.0.1:0"
	ctx := context.Background()
	svc, err := service.New(ctx, cfg, testkit.LogWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	svc.Server.Mount(echo.Handler(nil, nil, svc.Server.HandlerOptions()...))
	testkit.Serve(t, svc)

	// The echo service's procedures carry no access rule, so the call is refused: its code is
	// what the metrics must name.
	_, err = echo.NewClient(testkit.HTTP1Client(t), svc.Server.URL()).Echo(ctx, connect.NewRequest(wrapperspb.String("hello")))
	if err == nil {
		t.Fatal("a procedure without an access rule answered")
	}
	wantCode := strings.ToUpper(connect.CodeOf(err).String())
	if err := svc.Outbox.Record(ctx, svc.Outbox.Event(ctx, "notes.note.created", outbox.Success, "", "", nil)); err != nil {
		t.Fatal(err)
	}

	url := "http://" + svc.Server.AdminAddr().String() + "/metrics"
	var families map[string]*dto.MetricFamily
	var call *dto.Metric
	testkit.Eventually(t, 10*time.Second, "the call reaches /metrics", func() bool {
		families = scrape(t, url)
		for _, m := range families["rpc_server_call_duration_seconds"].GetMetric() {
			if l := labels(m); l["rpc_method"] == strings.TrimPrefix(echo.UnaryProcedure, "/") {
				call = m
			}
		}
		return call != nil
	})
	l := labels(call)
	if l["rpc_response_status_code"] != wantCode || call.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("the call's series is %v with %d calls, want code %s and one call", l, call.GetHistogram().GetSampleCount(), wantCode)
	}
	for name := range l {
		if !slices.Contains(rpcLabels, name) {
			t.Errorf("the call's series has the label %s; want only %v", name, rpcLabels)
		}
	}

	gauge := func(name string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok || len(f.GetMetric()) != 1 {
			t.Fatalf("/metrics has no single %s: %v", name, f)
		}
		m := f.GetMetric()[0]
		if labels(m)["service_name"] != "notes" {
			t.Errorf("%s is labelled %v, want service_name=notes", name, labels(m))
		}
		return m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if got := gauge("pgxpool_max_connections"); got != float64(cfg.Database.MaxConns) {
		t.Errorf("pgxpool_max_connections = %v, want %d", got, cfg.Database.MaxConns)
	}
	for _, name := range []string{"pgxpool_acquired_connections", "pgxpool_idle_connections", "pgxpool_total_connections", "pgxpool_acquires_total", "pgxpool_acquire_duration_nanoseconds_total", "pgxpool_empty_acquire_total"} {
		gauge(name)
	}
	if got := gauge("basalt_outbox_backlog"); got != 1 {
		t.Errorf("basalt_outbox_backlog = %v, want the event audit did not take", got)
	}
	if got := gauge("basalt_outbox_oldest_age_seconds"); got < 0 {
		t.Errorf("basalt_outbox_oldest_age_seconds = %v", got)
	}
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("/metrics lacks Go's runtime metrics")
	}
}
