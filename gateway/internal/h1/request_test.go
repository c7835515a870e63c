package h1

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestParseHeadComplete checks that the heads the fast path is meant to serve are parsed in
// full: every field the server and handler rely on, and a length that stops exactly at the
// blank line, so that the body or a pipelined request after it is left in the buffer.
func TestParseHeadComplete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		head string
		// after is what follows the head in the buffer; it must not be counted in the length.
		after      string
		wantPath   string
		wantHost   string
		wantFields []Field
		wantLength int64
		wantClose  bool
	}{
		{
			name:       "minimal with body",
			head:       "POST /fast/a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n",
			after:      "hello",
			wantPath:   "/fast/a",
			wantHost:   "example.com",
			wantFields: []Field{{"Host", "example.com"}, {"Content-Length", "5"}},
			wantLength: 5,
		},
		{
			name:       "zero length followed by a pipelined request",
			head:       "POST /pkg.v1.Service/Method_Name-2 HTTP/1.1\r\nContent-Length: 0\r\nHost: api.internal:8080\r\n\r\n",
			after:      "POST /fast/b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
			wantPath:   "/pkg.v1.Service/Method_Name-2",
			wantHost:   "api.internal:8080",
			wantFields: []Field{{"Content-Length", "0"}, {"Host", "api.internal:8080"}},
			wantLength: 0,
		},
		{
			name:       "lower-case names keep their spelling",
			head:       "POST /fast/a HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nx-custom: v\r\n\r\n",
			after:      "abc",
			wantPath:   "/fast/a",
			wantHost:   "a",
			wantFields: []Field{{"host", "a"}, {"content-length", "3"}, {"x-custom", "v"}},
			wantLength: 3,
		},
		{
			name:       "connection close in any case",
			head:       "POST /fast/a HTTP/1.1\r\nHost: a\r\nCONNECTION: Close\r\nContent-Length: 1\r\n\r\n",
			after:      "x",
			wantPath:   "/fast/a",
			wantHost:   "a",
			wantFields: []Field{{"Host", "a"}, {"CONNECTION", "Close"}, {"Content-Length", "1"}},
			wantLength: 1,
			wantClose:  true,
		},
		{
			name:       "keep-alive then close",
			head:       "POST /fast/a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
			wantPath:   "/fast/a",
			wantHost:   "a",
			wantFields: []Field{{"Host", "a"}, {"Connection", "keep-alive, close"}, {"Content-Length", "0"}},
			wantClose:  true,
		},
		{
			name:       "keep-alive alone does not close",
			head:       "POST /fast/a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
			wantPath:   "/fast/a",
			wantHost:   "a",
			wantFields: []Field{{"Host", "a"}, {"Connection", "keep-alive"}, {"Content-Length", "0"}},
		},
		{
			name:       "optional whitespace is trimmed, inner tab and high bytes kept",
			head:       "POST /fast/a HTTP/1.1\r\nHost:\ta \r\nContent-Type: \t application/proto\t \r\nX-Name:caf\xc3\xa9\tau lait\r\nX-Empty:\r\nContent-Length: 007\r\n\r\n",
			after:      "1234567",
			wantPath:   "/fast/a",
			wantHost:   "a",
			wantFields: []Field{{"Host", "a"}, {"Content-Type", "application/proto"}, {"X-Name", "caf\xc3\xa9\tau lait"}, {"X-Empty", ""}, {"Content-Length", "007"}},
			wantLength: 7,
		},
		{
			name:       "bracketed IPv6 host",
			head:       "POST /fast/a HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 18\r\n\r\n",
			wantPath:   "/fast/a",
			wantHost:   "[::1]:8080",
			wantFields: []Field{{"Host", "[::1]:8080"}, {"Content-Length", "18"}},
			wantLength: 18,
		},
		{
			name:       "largest accepted length",
			head:       "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n",
			wantPath:   "/fast/a",
			wantHost:   "a",
			wantFields: []Field{{"Host", "a"}, {"Content-Length", "999999999999999999"}},
			wantLength: 999999999999999999,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r Request
			buf := []byte(tt.head + tt.after)
			n, out := parseHead(buf, &r)
			if out != complete {
				t.Fatalf("parseHead(%q) = %v, want complete", tt.head, out)
			}
			if n != len(tt.head) {
				t.Errorf("length = %d, want %d (the head's length, body excluded)", n, len(tt.head))
			}
			// The request must not alias the buffer, which is reused for the body.
			for i := range buf {
				buf[i] = 'Z'
			}
			if r.Method != "POST" || r.Path != tt.wantPath || r.Host != tt.wantHost {
				t.Errorf("Method, Path, Host = %q, %q, %q; want POST, %q, %q", r.Method, r.Path, r.Host, tt.wantPath, tt.wantHost)
			}
			if !slices.Equal(r.Fields, tt.wantFields) {
				t.Errorf("Fields = %q, want %q", r.Fields, tt.wantFields)
			}
			if r.ContentLength != tt.wantLength {
				t.Errorf("ContentLength = %d, want %d", r.ContentLength, tt.wantLength)
			}
			if r.Close != tt.wantClose {
				t.Errorf("Close = %v, want %v", r.Close, tt.wantClose)
			}
		})
	}
}

// TestParseHeadDeclined checks the heads the strict parser must leave to net/http: anything it
// might frame or route differently from net/http, or that net/http refuses.
func TestParseHeadDeclined(t *testing.T) {
	t.Parallel()
	const tail = "Host: a\r\nContent-Length: 0\r\n\r\n"
	tests := []struct {
		name string
		head string
	}{
		{"GET", "GET /fast/a HTTP/1.1\r\n" + tail},
		{"lower-case method", "post /fast/a HTTP/1.1\r\n" + tail},
		{"HTTP/1.0", "POST /fast/a HTTP/1.0\r\n" + tail},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"two spaces before target", "POST  /fast/a HTTP/1.1\r\n" + tail},
		{"two spaces before version", "POST /fast/a  HTTP/1.1\r\n" + tail},
		{"trailing word in request line", "POST /fast/a HTTP/1.1 x\r\n" + tail},
		{"no request target", "POST HTTP/1.1\r\n" + tail},
		{"query string", "POST /fast/a?x=1 HTTP/1.1\r\n" + tail},
		{"percent-encoding", "POST /fast/a%2Fb HTTP/1.1\r\n" + tail},
		{"dot-dot segment", "POST /fast/../admin HTTP/1.1\r\n" + tail},
		{"dot segment", "POST /fast/./a HTTP/1.1\r\n" + tail},
		{"double slash", "POST /fast//a HTTP/1.1\r\n" + tail},
		{"absolute-form target", "POST http://a/fast/a HTTP/1.1\r\n" + tail},
		{"asterisk target", "POST * HTTP/1.1\r\n" + tail},
		{"root only", "POST / HTTP/1.1\r\n" + tail},
		{"obs-fold with space", "POST /fast/a HTTP/1.1\r\nX-A: b\r\n c\r\n" + tail},
		{"obs-fold with tab", "POST /fast/a HTTP/1.1\r\nX-A: b\r\n\tc\r\n" + tail},
		{"bare LF inside a complete head", "POST /fast/a HTTP/1.1\r\nX-A: b\nHost: a\r\nContent-Length: 0\r\n\r\n"},
		{"bare LF ending the request line", "POST /fast/a HTTP/1.1\nHost: a\r\nContent-Length: 0\r\n\r\n"},
		{"bare LF lines, head not yet complete", "POST /fast/a HTTP/1.1\nHost: a\n"},
		{"bare LF blank line", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\n"},
		{"bare CR in a value", "POST /fast/a HTTP/1.1\r\nX-A: b\rc\r\n" + tail},
		{"missing Host", "POST /fast/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
		{"empty Host", "POST /fast/a HTTP/1.1\r\nHost: \r\nContent-Length: 0\r\n\r\n"},
		{"Host with a space", "POST /fast/a HTTP/1.1\r\nHost: a b\r\nContent-Length: 0\r\n\r\n"},
		{"Host with userinfo", "POST /fast/a HTTP/1.1\r\nHost: u@a\r\nContent-Length: 0\r\n\r\n"},
		{"two Hosts", "POST /fast/a HTTP/1.1\r\nHost: a\r\nhost: a\r\nContent-Length: 0\r\n\r\n"},
		{"missing Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"two equal Content-Lengths", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx"},
		{"list Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx"},
		{"non-digit Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1a\r\n\r\n"},
		{"hex Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n"},
		{"negative Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
		{"plus-signed Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx"},
		{"empty Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"},
		{"Content-Length past 18 digits", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n"},
		{"Transfer-Encoding chunked", "POST /fast/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Transfer-Encoding with Content-Length", "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\ntransfer-encoding: identity\r\n\r\n"},
		{"Expect", "POST /fast/a HTTP/1.1\r\nExpect: 100-continue\r\n" + tail},
		{"Upgrade", "POST /fast/a HTTP/1.1\r\nUPGRADE: h2c\r\nConnection: close\r\n" + tail},
		{"Connection naming another header", "POST /fast/a HTTP/1.1\r\nConnection: X-Secret\r\n" + tail},
		{"Connection close and a no-break space", "POST /fast/a HTTP/1.1\r\nConnection: close\xc2\xa0\r\n" + tail},
		{"Connection keep-alive after a next-line character", "POST /fast/a HTTP/1.1\r\nConnection: \xc2\x85keep-alive\r\n" + tail},
		{"Connection close with a long s", "POST /fast/a HTTP/1.1\r\nConnection: clo\xc5\xbfe\r\n" + tail},
		{"Connection keep-alive with a Kelvin sign", "POST /fast/a HTTP/1.1\r\nConnection: \xe2\x84\xaaeep-alive\r\n" + tail},
		{"Connection keep-alive and another header", "POST /fast/a HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n" + tail},
		{"second Content-Type", "POST /fast/a HTTP/1.1\r\nContent-Type: application/proto\r\ncontent-type: application/json\r\n" + tail},
		{"NUL in a value", "POST /fast/a HTTP/1.1\r\nX-A: b\x00c\r\n" + tail},
		{"control character in a value", "POST /fast/a HTTP/1.1\r\nX-A: b\x01\r\n" + tail},
		{"DEL in a value", "POST /fast/a HTTP/1.1\r\nX-A: \x7f\r\n" + tail},
		{"parenthesis in a name", "POST /fast/a HTTP/1.1\r\nX(A): b\r\n" + tail},
		{"quote in a name", "POST /fast/a HTTP/1.1\r\nX\"A: b\r\n" + tail},
		{"space inside a name", "POST /fast/a HTTP/1.1\r\nX A: b\r\n" + tail},
		{"high byte in a name", "POST /fast/a HTTP/1.1\r\nX\xc3\xa9: b\r\n" + tail},
		{"empty name", "POST /fast/a HTTP/1.1\r\n: b\r\n" + tail},
		{"space before colon", "POST /fast/a HTTP/1.1\r\nHost : a\r\nContent-Length: 0\r\n\r\n"},
		{"tab before colon", "POST /fast/a HTTP/1.1\r\nContent-Length\t: 0\r\nHost: a\r\n\r\n"},
		{"line without colon", "POST /fast/a HTTP/1.1\r\nX-A\r\n" + tail},
		{"blank line before request line", "\r\nPOST /fast/a HTTP/1.1\r\n" + tail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r Request
			if n, out := parseHead([]byte(tt.head), &r); out != declined {
				t.Errorf("parseHead(%q) = %d, %v; want declined", tt.head, n, out)
			}
		})
	}
}

// TestParseHeadIncomplete checks that a valid head that has not arrived in full is waited for
// rather than declined (which would send every slow client to net/http) or passed.
func TestParseHeadIncomplete(t *testing.T) {
	t.Parallel()
	const whole = "POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
	tests := []string{
		"",
		"P",
		"POST /fast/a HTTP/1.1",
		"POST /fast/a HTTP/1.1\r",
		"POST /fast/a HTTP/1.1\r\n",
		"POST /fast/a HTTP/1.1\r\nHost: a\r\n",
		whole[:len(whole)-1],
		whole[:len(whole)-2],
	}
	for _, head := range tests {
		t.Run(head, func(t *testing.T) {
			t.Parallel()
			var r Request
			if n, out := parseHead([]byte(head), &r); out != incomplete {
				t.Errorf("parseHead(%q) = %d, %v; want incomplete", head, n, out)
			}
		})
	}
	// Every prefix of a head must be incomplete, and the whole of it complete: a parser that
	// decided early on part of a line would cut a request in two.
	for i := range len(whole) {
		var r Request
		if _, out := parseHead([]byte(whole[:i]), &r); out != incomplete {
			t.Errorf("parseHead(%q) = %v, want incomplete", whole[:i], out)
		}
	}
	var r Request
	if n, out := parseHead([]byte(whole), &r); out != complete || n != len(whole) {
		t.Errorf("parseHead(%q) = %d, %v; want %d, complete", whole, n, out, len(whole))
	}
}

// TestParseHeadReusesRequest checks that parsing into a Request used for an earlier request on
// the connection leaves nothing of the earlier one behind.
func TestParseHeadReusesRequest(t *testing.T) {
	t.Parallel()
	var r Request
	first := "POST /fast/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"
	if _, out := parseHead([]byte(first), &r); out != complete {
		t.Fatalf("first head: %v, want complete", out)
	}
	second := "POST /fast/b HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n"
	if _, out := parseHead([]byte(second), &r); out != complete {
		t.Fatalf("second head: %v, want complete", out)
	}
	if r.Close || r.ContentLength != 0 || r.Host != "b" || r.Path != "/fast/b" || r.Get("X-A") != "" || len(r.Fields) != 2 {
		t.Errorf("after the second head: Close %v, ContentLength %d, Host %q, Path %q, Fields %q",
			r.Close, r.ContentLength, r.Host, r.Path, r.Fields)
	}
}

// TestRequestGetValues checks the case-insensitive lookups handlers use on the fields.
func TestRequestGetValues(t *testing.T) {
	t.Parallel()
	r := Request{Fields: []Field{{"Host", "a"}, {"x-tag", "1"}, {"Content-Type", "c"}, {"X-Tag", "2"}}}
	tests := []struct {
		name      string
		wantGet   string
		wantValue []string
	}{
		{"X-TAG", "1", []string{"1", "2"}},
		{"content-type", "c", []string{"c"}},
		{"Missing", "", nil},
	}
	for _, tt := range tests {
		if got := r.Get(tt.name); got != tt.wantGet {
			t.Errorf("Get(%q) = %q, want %q", tt.name, got, tt.wantGet)
		}
		if got := r.Values(tt.name); !slices.Equal(got, tt.wantValue) {
			t.Errorf("Values(%q) = %q, want %q", tt.name, got, tt.wantValue)
		}
	}
}

// sameHead reports whether a and b hold the same parsed head.
func sameHead(a, b *Request) bool {
	return a.Method == b.Method && a.Path == b.Path && a.Host == b.Host && a.ContentLength == b.ContentLength &&
		a.Close == b.Close && slices.Equal(a.Fields, b.Fields)
}

// TestParseHeadAfterOtherHeads parses a connection's heads in turn with one request, and each
// with a request of its own: the lines and fields kept from a head before must never show in
// the next one's fields, whether that head was complete or declined part-way.
func TestParseHeadAfterOtherHeads(t *testing.T) {
	t.Parallel()
	const token = "Authorization: Bearer e30.e30.c2ln\r\n"
	heads := []string{
		"POST /a HTTP/1.1\r\nHost: a\r\n" + token + "Content-Length: 0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\n" + token + "Content-Length: 0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\n" + token + "Content-Length: 12\r\n\r\n",
		// Declined at the request line, after its fields' lines were kept.
		"GET /a HTTP/1.1\r\nHost: b\r\nX-Injected: 1\r\nContent-Length: 3\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: b\r\nX-Injected: 1\r\nContent-Length: 3\r\n\r\n",
		// Declined part-way, at a value with a control character.
		"POST /a HTTP/1.1\r\nHost: b\r\nX-Bad: \x01\r\nContent-Length: 3\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: b\r\nX-Good: 1\r\nContent-Length: 3\r\n\r\n",
		// Fewer lines, more lines, a name in another case.
		"POST /a HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n" + token + "X-More: 1\r\n\r\n",
		"POST /a HTTP/1.1\r\nhost: b\r\nContent-Length: 3\r\n" + token + "X-More: 1\r\n\r\n",
		// A repeated line that is declined for where it stands: a second length.
		"POST /a HTTP/1.1\r\nhost: b\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
		"POST /a HTTP/1.1\r\nhost: b\r\nContent-Length: 3\r\nX-After: 1\r\n\r\n",
	}
	var r Request
	var before *Request
	for i, h := range heads {
		n, out := parseHead([]byte(h), &r)
		alone := new(Request)
		n2, out2 := parseHead([]byte(h), alone)
		if n != n2 || out != out2 || (out == complete && !sameHead(&r, alone)) {
			t.Errorf("head %d: %d, %v, %+v; alone %d, %v, %+v", i, n, out, r, n2, out2, *alone)
		}
		// Repeated says the fields are those of the head before, which was parsed whole.
		want := out == complete && before != nil && slices.Equal(r.Fields, before.Fields)
		if r.Repeated != want || r.Seq != uint64(i+1) {
			t.Errorf("head %d: Repeated %t, Seq %d; want %t, %d", i, r.Repeated, r.Seq, want, i+1)
		}
		before = nil
		if out2 == complete {
			before = alone
		}
	}
}

// FuzzParseHead checks the parser's invariants on arbitrary input: whatever it passes as
// complete is a whole POST head inside the input, with a usable length and fields that cannot
// smuggle a line break into a header written upstream.
func FuzzParseHead(f *testing.F) {
	seeds := []string{
		"POST /fast/a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /fast/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 0\r\n\r\nPOST /x HTTP/1.1\r\n",
		"POST /fast/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /fast/a HTTP/1.1\r\nHost: a\nContent-Length: 0\r\n\r\n",
		"POST /fast/a HTTP/1.1\r\nHost: a\r\n X: b\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"POST /fast/a HTTP/1.1\r\nHost: a\r\n",
		"\r\n\r\n",
		"",
	}
	for _, before := range seeds {
		for _, s := range seeds {
			f.Add([]byte(before), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, before, in []byte) {
		// The request has parsed another head before, as on a kept-alive connection, and
		// what it kept of that head must not change how it parses this one.
		var r Request
		parseHead(before, &r)
		n, out := parseHead(in, &r)
		var alone Request
		if n2, out2 := parseHead(in, &alone); n2 != n || out2 != out {
			t.Fatalf("after %q: %d, %v; alone %d, %v", before, n, out, n2, out2)
		}
		if out == complete && !sameHead(&r, &alone) {
			t.Fatalf("after %q the head parses as %+v; alone as %+v", before, r, alone)
		}
		if r.Repeated {
			var first Request
			if _, out := parseHead(before, &first); out != complete || !slices.Equal(first.Fields, r.Fields) {
				t.Fatalf("Repeated after %q (%v, fields %q), fields %q", before, out, first.Fields, r.Fields)
			}
		}
		switch out {
		case incomplete, declined:
			return
		case complete:
		default:
			t.Fatalf("outcome %v", out)
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("length %d for an input of %d bytes", n, len(in))
		}
		if !bytes.HasSuffix(in[:n], []byte("\r\n\r\n")) {
			t.Fatalf("head %q does not end with a blank line", in[:n])
		}
		if bytes.Contains(in[:n-4], []byte("\r\n\r\n")) {
			t.Fatalf("head %q runs past its first blank line", in[:n])
		}
		if r.ContentLength < 0 {
			t.Fatalf("ContentLength %d", r.ContentLength)
		}
		if r.Method != "POST" {
			t.Fatalf("Method %q", r.Method)
		}
		if strings.ContainsAny(r.Path, "\r\n ?%") || !strings.HasPrefix(r.Path, "/") {
			t.Fatalf("Path %q", r.Path)
		}
		for _, fl := range r.Fields {
			if strings.ContainsAny(fl.Name, "\r\n") || strings.ContainsAny(fl.Value, "\r\n") {
				t.Fatalf("field %q: %q holds a line break", fl.Name, fl.Value)
			}
		}
	})
}

// lowerNames returns head with its field names in lower case, which makes each line another
// without changing what the head means.
func lowerNames(head []byte) []byte {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	return append(append(line, "\r\n"...), bytes.ToLower(rest)...)
}

// BenchmarkParseHead parses the head of the gateway benchmark's call: a Connect call with a
// bearer token, as a Go client sends it.
// Its cases are the connection's heads repeating, as the benchmark's do; differing in the
// length, as a client's calls with different bodies do; and differing in every line.
func BenchmarkParseHead(b *testing.B) {
	head := func(path, length, token string) []byte {
		return []byte("POST " + path + " HTTP/1.1\r\n" +
			"Host: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: " + length + "\r\n" +
			"Authorization: Bearer " + strings.Repeat(token, 20) + "\r\n" +
			"Connect-Protocol-Version: 1\r\nContent-Type: application/proto\r\nAccept-Encoding: gzip\r\n\r\n")
	}
	const path = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	for _, bc := range []struct {
		name  string
		heads [][]byte
	}{
		{"repeated", [][]byte{head(path, "0", "eyJhbGciOiJFZERTQSJ9")}},
		{"length differs", [][]byte{head(path, "0", "eyJhbGciOiJFZERTQSJ9"), head(path, "12", "eyJhbGciOiJFZERTQSJ9")}},
		{"all differ", [][]byte{head(path, "0", "eyJhbGciOiJFZERTQSJ9"), lowerNames(head(path+"x", "12", "fQ.eyJzdWIiOiJ4In0x"))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var r Request
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, out := parseHead(bc.heads[i%len(bc.heads)], &r); out != complete {
					b.Fatalf("parseHead: outcome %d", out)
				}
			}
		})
	}
}
