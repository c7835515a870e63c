package httpwire

import (
	"bytes"
	"slices"
	"strings"
)

// Lines splits the heads that one connection receives into lines, and keeps the lines for the
// next head. A line that repeats the line at the same place in the head before is returned as
// the same string rather than copied again. A client's requests, and an upstream's answers,
// repeat most of their lines (the access token, the content type, the host). So a head usually
// costs no allocation, or one for the lines that changed. HTTP/2's header compression rests on
// the same observation. A head that repeats the one before byte for byte, as a client's heads
// on a kept-alive connection mostly do, is recognised with one comparison.
//
// The strings are ordinary Go strings and may be kept. A line kept from an earlier head also
// keeps alive the allocation it was copied into. Lines therefore bounds what its lines can hold
// alive to twice the newest head's size plus maxSlack: when that bound would be passed, every
// line is copied anew.
type Lines struct {
	lines []string
	// spans and same are Head's scratch: where each line of the head lies, and whether it
	// repeats the line before it at its place.
	spans []span
	same  []bool
	// held is the size of the allocations made since every line was last copied anew. The
	// lines cannot hold alive more than that.
	held int
	// last is the last head as it arrived, empty line included, and lastCRLF whether its lines
	// ended in CRLF; a head that starts a buffer with the same bytes is the same head.
	last     []byte
	lastCRLF bool
}

type span struct{ start, end int }

// maxSlack is what the lines may hold alive beyond twice the newest head: a connection whose
// requests differ in a short line or two (a content length, a request id) copies all its lines
// about once every few dozen requests.
const maxSlack = 1024

// maxKept is the most lines a head may have for Lines to keep them for the next head.
const maxKept = 512

// Head finds the head at the start of buf, its lines up to the first empty one, and returns
// them without their line ends, the head's length with the empty line's end, and whether every
// line, the empty one too, ended in CRLF. A line ends at a line feed, and a carriage return just
// before that is removed; a line left empty ends the head. While buf holds no empty line yet,
// Head returns n = 0 and no lines. The slice belongs to l and is valid until the next Head; the
// strings in it are valid for ever.
func (l *Lines) Head(buf []byte) (lines []string, n int, crlf bool) {
	if len(l.last) > 0 && len(buf) >= len(l.last) && string(buf[:len(l.last)]) == string(l.last) {
		// The head ends where the last one did, at the first empty line, and every line repeats.
		l.same = resize(l.same, len(l.lines))
		for i := range l.same {
			l.same[i] = true
		}
		return l.lines, len(l.last), l.lastCRLF
	}
	crlf = true
	l.spans, l.same = l.spans[:0], l.same[:0]
	fresh, total := 0, 0
	for start := 0; ; {
		i := bytes.IndexByte(buf[start:], '\n')
		if i < 0 {
			// What was found of the lines so far says nothing of the last head's.
			l.spans, l.same = l.spans[:0], l.same[:0]
			return nil, 0, false
		}
		end, next := start+i, start+i+1
		if end > start && buf[end-1] == '\r' {
			end--
		} else {
			crlf = false
		}
		if end == start {
			n = next
			break
		}
		k := len(l.spans)
		same := k < len(l.lines) && l.lines[k] == string(buf[start:end])
		if !same {
			fresh += end - start
		}
		total += end - start
		l.spans, l.same = append(l.spans, span{start, end}), append(l.same, same)
		start = next
	}
	lines = l.keep(buf, n, fresh, total)
	if len(l.spans) > maxKept {
		// A head of unusual length is not kept: its scratch would stay as large as it.
		*l = Lines{}
		return lines, n, crlf
	}
	l.last, l.lastCRLF = append(l.last[:0], buf[:n]...), crlf
	if cap(l.last) > 2*n+maxSlack {
		// A long head's copy is not kept for the short ones after it.
		l.last = slices.Clip(l.last)
	}
	return lines, n, crlf
}

// keep sets the lines of the head at the start of buf, n bytes long, from the spans found: a
// line that repeats the one at its place is kept, and the fresh bytes of the others are copied
// in one allocation. total is the size of all the lines.
func (l *Lines) keep(buf []byte, n, fresh, total int) []string {
	k := len(l.spans)
	if fresh > 0 && l.held+fresh > 2*n+maxSlack {
		// Copying every line anew lets go of every earlier allocation.
		clear(l.same)
		fresh, l.held = total, 0
	}
	if k < len(l.lines) {
		// Lines beyond the head's would keep old allocations alive.
		clear(l.lines[k:])
	}
	l.lines = resize(l.lines, k)
	switch {
	case fresh == 0:
		// The lines that changed, if any, are empty now.
		for i := range l.spans {
			if !l.same[i] {
				l.lines[i] = ""
			}
		}
	case fresh == total:
		// With no line to keep, the head is copied whole, its line ends too, in one move.
		copied := string(buf[:n])
		for i, s := range l.spans {
			l.lines[i] = copied[s.start:s.end]
		}
		l.held = n
	case fresh > 0:
		var b strings.Builder
		b.Grow(fresh)
		for i, s := range l.spans {
			if !l.same[i] {
				b.Write(buf[s.start:s.end])
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
	return l.lines
}

// Same reports whether line i of the last head Head found repeated line i of the head before
// it, so a caller that keeps what it parsed from each line may reuse that instead of parsing
// again.
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
