package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/basaltplatform/basalt/kernel/logging"
	"github.com/basaltplatform/basalt/kernel/requestid"
)

func TestJSONLinesCarryRequestAndTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := logging.New(&buf, logging.WithFormat(logging.FormatAuto), logging.WithAttrs())
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(requestid.With(context.Background(), "req-1"), "op")
	log.InfoContext(ctx, "hello", "n", 1)
	span.End()

	// A bytes.Buffer is not a terminal, so auto means JSON.
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not JSON: %q: %v", buf.String(), err)
	}
	if line["request_id"] != "req-1" {
		t.Errorf("request_id = %v", line["request_id"])
	}
	if line["trace_id"] != span.SpanContext().TraceID().String() {
		t.Errorf("trace_id = %v, want %s", line["trace_id"], span.SpanContext().TraceID())
	}
}

func TestTextFormatAndLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := logging.New(&buf, logging.WithFormat(logging.FormatText), logging.WithLevel(logLevelWarn{}))
	log.Info("dropped")
	log.Warn("kept", "k", "v")
	out := buf.String()
	if strings.Contains(out, "dropped") || !strings.Contains(out, "msg=kept k=v") {
		t.Fatalf("output = %q", out)
	}
}

type logLevelWarn struct{}

func (logLevelWarn) Level() slog.Level { return 4 }
