package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestResponseHead checks the head a Response writes: the gateway's own headers in order, raw
// lines as added with line breaks turned into spaces, a Date only when none was given, the
// length, and Connection: close when asked.
func TestResponseHead(t *testing.T) {
	t.Parallel()
	now := func() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }
	tests := []struct {
		name  string
		build func(w *Response)
		want  string
	}{
		{"own headers sorted, a date added", func(w *Response) {
			w.Header().Set("X-Request-Id", "r1")
			w.Header().Set("Access-Control-Allow-Origin", "http://localhost")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("nope"))
		}, "HTTP/1.1 404 Not Found\r\nAccess-Control-Allow-Origin: http://localhost\r\nX-Request-Id: r1\r\n" +
			"Date: Tue, 24 Nov 2026 12:00:00 GMT\r\nContent-Length: 4\r\n\r\nnope"},
		{"raw lines kept, the upstream's date used", func(w *Response) {
			w.AddLine("Content-Type", "application/proto")
			w.AddLine("date", "Mon, 23 Nov 2026 00:00:00 GMT")
			w.AddLine("X-Split", "a\r\nInjected: yes")
			w.WriteHeader(http.StatusOK)
		}, "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\ndate: Mon, 23 Nov 2026 00:00:00 GMT\r\n" +
			"X-Split: a  Injected: yes\r\nContent-Length: 0\r\n\r\n"},
		{"an invalid own value left out, closing", func(w *Response) {
			w.Header()["X-Bad"] = []string{"a\nb"}
			w.close = true
		}, "HTTP/1.1 200 OK\r\nDate: Tue, 24 Nov 2026 12:00:00 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			w := &Response{now: now}
			w.reset(bufio.NewWriter(&out))
			tt.build(w)
			if err := w.finish(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("wrote\n%q\nwant\n%q", got, tt.want)
			}
			if _, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out.String())), nil); err != nil {
				t.Errorf("net/http cannot read the answer: %v", err)
			}
		})
	}
}
