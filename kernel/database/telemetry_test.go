package database_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/telemetry"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// secret is a value no span may carry: the tests bind it as a statement's argument.
const secret = "hunter2-s3cr3t-0f-the-test"

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

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// carries reports whether any part of a span that an exporter sends holds s: its name,
// attributes, status, events and their attributes.
func carries(span sdktrace.ReadOnlySpan, s string) bool {
	texts := []string{span.Name(), span.Status().Description}
	for _, kv := range span.Attributes() {
		texts = append(texts, kv.Value.Emit())
	}
	for _, ev := range span.Events() {
		texts = append(texts, ev.Name)
		for _, kv := range ev.Attributes {
			texts = append(texts, kv.Value.Emit())
		}
	}
	for _, text := range texts {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

func TestStatementsAreSpansOfTheRequestWithoutTheirArguments(t *testing.T) {
	t.Parallel()
	tel, rec := newTelemetry(t)
	cfg := testkit.Database(t, "spans")
	db := open(t, cfg, database.WithTelemetry(tel))
	migrateSQL(t, db, `CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)`)

	ctx, request := tel.TracerProvider().Tracer("test").Start(context.Background(), "request")
	exec(t, db, `INSERT INTO notes (id, body) VALUES ($1, $2)`, 1, secret)
	var n int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM notes WHERE body = $1`, secret).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
	if _, err := db.SQL().ExecContext(ctx, `INSERT INTO notes (id, body) VALUES ($1, $2)`, 2, secret); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL quotes an argument it cannot parse in its error message.
	if _, err := db.SQL().ExecContext(ctx, `SELECT $1::uuid`, secret); err == nil || !strings.Contains(err.Error(), secret) {
		t.Fatalf("a bad uuid: want an error quoting the argument, got %v", err)
	}
	request.End()

	pc, err := pgx.ParseConfig(cfg.URL.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	want := map[attribute.Key]string{
		"db.system.name": "postgresql",
		"db.namespace":   pc.Database + "." + cfg.Schema,
		"server.address": pc.Host,
		"server.port":    strconv.Itoa(int(pc.Port)),
	}
	// Statements are spans under the request; pgx prepares a statement the first time a
	// connection runs it, in a span under the statement's.
	ids := map[trace.SpanID]bool{}
	for _, span := range rec.Ended() {
		if span.Parent().SpanID() == request.SpanContext().SpanID() {
			ids[span.SpanContext().SpanID()] = true
		}
	}
	statements := map[string]string{}
	for _, span := range rec.Ended() {
		if carries(span, secret) {
			t.Errorf("span %q carries an argument's value: %v %v %v", span.Name(), span.Attributes(), span.Status(), span.Events())
		}
		a := attrs(span)
		if a["db.system.name"].AsString() == "" {
			continue
		}
		_, prepared := a["pgx.prepare_stmt.name"]
		switch {
		case span.SpanKind() != trace.SpanKindClient:
			t.Errorf("span %q is a %v span, want a client span", span.Name(), span.SpanKind())
		case prepared && !ids[span.Parent().SpanID()], !prepared && !ids[span.SpanContext().SpanID()]:
			// The INSERT outside the request (exec's context has no span) made none.
			t.Errorf("span %q (%v) is a child of %v, not of the request %v", span.Name(), a["db.query.text"].Emit(), span.Parent().SpanID(), request.SpanContext().SpanID())
		}
		for k, v := range want {
			if a[k].Emit() != v {
				t.Errorf("span %q: %s = %q, want %q", span.Name(), k, a[k].Emit(), v)
			}
		}
		if a["db.operation.name"].AsString() != span.Name() {
			t.Errorf("span %q: db.operation.name = %q, want the span's name", span.Name(), a["db.operation.name"].AsString())
		}
		if !prepared {
			statements[a["db.query.text"].AsString()] = span.Name()
		}
	}
	for query, op := range map[string]string{
		`SELECT count(*) FROM notes WHERE body = $1`:   "SELECT",
		`INSERT INTO notes (id, body) VALUES ($1, $2)`: "INSERT",
		`SELECT $1::uuid`: "SELECT",
	} {
		if statements[query] != op {
			t.Errorf("no %s span with db.query.text %q; spans: %v", op, query, statements)
		}
	}
	if len(statements) != 3 {
		t.Errorf("want the request's 3 statements as spans, got %v", statements)
	}
}

func TestPoolStatisticsAreMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	tel, _ := newTelemetry(t, telemetry.WithMetricReader(reader))
	cfg := testkit.Database(t, "poolstats")
	db := open(t, cfg, database.WithTelemetry(tel))
	exec(t, db, `SELECT 1`)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				got[m.Name] = data.DataPoints[0].Value
			case metricdata.Gauge[int64]:
				got[m.Name] = data.DataPoints[0].Value
			}
		}
	}
	if got["pgxpool.max_connections"] != int64(cfg.MaxConns) {
		t.Errorf("pgxpool.max_connections = %d, want %d (all: %v)", got["pgxpool.max_connections"], cfg.MaxConns, got)
	}
	if got["pgxpool.acquires"] < 1 || got["pgxpool.total_connections"] < 1 {
		t.Errorf("want at least one acquire and one connection, got %v", got)
	}
	for _, name := range []string{"pgxpool.acquired_connections", "pgxpool.idle_connections", "pgxpool.acquire_duration", "pgxpool.empty_acquire"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s among %v", name, got)
		}
	}
}
