package proxy

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"

	"connectrpc.com/connect"
)

// envelopes follows the length-prefixed messages of a stream as it passes: in a request, to
// refuse a message over the size limit before the upstream reads it; in a response, to know
// whether what has been written ends on a message boundary, since only there can the proxy
// end a broken stream with an error in the client's protocol instead of tearing it down.
type envelopes struct {
	limit  uint64 // the largest message allowed; 0 for any
	prefix [5]byte
	have   int    // bytes of the current prefix seen
	left   uint64 // bytes of the current message still to come
}

// feed advances past b. It reports false when a message begun in b is over the limit.
func (e *envelopes) feed(b []byte) bool {
	_, ok := e.pass(b, false)
	return ok
}

// pass advances past b as feed does, but with stopAtCompressed it stops at the first byte of a
// message whose prefix flags it compressed (bit 0x01), before taking it. It returns how many
// bytes it passed, and false when a message begun in them is over the limit.
func (e *envelopes) pass(b []byte, stopAtCompressed bool) (int, bool) {
	passed := 0
	for passed < len(b) {
		rest := b[passed:]
		if e.left > 0 {
			n := min(uint64(len(rest)), e.left)
			e.left -= n
			passed += int(n)
			continue
		}
		if e.have == 0 && stopAtCompressed && rest[0]&1 != 0 {
			return passed, true
		}
		n := copy(e.prefix[e.have:], rest)
		e.have += n
		passed += n
		if e.have == len(e.prefix) {
			e.left, e.have = uint64(binary.BigEndian.Uint32(e.prefix[1:])), 0
			if e.limit > 0 && e.left > e.limit {
				return passed, false
			}
		}
	}
	return passed, true
}

// boundary reports whether every message begun has been written whole.
func (e *envelopes) boundary() bool { return e.have == 0 && e.left == 0 }

// endFrame is the last message that ends a stream with code in the client's protocol, for a
// Connect stream or gRPC-Web; nil for any other protocol. gRPC over HTTP/2 ends with trailers
// instead.
func endFrame(contentType string, code connect.Code, message string) []byte {
	var flag byte
	var payload []byte
	switch {
	case strings.HasPrefix(contentType, "application/connect+"):
		// Connect's end-of-stream message (flag 0x02) carries the error as JSON.
		flag = 0x02
		payload, _ = json.Marshal(map[string]map[string]string{
			"error": {"code": code.String(), "message": message},
		})
	case strings.HasPrefix(contentType, "application/grpc-web") && !strings.HasPrefix(contentType, "application/grpc-web-text"):
		// gRPC-Web's trailers travel as a message flagged 0x80, in HTTP/1 header form.
		flag = 0x80
		payload = []byte("grpc-status: " + strconv.Itoa(int(code)) + "\r\ngrpc-message: " + message + "\r\n")
	default:
		return nil
	}
	frame := make([]byte, 5, 5+len(payload))
	frame[0] = flag
	binary.BigEndian.PutUint32(frame[1:], uint32(len(payload)))
	return append(frame, payload...)
}
