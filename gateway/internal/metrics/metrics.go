// Package metrics keeps the gateway's Prometheus metrics in a registry of its own (no global
// registry) and serves them on the admin listener. Per-route series are created at start-up, so
// recording a request is a few atomic adds with no label lookup.
package metrics

import (
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// codes are the label values of the code label, indexed by connect.Code; index 0 is "ok".
var codes = func() [17]string {
	var out [17]string
	out[0] = "ok"
	for c := connect.CodeCanceled; c <= connect.CodeUnauthenticated; c++ {
		out[c] = c.String()
	}
	return out
}()

// Metrics holds the gateway's series.
type Metrics struct {
	registry *prometheus.Registry
	routes   []routeSeries
	fastPath prometheus.Counter
	refused  prometheus.Counter
}

type routeSeries struct {
	requests  [17]prometheus.Counter
	latency   prometheus.Observer
	limited   prometheus.Counter
	upstreamE prometheus.Counter
}

// New returns the metrics of the named routes (by index). inFlight reports the requests being
// served and connections the client connections open; their gauges read them when scraped, so
// that serving a request touches one counter (the caller's) rather than two.
func New(routes []string, inFlight, connections func() int64) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "basalt_gateway_requests_total",
		Help: "Requests the gateway answered, by route and Connect code.",
	}, []string{"route", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "basalt_gateway_request_duration_seconds",
		Help:    "Time from the request's arrival to the end of its response, by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "basalt_gateway_rate_limited_total",
		Help: "Requests refused with resource_exhausted by the rate limiter, by route.",
	}, []string{"route"})
	upstreamErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "basalt_gateway_upstream_errors_total",
		Help: "Requests that could not be forwarded or whose upstream failed mid-response, by route.",
	}, []string{"route"})
	inFlightGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "basalt_gateway_in_flight_requests",
		Help: "Requests being served.",
	}, func() float64 { return float64(inFlight()) })
	fastPath := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "basalt_gateway_fast_path_requests_total",
		Help: "Requests served by the gateway's own HTTP/1.1 server rather than net/http's.",
	})
	connectionsGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "basalt_gateway_open_connections",
		Help: "Client connections open (limits.max_connections bounds them).",
	}, func() float64 { return float64(connections()) })
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "basalt_gateway_refused_connections_total",
		Help: "Client connections closed at once because limits.max_connections were open.",
	})
	reg.MustRegister(requests, latency, limited, upstreamErrors, inFlightGauge, fastPath, connectionsGauge, refused)
	m := &Metrics{registry: reg, routes: make([]routeSeries, len(routes)+1), fastPath: fastPath, refused: refused}
	for i, name := range append(routes, "unrouted") {
		s := &m.routes[i]
		for c, code := range codes {
			s.requests[c] = requests.WithLabelValues(name, code)
		}
		s.latency = latency.WithLabelValues(name)
		s.limited = limited.WithLabelValues(name)
		s.upstreamE = upstreamErrors.WithLabelValues(name)
	}
	return m
}

// Unrouted is the index to record requests that matched no route under.
func (m *Metrics) Unrouted() int { return len(m.routes) - 1 }

// Request records an answered request.
func (m *Metrics) Request(route int, code connect.Code, d time.Duration) {
	s := &m.routes[route]
	if int(code) >= len(s.requests) {
		code = connect.CodeUnknown
	}
	s.requests[code].Inc()
	s.latency.Observe(d.Seconds())
}

// RateLimited records a refusal by the rate limiter.
func (m *Metrics) RateLimited(route int) { m.routes[route].limited.Inc() }

// UpstreamError records a failure to forward a request or to relay its response.
func (m *Metrics) UpstreamError(route int) { m.routes[route].upstreamE.Inc() }

// FastPath counts a request served by the gateway's own HTTP/1.1 server.
func (m *Metrics) FastPath() { m.fastPath.Inc() }

// RefusedConnection counts a client connection closed for the connection limit.
func (m *Metrics) RefusedConnection() { m.refused.Inc() }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
