// Package telemetry sets up OpenTelemetry traces and metrics for one process.
//
// Telemetry returns its providers instead of installing globals, so that tests can run several
// services in one process and a library never reports into a provider it was not given. Traces
// are always generated (with W3C trace context propagation), so that log lines and audit
// events carry trace ids; they are exported only when an OTLP endpoint is configured. Metrics
// go out over OTLP too, and with WithPrometheus are also kept in a Prometheus registry of the
// process's own, which MetricsHandler serves for a scraper to pull.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry holds one process's providers.
type Telemetry struct {
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	propagator propagation.TextMapPropagator
	metrics    http.Handler
}

type options struct {
	endpoint       string
	sampleRatio    float64
	metricInterval time.Duration
	attrs          []attribute.KeyValue
	readers        []sdkmetric.Reader
	processors     []sdktrace.SpanProcessor
	prometheus     bool
}

// Option configures New.
type Option func(*options)

// WithOTLPEndpoint exports traces and metrics over OTLP/HTTP to the collector at base URL u
// (as OTEL_EXPORTER_OTLP_ENDPOINT: the signal paths /v1/traces and /v1/metrics are appended).
func WithOTLPEndpoint(u string) Option { return func(o *options) { o.endpoint = u } }

// WithSampleRatio samples this fraction of new traces; child spans follow their parent.
func WithSampleRatio(r float64) Option { return func(o *options) { o.sampleRatio = r } }

// WithMetricInterval sets how often metrics are exported (default 15s).
func WithMetricInterval(d time.Duration) Option { return func(o *options) { o.metricInterval = d } }

// WithAttributes adds resource attributes (the instance id, for example).
func WithAttributes(kv ...attribute.KeyValue) Option {
	return func(o *options) { o.attrs = append(o.attrs, kv...) }
}

// WithMetricReader adds a metric reader, such as a Prometheus exporter.
func WithMetricReader(r sdkmetric.Reader) Option {
	return func(o *options) { o.readers = append(o.readers, r) }
}

// WithSpanProcessor adds a span processor: tests record spans in memory with tracetest's
// SpanRecorder.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(o *options) { o.processors = append(o.processors, p) }
}

// WithPrometheus also keeps every metric in a Prometheus registry of the process's own, beside
// Go's runtime and process collectors, for MetricsHandler to serve. Series are labelled with
// the service's name (service_name); the other resource attributes are on target_info.
func WithPrometheus() Option { return func(o *options) { o.prometheus = true } }

// New builds the providers for service.
func New(ctx context.Context, service, version string, opts ...Option) (*Telemetry, error) {
	o := options{sampleRatio: 1, metricInterval: 15 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	attrs := append([]attribute.KeyValue{
		attribute.String("service.name", service),
		attribute.String("service.version", version),
		attribute.String("service.namespace", "basalt"),
	}, o.attrs...)
	// NewSchemaless avoids a schema-URL conflict with resource.Default when the SDK and the
	// semconv package we would import disagree on versions.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, err
	}

	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.sampleRatio))),
	}
	for _, p := range o.processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	for _, r := range o.readers {
		mpOpts = append(mpOpts, sdkmetric.WithReader(r))
	}
	var metrics http.Handler
	if o.prometheus {
		reader, handler, err := prometheusReader()
		if err != nil {
			return nil, err
		}
		mpOpts = append(mpOpts, sdkmetric.WithReader(reader))
		metrics = handler
	}
	if o.endpoint != "" {
		tracesURL, err := signalURL(o.endpoint, "v1/traces")
		if err != nil {
			return nil, err
		}
		metricsURL, err := signalURL(o.endpoint, "v1/metrics")
		if err != nil {
			return nil, err
		}
		te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(tracesURL))
		if err != nil {
			return nil, err
		}
		me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(metricsURL))
		if err != nil {
			return nil, errors.Join(err, te.Shutdown(ctx))
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(te))
		mpOpts = append(mpOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(o.metricInterval))))
	}
	return &Telemetry{
		tp:         sdktrace.NewTracerProvider(tpOpts...),
		mp:         sdkmetric.NewMeterProvider(mpOpts...),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		metrics:    metrics,
	}, nil
}

// prometheusReader returns a metric reader that hands the meter provider's metrics to a
// registry of its own when scraped, and the handler that serves that registry.
func prometheusReader() (sdkmetric.Reader, http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	exporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// A scraper's job label is often not the service (one job scrapes every pod), so each
		// series names its service itself; the instance's other attributes are on target_info.
		otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter("service.name")),
	)
	if err != nil {
		return nil, nil, err
	}
	return exporter, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), nil
}

func signalURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + path
	return u.String(), nil
}

// TracerProvider returns the trace provider.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider returns the meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// MetricsHandler serves the metrics in the Prometheus text format; it is nil unless New was
// given WithPrometheus.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Propagator returns the W3C trace context and baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// ForceFlush exports everything buffered so far.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	return errors.Join(t.tp.ForceFlush(ctx), t.mp.ForceFlush(ctx))
}

// Shutdown flushes and stops both providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
}
