package gateway

import (
	"encoding/hex"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// newTraceParent returns a W3C traceparent header for a new trace, with a random parent span id
// and the sampled flag, as a span of the gateway would have; traceIDOf reads its trace id. Trace
// ids need to be unique, not secret, so the runtime's fast generator serves (the OpenTelemetry
// SDK does the same).
func newTraceParent() string {
	var id trace.TraceID
	var span trace.SpanID
	putUint64(id[:8], rand.Uint64())
	putUint64(id[8:], rand.Uint64())
	putUint64(span[:], rand.Uint64()|1)
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], id[:])
	b[35] = '-'
	hex.Encode(b[36:52], span[:])
	copy(b[52:], "-01")
	return string(b[:])
}

// traceIDOf returns the trace id of a traceparent header newTraceParent made, as hex.
func traceIDOf(traceparent string) string { return traceparent[3:35] }

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
