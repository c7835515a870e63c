package httpwire

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestLinesSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		block string
		want  []string
		crlf  bool
	}{
		{"", []string{}, true},
		{"\r\n", []string{""}, true},
		{"a\r\nb: c\r\n\r\n", []string{"a", "b: c", ""}, true},
		{"a\r\nb", []string{"a", "b"}, true},
		{"a\nb\n\n", []string{"a", "b", ""}, false},
		{"a\r\nb\nc\r\n", []string{"a", "b", "c"}, false},
		{"\n", []string{""}, false},
		// Only the carriage return just before the line feed belongs to the line end.
		{"a\r\r\n", []string{"a\r"}, true},
		{"a\rb\r\n", []string{"a\rb"}, true},
	}
	for _, tt := range tests {
		var l Lines
		// A Lines that split another block before must split this one the same way.
		var used Lines
		used.Split([]byte("x\r\nb: c\r\nlonger\r\nand more\r\n\r\n"))
		for _, l := range []*Lines{&l, &used} {
			got, crlf := l.Split([]byte(tt.block))
			if !slices.Equal(got, tt.want) || crlf != tt.crlf {
				t.Errorf("Split(%q) = %q, %t; want %q, %t", tt.block, got, crlf, tt.want, tt.crlf)
			}
		}
	}
}

const head = "POST /basalt.identity.v1.IdentityService/GetCurrentUser HTTP/1.1\r\n" +
	"Host: 127.0.0.1:8080\r\nContent-Type: application/proto\r\nContent-Length: 0\r\n" +
	"Authorization: Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImJlbmNoIn0.eyJzdWIiOiJiZW5jaCJ9.c2ln\r\n\r\n"

// withLength is head with another content length, a request that differs in one line.
func withLength(n int) []byte {
	return []byte(strings.Replace(head, "Content-Length: 0", fmt.Sprintf("Content-Length: %d", n), 1))
}

func TestLinesKeepRepeatedLines(t *testing.T) {
	var l Lines
	first := slices.Clone(must(l.Split([]byte(head))))
	// The same head, read into another buffer, is the same strings.
	again := must(l.Split([]byte(head)))
	for i := range first {
		if unsafe.StringData(again[i]) != unsafe.StringData(first[i]) {
			t.Errorf("line %d %q was copied again", i, again[i])
		}
		if !l.Same(i) {
			t.Errorf("Same(%d) = false for a repeated line", i)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { l.Split([]byte(head)) }); allocs != 0 {
		t.Errorf("a repeated head costs %v allocations; want 0", allocs)
	}

	// A head that differs in one line copies that line only, in one allocation.
	changed := must(l.Split(withLength(12)))
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
	if allocs := testing.AllocsPerRun(100, func() { l.Split(a); l.Split(b) }); allocs != 2 {
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
		return []byte(b.String())
	}
	var l Lines
	renewed := 0
	for round := range 1000 {
		in := block(round)
		got, _ := l.Split(in)
		if want := strings.Split(strings.TrimSuffix(string(in), "\r\n"), "\r\n"); !slices.Equal(got, want) {
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
	l.Split([]byte(head))
	l.Split([]byte("POST / HTTP/1.1\r\n\r\n"))
	for i, s := range l.lines[:cap(l.lines)][2:] {
		if s != "" {
			t.Errorf("slot %d beyond the block's lines still holds %q", i+2, s)
		}
	}
}

// TestLinesKeepNoLongBlock splits a block of more lines than a head has: its lines are returned
// but not kept, nor is scratch of its size.
func TestLinesKeepNoLongBlock(t *testing.T) {
	t.Parallel()
	long := []byte(strings.Repeat("X-A: b\r\n", maxKept+1))
	var l Lines
	if got := must(l.Split(long)); len(got) != maxKept+1 || got[maxKept] != "X-A: b" {
		t.Fatalf("Split returned %d lines", len(got))
	}
	if cap(l.lines)+cap(l.spans)+cap(l.same) != 0 {
		t.Errorf("after a block of %d lines, Lines keeps room for %d lines, %d spans", maxKept+1, cap(l.lines), cap(l.spans))
	}
	if got := must(l.Split([]byte(head))); len(got) != 6 || l.Same(0) {
		t.Errorf("the head after it: %d lines, Same(0) %t", len(got), l.Same(0))
	}
}

func must(lines []string, _ bool) []string { return lines }

func BenchmarkLinesSplit(b *testing.B) {
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
				l.Split(bc.blocks[i%len(bc.blocks)])
			}
		})
	}
}
