package h1client

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadResponse(t *testing.T) {
	t.Parallel()
	post, _ := http.NewRequest(http.MethodPost, "http://upstream/x", nil)
	head, _ := http.NewRequest(http.MethodHead, "http://upstream/x", nil)
	tests := []struct {
		name    string
		req     *http.Request
		raw     string
		status  int
		header  http.Header
		body    string
		trailer http.Header
		close   bool
		// next is what the connection holds after the answer: the start of the next one.
		next string
	}{
		{
			name:   "length",
			raw:    "HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 5\r\nServed-By: a\r\n\r\nhelloHTTP/1.1",
			status: 200,
			header: http.Header{"Content-Type": {"application/proto"}, "Content-Length": {"5"}, "Served-By": {"a"}},
			body:   "hello",
			next:   "HTTP/1.1",
		},
		{
			name:   "lower-case keys are made canonical and repeated keys keep every value",
			raw:    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nvary: Origin\r\nX-A: 1\r\nvary: Accept\r\n\r\n",
			status: 404,
			header: http.Header{"Content-Length": {"0"}, "Vary": {"Origin", "Accept"}, "X-A": {"1"}},
		},
		{
			name:    "chunked with trailers",
			raw:     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nGrpc-Status: 0\r\nGrpc-Message: ok\r\n\r\nNEXT",
			status:  200,
			header:  http.Header{"Trailer": {"Grpc-Status"}},
			body:    "abcde",
			trailer: http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {"ok"}},
			next:    "NEXT",
		},
		{
			name:   "chunked without trailers",
			raw:    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nNEXT",
			status: 200,
			header: http.Header{},
			body:   "x",
			next:   "NEXT",
		},
		{
			name:   "informational answers are skipped",
			raw:    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			status: 200,
			header: http.Header{"Content-Length": {"2"}},
			body:   "ok",
		},
		{
			name:   "no framing reads to the end and closes",
			raw:    "HTTP/1.1 200 OK\r\n\r\nuntil the end",
			status: 200,
			header: http.Header{},
			body:   "until the end",
			close:  true,
		},
		{
			name:   "connection close",
			raw:    "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx",
			status: 200,
			header: http.Header{"Connection": {"keep-alive, close"}, "Content-Length": {"1"}},
			body:   "x",
			close:  true,
		},
		{
			name:   "an HTTP/1.0 answer closes",
			raw:    "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
			status: 200,
			header: http.Header{"Content-Length": {"1"}},
			body:   "x",
			close:  true,
		},
		{
			name:   "no body for HEAD",
			req:    head,
			raw:    "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nNEXT",
			status: 200,
			header: http.Header{"Content-Length": {"9"}},
			next:   "NEXT",
		},
		{
			name:   "no body for 204",
			raw:    "HTTP/1.1 204 No Content\r\n\r\nNEXT",
			status: 204,
			header: http.Header{},
			next:   "NEXT",
		},
		{
			name:   "bare line feeds",
			raw:    "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
			status: 200,
			header: http.Header{"Content-Length": {"2"}},
			body:   "ok",
		},
	}
	// Each answer is read once as it arrives from a socket that has it all, and once a byte at a
	// time, when the header block must be put together line by line.
	for _, tt := range tests {
		for _, arrival := range []string{"whole", "byte by byte"} {
			t.Run(tt.name+"/"+arrival, func(t *testing.T) {
				t.Parallel()
				req := tt.req
				if req == nil {
					req = post
				}
				var src io.Reader = strings.NewReader(tt.raw)
				if arrival != "whole" {
					src = iotest.OneByteReader(src)
				}
				br := bufio.NewReader(src)
				resp, err := readResponse(br, req)
				if err != nil {
					t.Fatalf("readResponse: %v", err)
				}
				if resp.StatusCode != tt.status {
					t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
				}
				if !reflect.DeepEqual(resp.Header, tt.header) {
					t.Errorf("header %v, want %v", resp.Header, tt.header)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				if string(body) != tt.body {
					t.Errorf("body %q, want %q", body, tt.body)
				}
				if tt.trailer != nil && !reflect.DeepEqual(resp.Trailer, tt.trailer) {
					t.Errorf("trailer %v, want %v", resp.Trailer, tt.trailer)
				}
				if resp.Close != tt.close {
					t.Errorf("close %t, want %t", resp.Close, tt.close)
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != tt.next {
					t.Errorf("left on the connection %q, want %q", rest, tt.next)
				}
			})
		}
	}
}

func TestReadResponseRefusesAmbiguousAnswers(t *testing.T) {
	t.Parallel()
	post, _ := http.NewRequest(http.MethodPost, "http://upstream/x", nil)
	tests := []struct {
		name string
		raw  string
	}{
		{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n"},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
		{"unknown transfer encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
		{"folded line", "HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\n\r\n"},
		{"space in a name", "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n"},
		{"no colon", "HTTP/1.1 200 OK\r\nX-A\r\n\r\n"},
		{"carriage return in a value", "HTTP/1.1 200 OK\nX-A: 1\r2\n\n"},
		{"control character in a value", "HTTP/1.1 200 OK\r\nX-A: 1\x002\r\n\r\n"},
		{"HTTP/2 status line", "HTTP/2 200\r\n\r\n"},
		{"short status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"no status", "HTTP/1.1\r\n\r\n"},
		{"too large", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 1100) + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := readResponse(bufio.NewReader(strings.NewReader(tt.raw)), post)
			if !errors.Is(err, errMalformed) {
				t.Fatalf("readResponse: %v, want a malformed answer", err)
			}
		})
	}
}

func TestReadResponseReportsCutAnswers(t *testing.T) {
	t.Parallel()
	post, _ := http.NewRequest(http.MethodPost, "http://upstream/x", nil)
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Le",
		"",
	} {
		if _, err := readResponse(bufio.NewReader(strings.NewReader(raw)), post); err == nil {
			t.Errorf("readResponse(%q) succeeded", raw)
		}
	}
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGrpc-Status: 0\r\n",
	} {
		resp, err := readResponse(bufio.NewReader(strings.NewReader(raw)), post)
		if err != nil {
			t.Fatalf("readResponse(%q): %v", raw, err)
		}
		if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("body of %q: %v, want io.ErrUnexpectedEOF", raw, err)
		}
	}
}

// TestBlockEndFindsTheFirstEmptyLine compares blockEnd, which searches for CRLF CRLF first,
// with the rule read one byte at a time, on blocks with CRLF, bare LF and mixed line ends.
func TestBlockEndFindsTheFirstEmptyLine(t *testing.T) {
	t.Parallel()
	byByte := func(buf []byte) int {
		for i := 0; i < len(buf); i++ {
			if buf[i] != '\n' {
				continue
			}
			if i+1 < len(buf) && buf[i+1] == '\n' {
				return i + 2
			}
			if i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n' {
				return i + 3
			}
		}
		return 0
	}
	pieces := []string{"HTTP/1.1 200 OK", "A: b", "\r\n", "\n", "\r", "x", ""}
	blocks := []string{
		"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody",
		"HTTP/1.1 200 OK\nA: b\n\nbody\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\n\r\nC: d\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\n",
		"\r\n\r\n",
		"\n\r\n\r\n",
		"",
	}
	// Every sequence of up to five pieces adds the mixtures the table leaves out.
	var grow func(prefix string, n int)
	grow = func(prefix string, n int) {
		blocks = append(blocks, prefix)
		if n == 0 {
			return
		}
		for _, p := range pieces {
			grow(prefix+p, n-1)
		}
	}
	grow("", 5)
	for _, b := range blocks {
		if got, want := blockEnd([]byte(b)), byByte([]byte(b)); got != want {
			t.Fatalf("blockEnd(%q) = %d; want %d", b, got, want)
		}
	}
}
