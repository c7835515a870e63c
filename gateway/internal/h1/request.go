// Package h1 serves plain-text HTTP/1.1 connections for the gateway's most common request, a
// unary call with a known length, without net/http's server: one goroutine per connection
// reads a request, has it answered, and writes the answer with one system call, with no
// background read, context or header map per request. Everything else is handed, with its
// connection and the bytes already read, to a net/http server: HTTP/2, streams, chunked or
// unusual requests, and whatever the handler declines. The parser is strict on purpose: what
// it does not recognise exactly it leaves to net/http, which then answers or refuses it as it
// would have anyway, so the two servers never disagree about where a request ends.
package h1

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// Field is one header line of a request, its name as the client sent it.
type Field struct {
	Name, Value string
}

// Request is the head and body of one request the fast path may serve.
type Request struct {
	// Method is the request method; the parser only passes POST.
	Method string
	// Path is the request target, a path without query.
	Path string
	// Host is the Host header.
	Host string
	// Fields are the header lines in order, Host included. The parser reads the connection's
	// next head against them, so a handler must not change them.
	Fields []Field
	// ContentLength is the body's length.
	ContentLength int64
	// Close is true when the client asked to close the connection after this request.
	Close bool
	// Body is the whole body; it is valid until the handler returns.
	Body []byte
	// BodyErr is why the body could not be read in full (then the connection closes after the
	// answer).
	BodyErr error
	// RemoteAddr is the client's address.
	RemoteAddr netip.AddrPort
	// State is the handler's, kept across the requests of one connection, so that what a
	// request needs can be reused rather than allocated for each.
	State any
	// Seq numbers the heads the connection's parser has seen, declined ones too, from 1.
	Seq uint64
	// Repeated is true when Fields are the fields of the head before (Seq-1), line for line:
	// what a handler derived from those fields and keeps in State holds for these.
	Repeated bool

	// lines keeps the head's lines for the connection's next request, checked counts the
	// first Fields that were parsed from them and passed the checks, and completed is true
	// when the head was parsed whole.
	lines     httpwire.Lines
	checked   int
	completed bool
}

// Get returns the value of the first field named name (case-insensitive), or "". Lengths are
// compared first: most names differ in length, and EqualFold would compare them letter by letter.
func (r *Request) Get(name string) string {
	for i := range r.Fields {
		if f := &r.Fields[i]; len(f.Name) == len(name) && strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns the values of every field named name.
func (r *Request) Values(name string) []string {
	var vv []string
	for i := range r.Fields {
		if f := &r.Fields[i]; len(f.Name) == len(name) && strings.EqualFold(f.Name, name) {
			vv = append(vv, f.Value)
		}
	}
	return vv
}

// parse outcomes.
type outcome int

const (
	// complete: buf starts with a whole head the fast path can serve.
	complete outcome = iota
	// incomplete: the head has not arrived in full yet.
	incomplete
	// declined: the head is one for net/http (or invalid, which net/http refuses).
	declined
	// waiting: the head has not arrived in full, and the socket has nothing more yet.
	waiting
)

// parseHead parses the request head at the start of buf into r. It returns the head's length
// when complete. The head's lines are copied out of buf (see httpwire.Lines: the lines a
// connection's previous request had are reused, not copied again), so that the buffer can be
// reused for the body.
func parseHead(buf []byte, r *Request) (int, outcome) {
	// A line ended by a bare line feed is not one the parser recognises exactly, so such a
	// request is left to net/http.
	lines, n, crlf := r.lines.Head(buf)
	if n == 0 {
		if bytes.IndexByte(buf, '\n') >= 0 && !validSoFar(buf) {
			return 0, declined
		}
		return 0, incomplete
	}
	// A line that repeats the previous head's line at its place was checked then, and its
	// field, still in r.Fields, is taken as it is: a client's token is most of its head.
	checked, completed := r.checked, r.completed
	r.checked, r.completed, r.Repeated = 0, false, false
	r.Seq++
	if !crlf || len(lines) == 0 {
		return 0, declined
	}
	// After a head parsed whole, a repeated request line is its method and path, still in r.
	if !completed || !r.lines.Same(0) {
		method, rest1, ok1 := strings.Cut(lines[0], " ")
		target, proto, ok2 := strings.Cut(rest1, " ")
		if !ok1 || !ok2 || method != "POST" || proto != "HTTP/1.1" || !validPath(target) {
			return 0, declined
		}
		r.Method, r.Path = method, target
	}
	if completed && len(lines)-1 == checked && repeats(&r.lines, len(lines)) {
		// Every field repeats the head before, which was parsed whole: its fields, and what was
		// read from them (the host, the length, the connection's end), are still in r.
		r.checked, r.completed, r.Repeated = checked, true, true
		return n, complete
	}
	if n := len(lines) - 1; n < len(r.Fields) {
		clear(r.Fields[n:])
	}
	r.Fields = r.Fields[:0]
	r.Host, r.ContentLength, r.Close = "", -1, false
	hosts, types, repeated := 0, 0, 0
	for i, line := range lines[1:] {
		var name, value string
		if i < checked && r.lines.Same(i+1) {
			f := r.Fields[:i+1][i]
			name, value = f.Name, f.Value
			repeated++
		} else {
			var ok bool
			name, value, ok = strings.Cut(line, ":")
			if !ok || !httpwire.ValidName(name) {
				return 0, declined
			}
			value = httpwire.TrimSpace(value)
			if !httpwire.ValidValue(value) {
				return 0, declined
			}
		}
		// The headers that decide framing and routing; the first letter sorts out the rest
		// cheaply.
		switch name[0] | 0x20 {
		case 'h':
			if strings.EqualFold(name, "Host") {
				hosts++
				r.Host = value
			}
		case 'c':
			switch {
			case strings.EqualFold(name, "Content-Length"):
				if r.ContentLength >= 0 {
					return 0, declined
				}
				cl, ok := parseLength(value)
				if !ok {
					return 0, declined
				}
				r.ContentLength = cl
			case strings.EqualFold(name, "Content-Type"):
				if types++; types > 1 {
					return 0, declined
				}
			case strings.EqualFold(name, "Connection"):
				if !connectionTokens(value, r) {
					return 0, declined
				}
			}
		case 't', 'e', 'u':
			if strings.EqualFold(name, "Transfer-Encoding") || strings.EqualFold(name, "Expect") || strings.EqualFold(name, "Upgrade") {
				return 0, declined
			}
		}
		r.Fields = append(r.Fields, Field{Name: name, Value: value})
		r.checked = len(r.Fields)
	}
	if hosts != 1 || !validHost(r.Host) || r.ContentLength < 0 {
		return 0, declined
	}
	// A head declined part-way had more fields than were checked.
	r.Repeated = completed && repeated == len(r.Fields) && repeated == checked
	r.completed = true
	return n, complete
}

// maxBlank is how many CR and LF bytes before a request line blankLines skips: as many as
// net/http's server skips after a POST.
const maxBlank = 4

// blankLines returns how many CR and LF bytes at the start of buf to skip before a request line
// that follows a POST, when skipped were skipped before it already. RFC 9112 (section 2.2) asks
// a server to ignore at least one empty line before a request line, which old clients sent
// after a POST's body, and net/http's server skips up to maxBlank such bytes. The fast path
// must skip the same: the connection it hands over starts net/http's reading afresh, which
// refuses a blank line before a connection's first request.
func blankLines(buf []byte, skipped int) int {
	n := 0
	for skipped+n < maxBlank && n < len(buf) && (buf[n] == '\r' || buf[n] == '\n') {
		n++
	}
	return n
}

// repeats reports whether the field lines, lines 1 to n-1 of the last Split, all repeat the
// head before.
func repeats(l *httpwire.Lines, n int) bool {
	for i := 1; i < n; i++ {
		if !l.Same(i) {
			return false
		}
	}
	return true
}

// connectionTokens reads a Connection header into r; it reports false for tokens other than
// close and keep-alive, since a Connection header naming other headers makes them hop-by-hop.
// Only spaces and tabs are trimmed around a token, as net/http trims them: a no-break space
// after close (0xC2 0xA0, which strings.TrimSpace would trim) makes another token, and
// net/http keeps such a connection open. Tokens are compared in ASCII, as net/http compares
// them: EqualFold folds Unicode, for which a long s (U+017F) is an s and a Kelvin sign (U+212A)
// a k, but such a letter takes more than one byte, so with the lengths equal the token is
// ASCII.
func connectionTokens(value string, r *Request) bool {
	for token := range strings.SplitSeq(value, ",") {
		switch token = httpwire.TrimSpace(token); {
		case len(token) == len("close") && strings.EqualFold(token, "close"):
			r.Close = true
		case len(token) == len("keep-alive") && strings.EqualFold(token, "keep-alive"):
		default:
			return false
		}
	}
	return true
}

// validSoFar checks the complete lines of a head still arriving, so that a client cannot hold
// the fast path with a head that will be declined anyway: lines must end in CRLF.
func validSoFar(buf []byte) bool {
	for i, b := range buf {
		if b == '\n' && (i == 0 || buf[i-1] != '\r') {
			return false
		}
	}
	return true
}

// validPath passes the characters of procedure paths, and nothing that net/http would unescape
// or interpret: no query, no percent-encoding, no dot segments.
func validPath(p string) bool {
	if len(p) < 2 || p[0] != '/' || strings.Contains(p, "/.") || strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == '/':
		default:
			return false
		}
	}
	return true
}

// validHost passes host names, IPv4 and bracketed IPv6 addresses with an optional port.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// parseLength reads a Content-Length: decimal digits only, at most 18 of them.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}
