package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// streamAbove is the body size past which a response stops being buffered and goes out in
// chunks as it is written.
const streamAbove = 256 << 10

// errAborted is what writes to an aborted response return.
var errAborted = errors.New("h1: the response was aborted")

// Response collects one answer. It is an http.ResponseWriter, so the gateway's error writers
// answer through it, and it also takes header lines as an upstream sent them. A body up to
// streamAbove is buffered and goes out with the head in one write; a larger one is sent in
// chunks once that size is passed.
type Response struct {
	header http.Header
	// lines are header lines added raw ("Name: value\r\n").
	lines    []byte
	status   int
	body     []byte
	bw       *bufio.Writer
	now      func() time.Time
	close    bool
	sawDate  bool
	streamed bool
	aborted  bool
	written  int64
}

// reset prepares the response for the next request on its connection.
func (w *Response) reset(bw *bufio.Writer) {
	if w.header == nil {
		w.header = http.Header{}
	}
	clear(w.header)
	if cap(w.body) > keepBelow {
		// A large answer's buffer is not kept for the connection's next requests.
		w.body = nil
	}
	w.lines, w.body = w.lines[:0], w.body[:0]
	w.status, w.bw = 0, bw
	w.close, w.sawDate, w.streamed, w.aborted = false, false, false, false
	w.written = 0
}

// Header returns the header map of the answer; a header set here wins over a raw line of the
// same name, which the caller is expected to skip.
func (w *Response) Header() http.Header { return w.header }

// AddLine adds a header line. The caller vouches for the name (an upstream's answer, already
// parsed); a line break in the value becomes a space.
func (w *Response) AddLine(name, value string) {
	if strings.IndexByte(value, '\r') >= 0 || strings.IndexByte(value, '\n') >= 0 {
		// As net/http writes such a value: a line break cannot reach the client.
		value = strings.NewReplacer("\r", " ", "\n", " ").Replace(value)
	}
	if len(name) == len("Date") && strings.EqualFold(name, "Date") {
		w.sawDate = true
	}
	w.lines = append(append(append(append(w.lines, name...), ": "...), value...), "\r\n"...)
}

// WriteHeader sets the status; the first call wins.
func (w *Response) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

// Status returns the status written so far (200 once a body was written without one).
func (w *Response) Status() int { return w.status }

// Written returns how many body bytes were written.
func (w *Response) Written() int64 { return w.written }

// Write adds to the body.
func (w *Response) Write(p []byte) (int, error) {
	if w.aborted {
		return 0, errAborted
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.written += int64(len(p))
	if w.streamed {
		return len(p), w.chunk(p)
	}
	w.body = append(w.body, p...)
	if len(w.body) > streamAbove {
		w.streamed = true
		if err := w.writeHead(-1); err != nil {
			return 0, err
		}
		err := w.chunk(w.body)
		w.body = w.body[:0]
		return len(p), err
	}
	return len(p), nil
}

// ReadFrom writes what r reads to the body, reading straight into the body's buffer.
func (w *Response) ReadFrom(r io.Reader) (int64, error) {
	if w.aborted {
		return 0, errAborted
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var total int64
	for {
		if len(w.body) == cap(w.body) {
			w.body = slices.Grow(w.body, max(4<<10, len(w.body)))
		}
		n, err := r.Read(w.body[len(w.body):cap(w.body)])
		w.body = w.body[:len(w.body)+n]
		total += int64(n)
		w.written += int64(n)
		if len(w.body) > streamAbove {
			if !w.streamed {
				w.streamed = true
				if herr := w.writeHead(-1); herr != nil {
					return total, herr
				}
			}
			if cerr := w.chunk(w.body); cerr != nil {
				return total, cerr
			}
			w.body = w.body[:0]
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Discard drops what was written so far, so that an error can be answered instead. It returns
// false once the answer is streaming.
func (w *Response) Discard() bool {
	if w.streamed {
		return false
	}
	w.lines, w.body, w.status, w.written, w.sawDate = w.lines[:0], w.body[:0], 0, 0, false
	return true
}

// Abort gives up on a streaming answer: the connection closes without ending it, so the client
// sees it fail rather than end early.
func (w *Response) Abort() { w.aborted, w.close = true, true }

// finish sends what remains of the answer.
func (w *Response) finish() error {
	if w.aborted {
		return errAborted
	}
	if w.streamed {
		if err := w.chunk(w.body); err != nil {
			return err
		}
		if _, err := w.bw.WriteString("0\r\n\r\n"); err != nil {
			return err
		}
		return w.bw.Flush()
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if err := w.writeHead(int64(len(w.body))); err != nil {
		return err
	}
	if _, err := w.bw.Write(w.body); err != nil {
		return err
	}
	return w.bw.Flush()
}

// writeHead writes the status line and header, with length as Content-Length, or chunked
// encoding when it is -1.
func (w *Response) writeHead(length int64) error {
	b := w.bw.AvailableBuffer()
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(w.status)...)
	b = append(b, "\r\n"...)
	// The keys go out sorted, so an answer is the same byte for byte each time.
	var kb [8]string
	keys := kb[:0]
	for k := range w.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !httpwire.ValidName(k) {
			continue
		}
		for _, v := range w.header[k] {
			if !httpwire.ValidValue(v) {
				continue
			}
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, w.lines...)
	if !w.sawDate && w.header.Get("Date") == "" {
		b = append(b, "Date: "...)
		b = w.now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	if length >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, length, 10)
		b = append(b, "\r\n"...)
	} else {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	_, err := w.bw.Write(b)
	return err
}

// chunk writes p as one chunk.
func (w *Response) chunk(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	b := strconv.AppendInt(w.bw.AvailableBuffer(), int64(len(p)), 16)
	b = append(b, "\r\n"...)
	if _, err := w.bw.Write(b); err != nil {
		return err
	}
	if _, err := w.bw.Write(p); err != nil {
		return err
	}
	_, err := w.bw.WriteString("\r\n")
	return err
}
