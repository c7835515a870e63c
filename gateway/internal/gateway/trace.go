package gateway

import (
	"encoding/hex"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// newTraceParent returns a new trace id and a W3C traceparent header naming it, with a random
// parent span id and the sampled flag, as a span of the gateway would have. Trace ids need to
// be unique, not secret, so the runtime's fast generator serves (the OpenTelemetry SDK does the
// same).
func newTraceParent() (trace.TraceID, string) {
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
	return id, string(b[:])
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
