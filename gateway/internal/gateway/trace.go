package gateway

import "math/rand/v2"

// newTraceParent returns a W3C traceparent header for a new trace, with a random parent span id
// and the sampled flag, as a span of the gateway would have; traceIDOf reads its trace id. Trace
// ids need to be unique, not secret, so the runtime's fast generator serves (the OpenTelemetry
// SDK does the same). A parent span id must not be zero, so its lowest bit is set.
func newTraceParent() string {
	b := [55]byte{0: '0', 1: '0', 2: '-', 35: '-', 52: '-', 53: '0', 54: '1'}
	putHex(b[3:19], rand.Uint64())
	putHex(b[19:35], rand.Uint64())
	putHex(b[36:52], rand.Uint64()|1)
	return string(b[:])
}

// traceIDOf returns the trace id of a traceparent header newTraceParent made, as hex.
func traceIDOf(traceparent string) string { return traceparent[3:35] }

// putHex writes v into dst, sixteen lowercase hex digits.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}
