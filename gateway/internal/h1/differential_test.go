package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// reading is what a server made of one request on a connection: what decides where the request
// goes and how its body is framed, and where on the connection's bytes it ended.
type reading struct {
	Method, Target, Host string
	ContentLength        int64
	TransferEncoding     string
	Expect               string
	Close                bool
	// End is the offset just past the request's body in the connection's bytes: where the next
	// request starts.
	End int
	// Short is true when the bytes ended inside the body.
	Short bool
}

func (r reading) String() string {
	return fmt.Sprintf("%s %q host %q length %d te %q expect %q close %t end %d short %t",
		r.Method, r.Target, r.Host, r.ContentLength, r.TransferEncoding, r.Expect, r.Close, r.End, r.Short)
}

// netHTTPRequest is a request net/http's server took, with its head as it arrived.
type netHTTPRequest struct {
	head []byte
	req  *http.Request
}

// netHTTPReadings reads the connection's bytes in as net/http's server does: http.ReadRequest
// for each request, the checks its server makes beyond that (the version, the Host header, every
// field's name and value, Expect), and the CR and LF bytes it skips, up to four, after a POST.
// Each body is read whole, as by a handler that takes it. The readings stop where the server
// would close the connection or pass it to its HTTP/2 server.
func netHTTPReadings(in []byte) ([]reading, []netHTTPRequest) {
	src := bytes.NewReader(in)
	br := bufio.NewReader(src)
	offset := func() int { return len(in) - src.Len() - br.Buffered() }
	var (
		rs     []reading
		reqs   []netHTTPRequest
		method string
	)
	for {
		if method == "POST" {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = br.Discard(n)
		}
		start := offset()
		req, err := http.ReadRequest(br)
		if err != nil {
			return rs, reqs
		}
		head := in[start:offset()]
		if !netHTTPServes(req, head) {
			return rs, reqs
		}
		method = req.Method
		_, err = io.Copy(io.Discard, req.Body)
		rs = append(rs, reading{
			Method: req.Method, Target: req.RequestURI, Host: req.Host,
			ContentLength: req.ContentLength, TransferEncoding: strings.Join(req.TransferEncoding, ","),
			Expect: req.Header.Get("Expect"), Close: req.Close, End: offset(), Short: err != nil,
		})
		reqs = append(reqs, netHTTPRequest{head: head, req: req})
		if err != nil || req.Close {
			return rs, reqs
		}
	}
}

// netHTTPServes reports whether net/http's server serves a request http.ReadRequest returned from
// head, on HTTP/1: it refuses other versions and passes the HTTP/2 preface to HTTP/2; it refuses
// an HTTP/1.1 request without a Host field, an invalid Host field, an invalid field name or
// value, and an expectation other than 100-continue. http.ReadRequest drops the Host field
// (keeping what it says in req.Host, or the target's host instead), so the head's fields are
// read again as it read them.
func netHTTPServes(req *http.Request, head []byte) bool {
	if req.ProtoMajor != 1 {
		return false
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := tp.ReadLine(); err != nil {
		return false
	}
	fields, err := tp.ReadMIMEHeader()
	if err != nil {
		return false
	}
	hosts, ok := fields["Host"]
	if req.ProtoAtLeast(1, 1) && (!ok || len(hosts) == 0) && req.Method != "CONNECT" {
		return false
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return false
	}
	for name, values := range req.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			return false
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	expect := req.Header.Get("Expect")
	return expect == "" || httpguts.HeaderValuesContainsToken([]string{expect}, "100-continue")
}

// h1Readings reads the connection's bytes in as the h1 server does (conn.step and readHead, with
// New's default limits): each head the parser passes whole, within the limits, is served with
// the body its length gives, and the connection's next head, after the blank lines it skips, is
// parsed into the same Request. At the first head the parser declines, or that is past a limit,
// the connection goes to net/http: handover is that head's offset, -1 when the fast path keeps
// the connection to its end.
func h1Readings(in []byte) (rs []reading, handover int) {
	o := New(nil, nil).o
	limit := min(o.maxHeaderBytes, bufferSize)
	var r Request
	for off := 0; ; {
		if r.Seq > 0 {
			off += blankLines(in[off:], 0)
		}
		buf := in[off:min(len(in), off+bufferSize)]
		n, out := parseHead(buf, &r)
		switch {
		case out == incomplete && len(buf) >= limit:
			return rs, off
		case out == incomplete:
			return rs, -1
		case out != complete || n > limit || r.ContentLength > o.maxBody:
			return rs, off
		}
		end := off + n + int(r.ContentLength)
		rs = append(rs, reading{
			Method: r.Method, Target: r.Path, Host: r.Host, ContentLength: r.ContentLength,
			Close: r.Close, End: min(end, len(in)), Short: end > len(in),
		})
		if end >= len(in) || r.Close {
			return rs, -1
		}
		off = end
	}
}

// handoverReason is one reason for which the fast path leaves a request that net/http serves to
// net/http. The h1 parser refuses nothing itself: what it does not take goes to net/http, so a
// request handed over is served as it would have been without the fast path. The list records
// that strictness as deliberate, and a request handed over for none of these reasons is one the
// fast path lost.
type handoverReason struct {
	why     string
	applies func(h rawHead, req *http.Request) bool
}

var (
	plainTarget = regexp.MustCompile(`^(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+/?$`)
	plainLength = regexp.MustCompile(`^[0-9]{1,18}$`)
	plainHost   = regexp.MustCompile(`^[A-Za-z0-9._:\[\]-]+$`)
)

var handoverReasons = []handoverReason{
	{"a method other than POST: the fast path serves unary calls, which are POSTs",
		func(_ rawHead, req *http.Request) bool { return req.Method != "POST" }},
	{"a version other than HTTP/1.1: HTTP/1.0 keeps connections alive by other rules",
		func(_ rawHead, req *http.Request) bool { return req.Proto != "HTTP/1.1" }},
	{"a target other than a path of procedure characters (a query, percent-encoding, dot or empty segments, absolute or asterisk form): routing must not depend on how a target is decoded or cleaned",
		func(_ rawHead, req *http.Request) bool { return !plainTarget.MatchString(req.RequestURI) }},
	{"no Content-Length: net/http takes a POST without one as empty; the fast path frames bodies by an explicit length only",
		func(h rawHead, _ *http.Request) bool { return len(h.values("Content-Length")) == 0 }},
	{"Content-Length on more than one line: RFC 9112, section 6.3, lets a recipient take equal ones as one, as net/http does, or refuse them; either way not on the fast path",
		func(h rawHead, _ *http.Request) bool { return len(h.values("Content-Length")) > 1 }},
	{"a Content-Length of more than 18 digits: the fast path's lengths never overflow",
		func(h rawHead, _ *http.Request) bool {
			v := h.values("Content-Length")
			return len(v) == 1 && !plainLength.MatchString(v[0])
		}},
	{"Transfer-Encoding: chunked bodies, and the smuggling that a length beside one invites, are left to net/http",
		func(h rawHead, _ *http.Request) bool { return len(h.values("Transfer-Encoding")) > 0 }},
	{"Expect: the interim 100 Continue answer, or the 417, is net/http's",
		func(h rawHead, _ *http.Request) bool { return len(h.values("Expect")) > 0 }},
	{"Upgrade: protocol switches (h2c) are net/http's",
		func(h rawHead, _ *http.Request) bool { return len(h.values("Upgrade")) > 0 }},
	{"a Connection token other than close and keep-alive: it makes the header it names hop-by-hop, which the fast path does not track",
		func(h rawHead, _ *http.Request) bool {
			for _, v := range h.values("Connection") {
				for token := range strings.SplitSeq(v, ",") {
					// In ASCII: strings.EqualFold and ToLower take a Kelvin sign for a k.
					token = strings.Map(asciiLower, strings.Trim(token, " \t"))
					if token != "close" && token != "keep-alive" {
						return true
					}
				}
			}
			return false
		}},
	{"a Host other than one name or address with an optional port: the fast path's routes and logs take no other",
		func(h rawHead, _ *http.Request) bool {
			v := h.values("Host")
			return len(v) != 1 || !plainHost.MatchString(v[0])
		}},
	{"more than one Content-Type: the codec is chosen by one",
		func(h rawHead, _ *http.Request) bool { return len(h.values("Content-Type")) > 1 }},
	{"a line not ended by CRLF (a bare LF, or a CR before it): RFC 9112, section 2.2, lets a recipient take a bare LF as a line end, as net/http does; the fast path reads CRLF only",
		func(h rawHead, _ *http.Request) bool { return h.bareLineEnd() }},
	{"a field line folded onto the next (obs-fold): RFC 9112, section 5.2, has a server refuse it or replace it by spaces, as net/http does",
		func(h rawHead, _ *http.Request) bool { return h.folded() }},
	{"a head longer than the fast path's header limit, or a body longer than its body limit: net/http applies its own limits",
		func(h rawHead, req *http.Request) bool {
			o := New(nil, nil).o
			return len(h.raw) > min(o.maxHeaderBytes, bufferSize) || req.ContentLength > o.maxBody
		}},
}

// asciiLower lowers ASCII letters only, as HTTP compares names and tokens.
func asciiLower(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// rawHead is a request head as it arrived, split at LF as net/http splits it, for the reasons
// above to look at what net/http's parsed request no longer shows: how often a field came,
// how its lines ended.
type rawHead struct {
	raw []byte
	// fields are the field lines, each split at its first colon, the value without the spaces
	// and tabs around it.
	fields [][2]string
}

// splitHead splits a head that net/http read.
func splitHead(raw []byte) rawHead {
	h := rawHead{raw: raw}
	lines := strings.Split(string(raw), "\n")
	for _, line := range lines[1:] {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		h.fields = append(h.fields, [2]string{name, strings.Trim(value, " \t")})
	}
	return h
}

// values returns the values of the field lines named name, in any case of its ASCII letters.
func (h rawHead) values(name string) []string {
	var vv []string
	for _, f := range h.fields {
		if strings.Map(asciiLower, f[0]) == strings.Map(asciiLower, name) {
			vv = append(vv, f[1])
		}
	}
	return vv
}

// bareLineEnd reports an LF without a CR before it, or a CR without an LF after it.
func (h rawHead) bareLineEnd() bool {
	for i, c := range h.raw {
		if c == '\n' && (i == 0 || h.raw[i-1] != '\r') || c == '\r' && (i+1 == len(h.raw) || h.raw[i+1] != '\n') {
			return true
		}
	}
	return false
}

// folded reports a line that starts with white space, which net/http takes as the
// continuation of the line before.
func (h rawHead) folded() bool {
	for _, f := range h.fields {
		if strings.HasPrefix(f[0], " ") || strings.HasPrefix(f[0], "\t") {
			return true
		}
	}
	return false
}

// plainRequest is a call the fast path serves, put before and after the seeds so that every
// seed is also read as the second request of a connection, and as the first one before another.
const plainRequest = "POST /pkg.v1.Service/Method HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

// FuzzH1MatchesNetHTTP feeds the same bytes to the h1 server's parser, as its connections read
// them, and to net/http's http.ReadRequest, as net/http's server reads a connection. Every
// request the fast path serves must be read by net/http alike: method, target, Host, length,
// no Transfer-Encoding or Expect, whether the connection closes after it, and where it ends, so
// where the next one starts. From the first request it hands over, net/http reads the rest
// afresh, and the whole must be what net/http alone reads of the bytes. A request handed over
// that net/http serves must be handed over for one of the reasons in handoverReasons.
func FuzzH1MatchesNetHTTP(f *testing.F) {
	const (
		line = "POST /pkg.v1.Service/Method HTTP/1.1\r\n"
		host = "Host: api.example\r\n"
	)
	seeds := []string{
		plainRequest,
		line + host + "Connection: close\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: keep-alive, close\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: Close \r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: close,\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: X-Secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\n{}",
		// Tokens that only Unicode's white space and case folding make close and keep-alive: a
		// no-break space, a next-line character, a long s, a Kelvin sign.
		line + host + "Connection: close\xc2\xa0\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: \xc2\x85keep-alive\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: clo\xc5\xbfe\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Connection: \xe2\x84\xaaeep-alive\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nContent-Length: 2\r\n\r\n{}",
		// Two lengths, differing and equal; a length with a transfer coding.
		line + host + "Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}abc",
		line + host + "Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}",
		line + host + "Content-Length: 2, 2\r\n\r\n{}",
		line + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		line + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		line + host + "Transfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\nTrailer-A: 1\r\n\r\n",
		line + host + "Transfer-Encoding: chunked, identity\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
		line + host + "Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
		// Obs-fold, on a transfer coding and on another field.
		line + host + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "X-A: b\r\n\tTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "X-A: b\r\n c\r\nContent-Length: 2\r\n\r\n{}",
		// White space before the colon.
		line + host + "Content-Length : 5\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}",
		line + "Host\t: api.example\r\nContent-Length: 2\r\n\r\n{}",
		// Line ends other than CRLF.
		"POST /pkg.v1.Service/Method HTTP/1.1\nHost: api.example\nContent-Length: 2\n\n{}",
		line + host + "X-A: b\nContent-Length: 2\r\n\r\n{}",
		line + host + "Content-Length: 2\r\n\n{}",
		line + host + "Content-Length: 2\r\r\n\r\n{}",
		line + host + "X-A: b\rContent-Length: 5\r\nContent-Length: 2\r\n\r\n{}",
		// Control characters in values and names.
		line + host + "X-A: b\x00c\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "X-A: \x01\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "X-A: \x7f\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "X-A: caf\xc3\xa9\tau lait\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "X\x00A: b\r\nContent-Length: 2\r\n\r\n{}",
		line + "Host: api.example\x00evil\r\nContent-Length: 2\r\n\r\n{}",
		// Targets.
		"POST http://api.example/pkg.v1.Service/Method HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST http://other.example/pkg.v1.Service/Method HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/Method?x=1 HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/%4Dethod HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/../Method HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service//Method HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST * HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/Method/ HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST  /pkg.v1.Service/Method HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"post /pkg.v1.Service/Method HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"GET /pkg.v1.Service/Method HTTP/1.1\r\n" + host + "\r\n",
		// Hosts.
		line + host + "Host: other.example\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "host: api.example\r\nContent-Length: 2\r\n\r\n{}",
		line + "Content-Length: 2\r\n\r\n{}",
		line + "Host: \r\nContent-Length: 2\r\n\r\n{}",
		line + "Host: [::1]:8080\r\nContent-Length: 2\r\n\r\n{}",
		line + "Host: user@api.example\r\nContent-Length: 2\r\n\r\n{}",
		line + "Host: api.example:8080\r\nContent-Length: 2\r\n\r\n{}",
		// Lengths.
		line + host + "Content-Length: 999999999999999999\r\n\r\n{}",
		line + host + "Content-Length: 99999999999999999999\r\n\r\n{}",
		line + host + "Content-Length: 9223372036854775808\r\n\r\n{}",
		line + host + "Content-Length: 4194305\r\n\r\n{}",
		line + host + "Content-Length: -1\r\n\r\n{}",
		line + host + "Content-Length: +2\r\n\r\n{}",
		line + host + "Content-Length: 0002\r\n\r\n{}",
		line + host + "Content-Length: 0x2\r\n\r\n{}",
		line + host + "Content-Length: 2 2\r\n\r\n{}",
		line + host + "Content-Length:\t2\t\r\n\r\n{}",
		line + host + "Content-Length: \r\n\r\n{}",
		line + host + "Content-Length: 5\r\n\r\n{}",
		line + host + "\r\n",
		// Expectations.
		line + host + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Expect: 100-Continue\r\nContent-Length: 2\r\n\r\n{}",
		line + host + "Expect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
		// Versions.
		"POST /pkg.v1.Service/Method HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/Method HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/Method HTTP/2.0\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"POST /pkg.v1.Service/Method HTTP/1.10\r\n" + host + "Content-Length: 2\r\n\r\n{}",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		// Blank lines before a request, on a new connection and after a POST.
		"\r\n" + plainRequest,
		plainRequest + "\r\n",
		plainRequest + "\r\n\r\n\r\n",
		plainRequest + "\n",
		// Pipelined, with a body that holds what looks like a request.
		line + host + "Content-Length: 41\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + plainRequest,
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
		f.Add([]byte(s + plainRequest))
		f.Add([]byte(plainRequest + s))
		f.Add([]byte(plainRequest + s + plainRequest))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, _ := netHTTPReadings(in)
		got, at := h1Readings(in)
		served := len(got)
		if at >= 0 {
			rest, reqs := netHTTPReadings(in[at:])
			for _, r := range rest {
				r.End += at
				got = append(got, r)
			}
			if len(reqs) > 0 {
				h := splitHead(reqs[0].head)
				if !slices.ContainsFunc(handoverReasons, func(o handoverReason) bool { return o.applies(h, reqs[0].req) }) {
					t.Errorf("the fast path handed over %q, which net/http serves, for none of the listed reasons", reqs[0].head)
				}
			}
		}
		if !slices.Equal(got, want) {
			var b strings.Builder
			fmt.Fprintf(&b, "the fast path served %d, handed over at %d; with it the connection reads:\n", served, at)
			for _, r := range got {
				fmt.Fprintf(&b, "\t%s\n", r)
			}
			b.WriteString("net/http alone reads:\n")
			for _, r := range want {
				fmt.Fprintf(&b, "\t%s\n", r)
			}
			t.Fatalf("input %q:\n%s", in, b.String())
		}
	})
}
