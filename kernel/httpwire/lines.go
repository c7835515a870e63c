package httpwire

import (
	"bytes"
	"strings"
)

// Lines splits the header blocks that one connection receives into lines, and keeps the lines
// for the next block. A line that repeats the line at the same place in the block before is
// returned as the same string rather than copied again. A client's requests, and an upstream's
// answers, repeat most of their lines (the access token, the content type, the host). So a
// block usually costs no allocation, or one for the lines that changed. HTTP/2's header
// compression rests on the same observation.
//
// The strings are ordinary Go strings and may be kept. A line kept from an earlier block also
// keeps alive the allocation it was copied into. Lines therefore bounds what its lines can hold
// alive to twice the newest block's size plus maxSlack: when that bound would be passed, every
// line is copied anew.
type Lines struct {
	lines []string
	// spans and same are Split's scratch: where each line of the block lies, and whether it
	// repeats the line before it at its place.
	spans []span
	same  []bool
	// held is the size of the allocations made since every line was last copied anew. The
	// lines cannot hold alive more than that.
	held int
}

type span struct{ start, end int }

// maxSlack is what the lines may hold alive beyond twice the newest block: a connection whose
// requests differ in a short line or two (a content length, a request id) copies all its lines
// about once every few dozen requests.
const maxSlack = 1024

// maxKept is the most lines a block may have for Lines to keep them for the next block.
const maxKept = 512

// Split returns the lines of block without their line ends, and whether every line ended in
// CRLF. A line ends at a line feed, and a carriage return just before that is removed. The last
// line of block needs no line end. The slice belongs to l and is valid until the next Split;
// the strings in it are valid for ever.
func (l *Lines) Split(block []byte) (lines []string, crlf bool) {
	crlf = true
	l.spans, l.same = l.spans[:0], l.same[:0]
	fresh, total := 0, 0
	for start := 0; start < len(block); {
		end, next := len(block), len(block)
		if i := bytes.IndexByte(block[start:], '\n'); i >= 0 {
			end, next = start+i, start+i+1
			if end > start && block[end-1] == '\r' {
				end--
			} else {
				crlf = false
			}
		}
		i := len(l.spans)
		same := i < len(l.lines) && l.lines[i] == string(block[start:end])
		if !same {
			fresh += end - start
		}
		total += end - start
		l.spans, l.same = append(l.spans, span{start, end}), append(l.same, same)
		start = next
	}
	n := len(l.spans)
	if fresh > 0 && l.held+fresh > 2*len(block)+maxSlack {
		// Copying every line anew lets go of every earlier allocation.
		clear(l.same)
		fresh, l.held = total, 0
	}
	if n < len(l.lines) {
		// Lines beyond the block's would keep old allocations alive.
		clear(l.lines[n:])
	}
	l.lines = resize(l.lines, n)
	switch {
	case fresh == 0:
		// The lines that changed, if any, are empty now.
		for i := range l.spans {
			if !l.same[i] {
				l.lines[i] = ""
			}
		}
	case fresh == total:
		// With no line to keep, the block is copied whole, its line ends too, in one move.
		copied := string(block)
		for i, s := range l.spans {
			l.lines[i] = copied[s.start:s.end]
		}
		l.held = len(block)
	case fresh > 0:
		var b strings.Builder
		b.Grow(fresh)
		for i, s := range l.spans {
			if !l.same[i] {
				b.Write(block[s.start:s.end])
			}
		}
		copied, at := b.String(), 0
		for i, s := range l.spans {
			if !l.same[i] {
				l.lines[i] = copied[at : at+s.end-s.start]
				at += s.end - s.start
			}
		}
		l.held += fresh
	}
	if n > maxKept {
		// A block of unusual length is not kept: its scratch would stay as large as it.
		lines := l.lines
		*l = Lines{}
		return lines, crlf
	}
	return l.lines, crlf
}

// Same reports whether line i of the last Split repeated line i of the block before it, so a
// caller that keeps what it parsed from each line may reuse that instead of parsing again.
func (l *Lines) Same(i int) bool { return i < len(l.same) && l.same[i] }

// resize returns s with length n, its first elements kept, and the rest zero.
func resize[T any](s []T, n int) []T {
	if n <= cap(s) {
		return s[:n]
	}
	grown := make([]T, n, n+n/2)
	copy(grown, s)
	return grown
}
