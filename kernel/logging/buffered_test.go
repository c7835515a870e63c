package logging

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.buf.Write(p)
}

func (l *lockedBuffer) state() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String(), l.writes
}

func TestBufferedWriterBatchesLines(t *testing.T) {
	t.Parallel()
	out := &lockedBuffer{}
	w := NewBufferedWriter(out, 64, 20*time.Millisecond)
	for range 3 {
		_, _ = w.Write([]byte("line\n"))
	}
	if got, _ := out.state(); got != "" {
		t.Fatalf("lines were written before the interval: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, writes := out.state()
		if got == strings.Repeat("line\n", 3) {
			if writes != 1 {
				t.Errorf("three lines took %d writes, want 1", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the interval the output is %q", got)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A full buffer is written out at once; a line larger than the buffer goes straight through.
	_, _ = w.Write(bytes.Repeat([]byte("a"), 60))
	_, _ = w.Write(bytes.Repeat([]byte("b"), 10))
	if got, _ := out.state(); !strings.HasSuffix(got, strings.Repeat("a", 60)) {
		t.Errorf("a full buffer was not written: %q", got)
	}
	_, _ = w.Write(bytes.Repeat([]byte("c"), 100))
	if got, _ := out.state(); !strings.HasSuffix(got, strings.Repeat("b", 10)+strings.Repeat("c", 100)) {
		t.Errorf("an oversized line was not written in order: %q", got)
	}

	_, _ = w.Write([]byte("last\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.state(); !strings.HasSuffix(got, "last\n") {
		t.Errorf("Close did not write the rest: %q", got)
	}
	_, _ = w.Write([]byte("after\n"))
	if got, _ := out.state(); !strings.HasSuffix(got, "after\n") {
		t.Errorf("a write after Close was held back: %q", got)
	}
}
