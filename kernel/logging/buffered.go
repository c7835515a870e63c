package logging

import (
	"io"
	"sync"
	"time"
)

// BufferedWriter collects log lines in memory and writes them out when the buffer fills or an
// interval after the first unwritten line, so a process that logs a line per request (the
// gateway's access log) pays one system call per batch rather than per line. Lines written in
// the last interval before a crash are lost; Close writes out what is left.
type BufferedWriter struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	size     int
	interval time.Duration
	timer    *time.Timer
	pending  bool
	closed   bool
	err      error
}

// NewBufferedWriter buffers up to size bytes for at most interval before writing to w.
func NewBufferedWriter(w io.Writer, size int, interval time.Duration) *BufferedWriter {
	b := &BufferedWriter{w: w, buf: make([]byte, 0, size), size: size, interval: interval}
	b.timer = time.AfterFunc(time.Hour, b.flushLater)
	b.timer.Stop()
	return b
}

// Write buffers p, writing the buffer out first when p would overflow it. A closed writer
// writes through.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > b.size {
		b.flushLocked()
		if len(p) > b.size {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if !b.pending {
		b.pending = true
		b.timer.Reset(b.interval)
	}
	return len(p), nil
}

func (b *BufferedWriter) flushLater() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *BufferedWriter) flushLocked() {
	b.pending = false
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Flush writes out the buffer now.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

// Close writes out the buffer and makes later writes go straight through. It returns the
// first error writing failed with.
func (b *BufferedWriter) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timer.Stop()
	b.flushLocked()
	b.closed = true
	return b.err
}
