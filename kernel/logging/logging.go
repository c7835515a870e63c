// Package logging builds the platform's slog loggers: JSON in production, readable text on a
// terminal, and every line of a request tagged with its request id and trace id.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"

	"github.com/basaltplatform/basalt/kernel/requestid"
)

// Format selects the output encoding.
type Format string

// The formats New understands.
const (
	FormatAuto Format = "auto"
	FormatJSON Format = "json"
	FormatText Format = "text"
)

type options struct {
	level  slog.Leveler
	format Format
	attrs  []slog.Attr
}

// Option configures New.
type Option func(*options)

// WithLevel sets the minimum level (default info).
func WithLevel(l slog.Leveler) Option { return func(o *options) { o.level = l } }

// WithFormat sets the format (default auto).
func WithFormat(f Format) Option { return func(o *options) { o.format = f } }

// WithAttrs adds attributes to every line (the service name and instance, for example).
func WithAttrs(attrs ...slog.Attr) Option {
	return func(o *options) { o.attrs = append(o.attrs, attrs...) }
}

// New returns a logger writing to w.
func New(w io.Writer, opts ...Option) *slog.Logger {
	o := options{level: slog.LevelInfo, format: FormatAuto}
	for _, opt := range opts {
		opt(&o)
	}
	format := o.format
	if format == FormatAuto {
		format = FormatJSON
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = FormatText
		}
	}
	hopts := &slog.HandlerOptions{Level: o.level}
	var h slog.Handler
	if format == FormatText {
		h = slog.NewTextHandler(w, hopts)
	} else {
		h = slog.NewJSONHandler(w, hopts)
	}
	if len(o.attrs) > 0 {
		h = h.WithAttrs(o.attrs)
	}
	return slog.New(contextHandler{h})
}

// Discard returns a logger that writes nothing, for tests and tools.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// contextHandler adds the request id and the trace and span ids found in a record's context, so
// that a handler's log lines can be joined with the gateway's access log and with traces
// without every call site passing them.
type contextHandler struct {
	slog.Handler
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := requestid.From(ctx); id != "" {
			r.AddAttrs(slog.String("request_id", id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
