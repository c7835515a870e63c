package httpwire

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestLinesHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		buf  string
		want []string
		n    int
		crlf bool
	}{
		{"", nil, 0, false},
		{"a\r\nb", nil, 0, false},
		{"a\r\nb: c\r\n", nil, 0, false},
		{"\r\n", []string{}, 2, true},
		{"\n", []string{}, 1, false},
		{"a\r\nb: c\r\n\r\n", []string{"a", "b: c"}, 11, true},
		{"a\nb\n\n", []string{"a", "b"}, 5, false},
		{"a\r\nb\nc\r\n\r\n", []string{"a", "b", "c"}, 10, false},
		// The head ends at its first empty line, whatever follows, and however it ends.
		{"a\r\n\r\nbody\r\n\r\n", []string{"a"}, 5, true},
		{"a\r\n\nb: c\r\n\r\n", []string{"a"}, 4, false},
		// Only the carriage return just before the line feed belongs to the line end.
		{"a\r\r\n\r\n", []string{"a\r"}, 6, true},
		{"a\rb\r\n\r\n", []string{"a\rb"}, 7, true},
	}
	for _, tt := range tests {
		var l Lines
		// A Lines that found another head before, or the start of this one, must find this one
		// the same way.
		var used, started Lines
		used.Head([]byte("x\r\nb: c\r\nlonger\r\nand more\r\n\r\n"))
		started.Head([]byte(tt.buf[:len(tt.buf)/2]))
		for _, l := range []*Lines{&l, &used, &started} {
			got, n, crlf := l.Head([]byte(tt.buf))
			if !slices.Equal(got, tt.want) || n != tt.n || crlf != tt.crlf {
				t.Errorf("Head(%q) = %q, %d, %t; want %q, %d, %t", tt.buf, got, n, crlf, tt.want, tt.n, tt.crlf)
			}
		}
	}
}

// TestLinesKnowARepeatedHead finds a head, then the same bytes with more after them, and then
// a head that starts with the same lines but goes on: only the first two are the head before.
func TestLinesKnowARepeatedHead(t *testing.T) {
	t.Parallel()
	var l Lines
	first := slices.Clone(head3(l.Head([]byte(head))))
	got, n, _ := l.Head([]byte(head + "a body, and the next request"))
	if !slices.Equal(got, first) || n != len(head) {
		t.Fatalf("the head before a body: %q, %d; want %q, %d", got, n, first, len(head))
	}
	for i := range got {
		if !l.Same(i) {
			t.Errorf("Same(%d) = false for a repeated head", i)
		}
	}
	longer := strings.TrimSuffix(head, "\r\n") + "X-More: 1\r\n\r\n"
	got, n, _ = l.Head([]byte(longer))
	if len(got) != len(first)+1 || got[len(first)] != "X-More: 1" || n != len(longer) || l.Same(len(first)) || !l.Same(0) {
		t.Errorf("a longer head: %q, %d, Same(last) %t", got, n, l.Same(len(first)))
	}
	// An incomplete head leaves no line marked as repeated.
	if got, n, _ := l.Head([]byte(head[:20])); len(got) != 0 || n != 0 || l.Same(0) {
		t.Errorf("an incomplete head: %q, %d, Same(0) %t", got, n, l.Same(0))
	}
	if got, _, _ := l.Head([]byte(longer)); !slices.Equal(got, append(slices.Clone(first), "X-More: 1")) || !l.Same(0) {
		t.Errorf("the head after an incomplete one: %q, Same(0) %t", got, l.Same(0))
	}
}

const head = "POST /basalt.identity.v1.IdentityService/GetCurrentUser HTTP/1.1\r\n" +
	"Host: 127.0.0.1:8080\r\nContent-Type: application/proto\r\nContent-Length: 0\r\n" +
	"Authorization: Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImJlbmNoIn0.eyJzdWIiOiJiZW5jaCJ9.c2ln\r\n\r\n"

// head3 keeps the lines of Head's answer.
func head3(lines []string, _ int, _ bool) []string { return lines }

// withLength is head with another content length, a request that differs in one line.
func withLength(n int) []byte {
	return []byte(strings.Replace(head, "Content-Length: 0", fmt.Sprintf("Content-Length: %d", n), 1))
}

func TestLinesKeepRepeatedLines(t *testing.T) {
	var l Lines
	first := slices.Clone(head3(l.Head([]byte(head))))
	// The same head, read into another buffer, is the same strings.
	again := head3(l.Head([]byte(head)))
	for i := range first {
		if unsafe.StringData(again[i]) != unsafe.StringData(first[i]) {
			t.Errorf("line %d %q was copied again", i, again[i])
		}
		if !l.Same(i) {
			t.Errorf("Same(%d) = false for a repeated line", i)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { l.Head([]byte(head)) }); allocs != 0 {
		t.Errorf("a repeated head costs %v allocations; want 0", allocs)
	}

	// A head that differs in one line copies that line only, in one allocation.
	changed := head3(l.Head(withLength(12)))
	for i := range first {
		moved := unsafe.StringData(changed[i]) != unsafe.StringData(first[i])
		if isLength := strings.HasPrefix(first[i], "Content-Length"); moved != isLength || l.Same(i) == isLength {
			t.Errorf("line %d %q: copied %t, Same %t", i, changed[i], moved, l.Same(i))
		}
	}
	if changed[3] != "Content-Length: 12" {
		t.Errorf("line 3 = %q", changed[3])
	}
	a, b := withLength(1), withLength(2)
	if allocs := testing.AllocsPerRun(100, func() { l.Head(a); l.Head(b) }); allocs != 2 {
		t.Errorf("two heads differing in a line cost %v allocations; want 2", allocs)
	}
}

// TestLinesBoundWhatTheyHold changes a different line in every block, so that each line would
// keep another block's allocation alive; the bound must copy every line anew from time to time.
func TestLinesBoundWhatTheyHold(t *testing.T) {
	t.Parallel()
	const lines = 40
	block := func(round int) []byte {
		var b strings.Builder
		for i := range lines {
			v := 0
			if i == round%lines {
				v = round
			}
			fmt.Fprintf(&b, "X-Line-%02d: %064d\r\n", i, v)
		}
		return []byte(b.String() + "\r\n")
	}
	var l Lines
	renewed := 0
	for round := range 1000 {
		in := block(round)
		got, _, _ := l.Head(in)
		if want := strings.Split(strings.TrimSuffix(string(in), "\r\n\r\n"), "\r\n"); !slices.Equal(got, want) {
			t.Fatalf("round %d: lines differ from the block", round)
		}
		if limit := 2*len(in) + maxSlack; l.held > limit {
			t.Fatalf("round %d: the lines hold %d bytes alive; the bound is %d", round, l.held, limit)
		}
		if contiguous(got) {
			renewed++
		}
	}
	// Each block changes one line, so the bound is reached about every twenty blocks.
	if renewed < 1000/30 {
		t.Errorf("every line was copied anew %d times in 1000 blocks; want at least %d", renewed, 1000/30)
	}
}

// contiguous reports whether the lines, which ended in CRLF, lie one after the other in one
// allocation, as they do when Split copied all of them.
func contiguous(lines []string) bool {
	for i := 1; i < len(lines); i++ {
		if unsafe.StringData(lines[i]) != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(lines[i-1])), len(lines[i-1])+2)) {
			return false
		}
	}
	return true
}

func TestLinesLetGoOfDroppedLines(t *testing.T) {
	t.Parallel()
	var l Lines
	l.Head([]byte(head))
	l.Head([]byte("POST / HTTP/1.1\r\n\r\n"))
	for i, s := range l.lines[:cap(l.lines)][1:] {
		if s != "" {
			t.Errorf("slot %d beyond the head's lines still holds %q", i+1, s)
		}
	}
}

// TestLinesKeepNoLongBlock splits a block of more lines than a head has: its lines are returned
// but not kept, nor is scratch of its size.
func TestLinesKeepNoLongBlock(t *testing.T) {
	t.Parallel()
	long := []byte(strings.Repeat("X-A: b\r\n", maxKept+1) + "\r\n")
	var l Lines
	if got := head3(l.Head(long)); len(got) != maxKept+1 || got[maxKept] != "X-A: b" {
		t.Fatalf("Head returned %d lines", len(got))
	}
	if cap(l.lines)+cap(l.spans)+cap(l.same)+cap(l.last) != 0 {
		t.Errorf("after a block of %d lines, Lines keeps room for %d lines, %d spans", maxKept+1, cap(l.lines), cap(l.spans))
	}
	if got := head3(l.Head([]byte(head))); len(got) != 5 || l.Same(0) {
		t.Errorf("the head after it: %d lines, Same(0) %t", len(got), l.Same(0))
	}
}

func BenchmarkLinesHead(b *testing.B) {
	for _, bc := range []struct {
		name   string
		blocks [][]byte
	}{
		{"repeated", [][]byte{[]byte(head)}},
		{"one line differs", [][]byte{withLength(1), withLength(2)}},
		{"all lines differ", [][]byte{[]byte(head), []byte(strings.ToLower(head))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var l Lines
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				l.Head(bc.blocks[i%len(bc.blocks)])
			}
		})
	}
}
