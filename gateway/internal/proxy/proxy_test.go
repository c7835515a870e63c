package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"connectrpc.com/connect"
)

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		connect string // Connect-Timeout-Ms
		grpc    string // Grpc-Timeout
		want    time.Duration
		ok      bool
	}{
		{name: "none"},
		// gRPC's units.
		{name: "hours", grpc: "2H", want: 2 * time.Hour, ok: true},
		{name: "minutes", grpc: "3M", want: 3 * time.Minute, ok: true},
		{name: "seconds", grpc: "30S", want: 30 * time.Second, ok: true},
		{name: "milliseconds", grpc: "1500m", want: 1500 * time.Millisecond, ok: true},
		{name: "microseconds", grpc: "250u", want: 250 * time.Microsecond, ok: true},
		{name: "nanoseconds", grpc: "99999999n", want: 99999999, ok: true},
		{name: "eight digits of hours", grpc: "2562047H", want: 2562047 * time.Hour, ok: true},
		{name: "zero", grpc: "0S", want: 0, ok: true},
		// Overflow and junk are ignored: the route's timeout still applies.
		{name: "overflowing hours", grpc: "99999999H", ok: false},
		{name: "overflowing minutes", grpc: "99999999M", want: 99999999 * time.Minute, ok: true}, // 190 years fit
		{name: "nine digits", grpc: "100000000S", ok: false},
		{name: "no value", grpc: "S", ok: false},
		{name: "no unit", grpc: "30", ok: false},
		{name: "an unknown unit", grpc: "30s", ok: false},
		{name: "another unknown unit", grpc: "30x", ok: false},
		{name: "negative", grpc: "-1S", ok: false},
		{name: "fractional", grpc: "1.5S", ok: false},
		{name: "a space", grpc: " 1S", ok: false},
		{name: "hex", grpc: "0x1S", ok: false},
		// Connect's milliseconds, which win over grpc-timeout.
		{name: "connect", connect: "1500", want: 1500 * time.Millisecond, ok: true},
		{name: "connect zero", connect: "0", want: 0, ok: true},
		{name: "connect ten digits", connect: "9999999999", want: 9999999999 * time.Millisecond, ok: true},
		{name: "connect eleven digits", connect: "10000000000", ok: false},
		{name: "connect negative", connect: "-5", ok: false},
		{name: "connect junk", connect: "soon", ok: false},
		{name: "connect with a unit", connect: "100ms", ok: false},
		{name: "connect wins", connect: "100", grpc: "5S", want: 100 * time.Millisecond, ok: true},
		{name: "invalid connect hides grpc", connect: "x", grpc: "5S", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseClientTimeout(tt.connect, tt.grpc)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Fatalf("ParseClientTimeout(%q, %q) = %v, %v; want %v, %v", tt.connect, tt.grpc, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		route  time.Duration
		client string // Grpc-Timeout
		want   time.Duration
		bound  bool
	}{
		{"the route's", 30 * time.Second, "", 30 * time.Second, true},
		{"no bound", 0, "", 0, false},
		{"the client's when shorter", 30 * time.Second, "1S", time.Second, true},
		{"the route's when shorter", time.Second, "30S", time.Second, true},
		{"the client's when the route has none", 0, "5M", 5 * time.Minute, true},
		{"the route's when the client's is junk", 30 * time.Second, "5x", 30 * time.Second, true},
		{"an expired one for the client's zero", 30 * time.Second, "0n", 0, true},
		{"an expired one for the client's zero without a route's", 0, "0S", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, fromClient, bound := Deadline(tt.route, "", tt.client)
			if got != tt.want || bound != tt.bound {
				t.Fatalf("Deadline(%v, %q) = %v, %v; want %v, %v", tt.route, tt.client, got, bound, tt.want, tt.bound)
			}
			if _, valid := ParseClientTimeout("", tt.client); fromClient != valid {
				t.Fatalf("Deadline(%v, %q) says the client set it: %v; want %v", tt.route, tt.client, fromClient, valid)
			}
		})
	}
}

func allCodes() []connect.Code {
	codes := []connect.Code{0}
	for c := connect.CodeCanceled; c <= connect.CodeUnauthenticated; c++ {
		codes = append(codes, c)
	}
	return codes
}

// TestStatusOfIsConnects checks statusOf against connect-go's own error writer, for every code.
func TestStatusOfIsConnects(t *testing.T) {
	t.Parallel()
	ew := connect.NewErrorWriter()
	for _, code := range allCodes()[1:] {
		r := httptest.NewRequest(http.MethodPost, "/a.B/C", strings.NewReader("{}"))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Connect-Protocol-Version", "1")
		w := httptest.NewRecorder()
		if err := ew.Write(w, r, connect.NewError(code, errors.New("x"))); err != nil {
			t.Fatal(err)
		}
		if got := StatusOf(code); got != w.Code {
			t.Errorf("StatusOf(%v) = %d, connect-go answers %d", code, got, w.Code)
		}
	}
	if got := StatusOf(0); got != http.StatusOK {
		t.Errorf("StatusOf(0) = %d", got)
	}
}

func TestCodeOfStatusOfRoundTrip(t *testing.T) {
	t.Parallel()
	// Codes that share an HTTP status come back as the status's main code.
	lossy := map[connect.Code]connect.Code{
		connect.CodeUnknown:            connect.CodeUnknown,
		connect.CodeFailedPrecondition: connect.CodeInvalidArgument,
		connect.CodeOutOfRange:         connect.CodeInvalidArgument,
		connect.CodeAborted:            connect.CodeAlreadyExists,
		connect.CodeInternal:           connect.CodeUnknown,
		connect.CodeDataLoss:           connect.CodeUnknown,
	}
	for _, code := range allCodes() {
		want, ok := lossy[code]
		if !ok {
			want = code
		}
		if got := codeOf(StatusOf(code), http.Header{}); got != want {
			t.Errorf("codeOf(StatusOf(%v) = %d) = %v, want %v", code, StatusOf(code), got, want)
		}
		// grpc-status, when present, is the answer whatever the HTTP status.
		h := http.Header{"Grpc-Status": {fmt.Sprint(int(code))}}
		for _, status := range []int{http.StatusOK, http.StatusBadGateway, StatusOf(code)} {
			if got := codeOf(status, h); got != code {
				t.Errorf("codeOf(%d, grpc-status %d) = %v, want %v", status, code, got, code)
			}
		}
	}
}

func TestCodeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status     int
		grpcStatus string
		want       connect.Code
	}{
		{http.StatusOK, "", 0},
		{http.StatusPreconditionFailed, "", connect.CodeFailedPrecondition},
		{http.StatusBadGateway, "", connect.CodeUnavailable},
		{http.StatusRequestTimeout, "", connect.CodeDeadlineExceeded},
		{http.StatusTeapot, "", connect.CodeUnknown},
		{http.StatusOK, "0", 0},
		{http.StatusOK, "16", connect.CodeUnauthenticated},
		{http.StatusOK, "17", connect.CodeUnknown},
		{http.StatusOK, "-1", connect.CodeUnknown},
		{http.StatusOK, "OK", connect.CodeUnknown},
		{http.StatusNotFound, "14", connect.CodeUnavailable},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.grpcStatus != "" {
			h.Set("Grpc-Status", tt.grpcStatus)
		}
		if got := codeOf(tt.status, h); got != tt.want {
			t.Errorf("codeOf(%d, %q) = %v, want %v", tt.status, tt.grpcStatus, got, tt.want)
		}
	}
}

// envelope frames payload as gRPC and Connect streams do: a flags byte, a big-endian length.
func envelope(flags byte, size uint32) []byte {
	b := make([]byte, 5, 5+min(size, 1<<16))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], size)
	if size <= 1<<16 {
		for i := range size {
			b = append(b, byte(i))
		}
	}
	return b
}

// readers returns the ways a body can arrive: whole, a byte at a time, in halves, in odd
// chunks, and with the last data and EOF in one Read.
func readers(b []byte) map[string]io.Reader {
	return map[string]io.Reader{
		"whole":       bytes.NewReader(b),
		"bytes":       iotest.OneByteReader(bytes.NewReader(b)),
		"halves":      iotest.HalfReader(bytes.NewReader(b)),
		"chunks of 3": &chunked{b: b, n: 3},
		"chunks of 7": &chunked{b: b, n: 7},
		"data+EOF":    iotest.DataErrReader(bytes.NewReader(b)),
	}
}

type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

func TestStreamBodyChecksEachMessage(t *testing.T) {
	t.Parallel()
	const limit = 100
	tests := []struct {
		name     string
		messages []uint32
		check    bool
		tooLarge int // index of the first message over the limit, -1 for none
	}{
		{"small messages", []uint32{0, 10, 99, 1}, true, -1},
		{"exactly the limit", []uint32{limit, limit}, true, -1},
		{"one byte over", []uint32{limit + 1}, true, 0},
		{"over after good ones", []uint32{10, limit, limit + 1, 5}, true, 2},
		{"a 4GiB length", []uint32{5, 0xFFFFFFFF}, true, 1},
		{"not checked (gRPC-Web text)", []uint32{limit + 1, 1000}, false, -1},
	}
	for _, tt := range tests {
		var in []byte
		offsets := make([]int, len(tt.messages))
		for i, size := range tt.messages {
			offsets[i] = len(in)
			in = append(in, envelope(byte(i%2), size)...)
		}
		for how, r := range readers(in) {
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				t.Parallel()
				sb := &streamBody{r: io.NopCloser(r), checkEnvelopes: tt.check, framing: envelopes{limit: uint64(limit)}}
				out, err := io.ReadAll(sb)
				if tt.tooLarge < 0 {
					if err != nil || !bytes.Equal(out, in) || sb.err != nil {
						t.Fatalf("read %d of %d bytes, err %v, sb.err %v", len(out), len(in), err, sb.err)
					}
					return
				}
				if !errors.Is(err, ErrTooLarge) || sb.err != ErrTooLarge {
					t.Fatalf("err %v, sb.err %v; want ErrTooLarge", err, sb.err)
				}
				// What passed is a prefix of the stream that ends before the large message's
				// payload: the upstream never sees any of it.
				if !bytes.HasPrefix(in, out) || len(out) > offsets[tt.tooLarge]+4 {
					t.Fatalf("%d bytes passed, the large message's payload starts at %d", len(out), offsets[tt.tooLarge]+5)
				}
			})
		}
	}
}

func TestStreamBodyCanBeResentOnlyUnread(t *testing.T) {
	t.Parallel()
	body := envelope(0, 3)
	sb := &streamBody{r: io.NopCloser(bytes.NewReader(body)), checkEnvelopes: true, framing: envelopes{limit: 10}}
	for range 2 { // before any Read, as often as the balancer asks
		again, err := sb.again()
		if err != nil || again != sb {
			t.Fatalf("again() before reading = %v, %v", again, err)
		}
	}
	buf := make([]byte, 2)
	if _, err := sb.Read(buf); err != nil {
		t.Fatal(err)
	}
	if again, err := sb.again(); err == nil || again != nil {
		t.Fatalf("again() after a Read = %v, %v; want an error", again, err)
	}
	// Close leaves the client's body open for net/http to close.
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(sb)
	if err != nil || !bytes.Equal(append(buf, rest...), body) {
		t.Fatalf("after Close: %q, %v", rest, err)
	}
}

func TestBytesBody(t *testing.T) {
	t.Parallel()
	want := []byte("0123456789")
	for how, r := range map[string]io.Reader{
		"whole": &bytesBody{b: want},
		"bytes": iotest.OneByteReader(&bytesBody{b: want}),
	} {
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %q, %v", how, got, err)
		}
	}
	if err := iotest.TestReader(&bytesBody{b: want}, want); err != nil {
		t.Fatal(err)
	}
	empty := &bytesBody{}
	if n, err := empty.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("empty body: %d, %v", n, err)
	}
}

func TestNewURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		base, path, rawPath, rawQuery string
		scheme, host                  string
		want                          string
	}{
		{"http://audit", "/basalt.audit.v1.AuditService/ListEvents", "", "", "http", "audit", "http://audit/basalt.audit.v1.AuditService/ListEvents"},
		{"https://10.0.0.1:7101", "/a.B/C", "", "encoding=json&message=%7B%7D", "https", "10.0.0.1:7101", "https://10.0.0.1:7101/a.B/C?encoding=json&message=%7B%7D"},
		{"http://[::1]:7101", "/a.B/C", "", "", "http", "[::1]:7101", "http://[::1]:7101/a.B/C"},
		{"audit:80", "/a.B/C", "", "", "http", "audit:80", "http://audit:80/a.B/C"}, // no scheme: http
		// An escaped path stays as the client escaped it.
		{"http://identity", "/v1/users/a/b", "/v1/users/a%2Fb", "", "http", "identity", "http://identity/v1/users/a%2Fb"},
		{"http://identity", "/v1/users/a b", "/v1/users/a%20b", "", "http", "identity", "http://identity/v1/users/a%20b"},
	}
	for _, tt := range tests {
		t.Run(tt.base+tt.path, func(t *testing.T) {
			t.Parallel()
			u := newURL(tt.base, tt.path, tt.rawPath, tt.rawQuery)
			if u.Scheme != tt.scheme || u.Host != tt.host || u.Path != tt.path || u.RawPath != tt.rawPath || u.RawQuery != tt.rawQuery {
				t.Fatalf("newURL = %#v", u)
			}
			if got := u.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
	for s, want := range map[string]int{"http://x": 4, "a://": 1, "x": -1, "x:/": -1, "://x": 0, "": -1} {
		if got := indexScheme(s); got != want {
			t.Errorf("indexScheme(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestContentTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ct                       string
		grpc, stream, enveloping bool
	}{
		{"application/grpc", true, true, true},
		{"application/grpc+proto", true, true, true},
		{"application/grpc+json", true, true, true},
		{"application/grpc-web", false, true, true},
		{"application/grpc-web+proto", false, true, true},
		{"application/grpc-web-text", false, true, false},
		{"application/grpc-web-text+proto", false, true, false},
		{"application/connect+proto", false, true, true},
		{"application/connect+json", false, true, true},
		{"application/proto", false, false, false},
		{"application/json", false, false, false},
		{"text/plain", false, false, false},
		{"", false, false, false},
	}
	for _, tt := range tests {
		h := http.Header{"Content-Type": {tt.ct}}
		if got := isGRPC(tt.ct); got != tt.grpc {
			t.Errorf("isGRPC(%q) = %v", tt.ct, got)
		}
		if got := isStream(tt.ct); got != tt.stream {
			t.Errorf("isStream(%q) = %v", tt.ct, got)
		}
		if got := enveloped(h); got != tt.enveloping {
			t.Errorf("enveloped(%q) = %v", tt.ct, got)
		}
	}
}

// The tests below forward through a real upstream server with a plain HTTP client as the
// Upstream.

// TestForwardKeepsTheRouteTimeoutForAZeroClientTimeout guards against a client lifting the
// route's timeout with "Connect-Timeout-Ms: 0" or "grpc-timeout: 0n": a zero is a deadline
// that has passed, never a request for no bound. The call is bounded as the gateway's pipeline
// bounds it, by Deadline.
func TestForwardKeepsTheRouteTimeoutForAZeroClientTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	for _, h := range []http.Header{{"Connect-Timeout-Ms": {"0"}}, {"Grpc-Timeout": {"0n"}}} {
		r := httptest.NewRequest(http.MethodPost, "/a.B/C", strings.NewReader("{}"))
		r.Header = h
		r.Header.Set("Content-Type", "application/json")
		d, _, bounded := Deadline(time.Minute, h.Get("Connect-Timeout-Ms"), h.Get("Grpc-Timeout"))
		start := time.Now()
		res := New(1<<20, time.Second).Forward(httptest.NewRecorder(), r, &Call{
			Upstream: srv.Client(), BaseURL: srv.URL, Header: http.Header{}, Buffer: true, Deadline: d, Bounded: bounded,
		})
		if took := time.Since(start); took > 2*time.Second || res.Code != connect.CodeDeadlineExceeded {
			t.Errorf("%v: the call took %v and ended %v; want deadline_exceeded at once", h, took, res.Code)
		}
	}
}

// TestForwardKeepsTheGatewaysVary guards the "Vary: Origin" that CORS set against the
// upstream's own Vary (connect-go sets "Vary: Accept-Encoding" on every GET): were it
// replaced, a cache could serve one origin's response to another.
func TestForwardKeepsTheGatewaysVary(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Encoding")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	defer srv.Close()
	w := httptest.NewRecorder()
	w.Header().Add("Vary", "Origin")
	r := httptest.NewRequest(http.MethodGet, "/a.B/C?encoding=json&message=%7B%7D", nil)
	New(1<<20, time.Second).Forward(w, r, &Call{Upstream: srv.Client(), BaseURL: srv.URL, Header: http.Header{}})
	if got := w.Header().Values("Vary"); !slices.Contains(got, "Origin") || !slices.Contains(got, "Accept-Encoding") {
		t.Fatalf("Vary = %q, want Origin and Accept-Encoding", got)
	}
}

func TestEnvelopesFindTheBoundaries(t *testing.T) {
	t.Parallel()
	msg := func(payload string) []byte {
		b := []byte{0, 0, 0, 0, byte(len(payload))}
		return append(b, payload...)
	}
	stream := append(append(msg("hello"), msg("")...), msg("world!")...)
	// Boundaries are after byte 0, 10, 15 and 26; every split of the stream into two writes
	// must agree with them.
	ends := map[int]bool{0: true, 10: true, 15: true, 26: true}
	for split := 0; split <= len(stream); split++ {
		var e envelopes
		e.feed(stream[:split])
		if got := e.boundary(); got != ends[split] {
			t.Fatalf("after %d bytes boundary() = %v, want %v", split, got, ends[split])
		}
		e.feed(stream[split:])
		if !e.boundary() {
			t.Fatalf("split at %d: the whole stream does not end on a boundary", split)
		}
	}
}

func TestEndFrame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ct   string
		flag byte
		body string
	}{
		{"application/connect+proto", 0x02, `{"error":{"code":"deadline_exceeded","message":"late"}}`},
		{"application/connect+json", 0x02, `{"error":{"code":"deadline_exceeded","message":"late"}}`},
		{"application/grpc-web+proto", 0x80, "grpc-status: 4\r\ngrpc-message: late\r\n"},
		{"application/grpc-web", 0x80, "grpc-status: 4\r\ngrpc-message: late\r\n"},
		{"application/grpc-web-text", 0, ""},
		{"application/grpc", 0, ""},
		{"application/json", 0, ""},
	}
	for _, tt := range tests {
		frame := endFrame(tt.ct, connect.CodeDeadlineExceeded, "late")
		if tt.flag == 0 {
			if frame != nil {
				t.Errorf("%s: frame %q, want none", tt.ct, frame)
			}
			continue
		}
		if len(frame) < 5 || frame[0] != tt.flag || int(binary.BigEndian.Uint32(frame[1:5])) != len(frame)-5 || string(frame[5:]) != tt.body {
			t.Errorf("%s: frame %q, want flag %#x and %q", tt.ct, frame, tt.flag, tt.body)
		}
	}
}

// TestForwardEndsAStreamCutByTheDeadlineInItsProtocol: a server stream whose upstream is
// still silent when the route's deadline passes ends, after the messages already relayed,
// with the protocol's own deadline_exceeded, not a torn response.
func TestForwardEndsAStreamCutByTheDeadlineInItsProtocol(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	first := []byte{0, 0, 0, 0, 2, '{', '}'}
	for _, ct := range []string{"application/connect+json", "application/grpc-web+proto"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			_, _ = w.Write(first)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		r := httptest.NewRequest(http.MethodPost, "/a.B/C", bytes.NewReader(first))
		r.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		res := New(1<<20, time.Second).Forward(w, r, &Call{
			Upstream: srv.Client(), BaseURL: srv.URL, Header: http.Header{"Content-Type": {ct}}, Deadline: 200 * time.Millisecond, Bounded: true,
		})
		if res.Code != connect.CodeDeadlineExceeded {
			t.Errorf("%s: the call ended %v, want deadline_exceeded", ct, res.Code)
		}
		body := w.Body.Bytes()
		want := append(append([]byte{}, first...), endFrame(ct, connect.CodeDeadlineExceeded, "the call's deadline passed")...)
		if !bytes.Equal(body, want) {
			t.Errorf("%s: the client read %q, want the first message and then %q", ct, body, want[len(first):])
		}
	}
}

// TestForwardEndsWhenTheUpstreamEndsAStreamEarly: an upstream may end a full-duplex stream
// (with an error, say) while the client is still sending. The call is then over: Forward must
// return at once rather than wait for the client's next message, which the client would only
// send after it has seen the end of the response.
func TestForwardEndsWhenTheUpstreamEndsAStreamEarly(t *testing.T) {
	t.Parallel()
	end := endFrame("application/connect+proto", connect.CodeInternal, "failed")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/connect+proto")
		_, _ = w.Write(end)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: h2c}
	defer transport.CloseIdleConnections()

	body, client := io.Pipe()
	defer client.Close()
	go func() { _, _ = client.Write([]byte{0, 0, 0, 0, 2, 'h', 'i'}) }()
	r := httptest.NewRequest(http.MethodPost, "/a.B/C", body)
	r.ProtoMajor, r.ProtoMinor = 2, 0
	r.Header.Set("Content-Type", "application/connect+proto")
	w := httptest.NewRecorder()
	done := make(chan Result, 1)
	go func() {
		done <- New(1<<20, time.Second).Forward(w, r, &Call{
			Upstream: &http.Client{Transport: transport}, BaseURL: srv.URL, Header: r.Header.Clone(), FullDuplex: true,
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Forward still waits for the client's body after the upstream ended the stream")
	}
	if !bytes.Equal(w.Body.Bytes(), end) {
		t.Fatalf("the client read %q, want the upstream's end of stream %q", w.Body.Bytes(), end)
	}
}

// TestForwardAnswersAUnaryCallCutByTheDeadline: a unary answer the upstream has begun but not
// finished when the deadline passes becomes the protocol's deadline_exceeded error, not a
// response torn off halfway.
func TestForwardAnswersAUnaryCallCutByTheDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, `{"half":`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	r := httptest.NewRequest(http.MethodPost, "/a.B/C", strings.NewReader("{}"))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	res := New(1<<20, time.Second).Forward(w, r, &Call{
		Upstream: srv.Client(), BaseURL: srv.URL, Header: http.Header{"Content-Type": {"application/json"}}, Buffer: true, Deadline: 200 * time.Millisecond, Bounded: true,
	})
	if res.Code != connect.CodeDeadlineExceeded {
		t.Errorf("the call ended %v, want deadline_exceeded", res.Code)
	}
	if w.Code != http.StatusGatewayTimeout || !strings.Contains(w.Body.String(), `"code":"deadline_exceeded"`) || w.Header().Get("Content-Length") == "100" {
		t.Errorf("the client got %d %q (Content-Length %q), want a Connect deadline_exceeded error", w.Code, w.Body.String(), w.Header().Get("Content-Length"))
	}
}

func TestTimeoutHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ct      string
		d       time.Duration
		connect string
		grpc    string
	}{
		{"application/json", 1500 * time.Millisecond, "1500", ""},
		{"application/connect+proto", 300 * time.Microsecond, "1", ""},
		{"application/grpc", 1500 * time.Millisecond, "", "1500000u"},
		{"application/grpc-web+proto", 250 * time.Nanosecond, "", "250n"},
		{"application/grpc+proto", 99 * time.Second, "", "99000000u"},
		{"application/grpc", 30 * time.Hour, "", "108000S"},
		{"application/grpc", 2_000_000 * time.Hour, "", "2000000H"},
	}
	for _, tt := range tests {
		h := http.Header{}
		name, value := TimeoutHeader(tt.ct, tt.d)
		h.Set(name, value)
		if h.Get("Connect-Timeout-Ms") != tt.connect || h.Get("Grpc-Timeout") != tt.grpc {
			t.Errorf("TimeoutHeader(%s, %v): Connect-Timeout-Ms %q, Grpc-Timeout %q; want %q, %q",
				tt.ct, tt.d, h.Get("Connect-Timeout-Ms"), h.Get("Grpc-Timeout"), tt.connect, tt.grpc)
		}
		if got, ok := ParseClientTimeout(h.Get("Connect-Timeout-Ms"), h.Get("Grpc-Timeout")); !ok || got < tt.d {
			t.Errorf("TimeoutHeader(%s, %v) reads back as %v, %v", tt.ct, tt.d, got, ok)
		}
	}
}

// upstreamFunc is an Upstream made of a function.
type upstreamFunc func(*http.Request) (*http.Response, error)

func (f upstreamFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// closeWatch is a response body that records whether the call was still live when closed.
type closeWatch struct {
	io.Reader
	ctx        interface{ Err() error }
	errAtClose error
	closed     bool
}

func (c *closeWatch) Close() error { c.closed, c.errAtClose = true, c.ctx.Err(); return nil }

// TestForwardClosesAUnaryAnswerBeforeCancelling: the kernel's HTTP/1.1 transport returns a
// connection to its pool only when the body is closed while the call is live; cancelling
// first would cost every unary call a new upstream connection.
func TestForwardClosesAUnaryAnswerBeforeCancelling(t *testing.T) {
	t.Parallel()
	var body *closeWatch
	up := upstreamFunc(func(r *http.Request) (*http.Response, error) {
		body = &closeWatch{Reader: strings.NewReader("{}"), ctx: r.Context()}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, Request: r}, nil
	})
	r := httptest.NewRequest(http.MethodPost, "/a.B/C", strings.NewReader("{}"))
	r.Header.Set("Content-Type", "application/json")
	New(1<<20, time.Second).Forward(httptest.NewRecorder(), r, &Call{
		Upstream: up, BaseURL: "http://upstream", Header: http.Header{}, Buffer: true, Deadline: time.Minute, Bounded: true,
	})
	if body == nil || !body.closed || body.errAtClose != nil {
		t.Fatalf("the answer's body was closed: %v, with the call ended by %v; want closed while live", body != nil && body.closed, body.errAtClose)
	}
}

// gzipped returns a gzip member holding n zero bytes.
func gzipped(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// frame frames msg as one message of a stream.
func frame(flags byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// TestStreamBodyHoldsCompressedMessagesUntilChecked streams messages, some compressed, in
// every way a body can arrive: everything passes as it came while each compressed message
// inflates within the limit; a compressed message that inflates past it ends the stream with
// ErrTooLarge before any of its bytes went on; a compressed message in an encoding the gateway
// does not inflate, or cut short by the end of the stream, passes for the service to judge.
func TestStreamBodyHoldsCompressedMessagesUntilChecked(t *testing.T) {
	t.Parallel()
	const limit = 1000
	plain := func(n int) []byte { return frame(0, bytes.Repeat([]byte{'p'}, n)) }
	packed := func(n int) []byte { return frame(1, gzipped(t, n)) }
	within := [][]byte{plain(10), packed(500), plain(0), packed(limit), packed(0), plain(3), packed(1)}
	tests := []struct {
		name     string
		header   http.Header
		messages [][]byte
		tooLarge int // index of the message that inflates past the limit, -1 for none
		cut      int // bytes cut from the end of the stream
	}{
		{"gRPC, within the limit", http.Header{"Content-Type": {"application/grpc"}, "Grpc-Encoding": {"gzip"}}, within, -1, 0},
		{"Connect, within the limit", http.Header{"Content-Type": {"application/connect+proto"}, "Connect-Content-Encoding": {"gzip"}}, within, -1, 0},
		{"gRPC-Web, past the limit", http.Header{"Content-Type": {"application/grpc-web+proto"}, "Grpc-Encoding": {"gzip"}},
			[][]byte{plain(10), packed(500), plain(2), packed(limit + 1), plain(5)}, 3, 0},
		{"Connect, past the limit first", http.Header{"Content-Type": {"application/connect+json"}, "Connect-Content-Encoding": {"gzip"}},
			[][]byte{packed(100 * limit), plain(1)}, 0, 0},
		{"an encoding the gateway does not inflate", http.Header{"Content-Type": {"application/grpc"}, "Grpc-Encoding": {"br"}},
			[][]byte{plain(1), frame(1, bytes.Repeat([]byte{'b'}, limit))}, -1, 0},
		{"a compressed message cut short", http.Header{"Content-Type": {"application/grpc"}, "Grpc-Encoding": {"gzip"}},
			[][]byte{plain(1), packed(limit + 1)}, -1, 3},
	}
	for _, tt := range tests {
		var in []byte
		offsets := make([]int, len(tt.messages))
		for i, m := range tt.messages {
			offsets[i] = len(in)
			in = append(in, m...)
		}
		in = in[:len(in)-tt.cut]
		for how, r := range readers(in) {
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				t.Parallel()
				sb := newStreamBody(io.NopCloser(r), tt.header, limit)
				out, err := io.ReadAll(sb)
				if tt.tooLarge < 0 {
					if err != nil || !bytes.Equal(out, in) {
						t.Fatalf("read %d of %d bytes, err %v", len(out), len(in), err)
					}
					return
				}
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err %v, want ErrTooLarge", err)
				}
				if !bytes.Equal(out, in[:offsets[tt.tooLarge]]) {
					t.Fatalf("%d bytes passed, want the %d before the message too large", len(out), offsets[tt.tooLarge])
				}
			})
		}
	}
}

// TestForwardRefusesAClientStreamsMessageThatInflatesPastTheLimit streams a client's messages
// through a real upstream: a compressed message that inflates past the limit ends the call
// with resource_exhausted in the protocol's trailers, and the upstream never receives it.
func TestForwardRefusesAClientStreamsMessageThatInflatesPastTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	received := make(chan []byte, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- b
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Grpc-Status", "0")
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: h2c}
	defer transport.CloseIdleConnections()

	first := frame(0, []byte("first"))
	body := append(append(first, frame(1, gzipped(t, 64*limit))...), frame(0, []byte("last"))...)
	r := httptest.NewRequest(http.MethodPost, "/a.B/C", io.MultiReader(bytes.NewReader(body)))
	r.ProtoMajor, r.ProtoMinor = 2, 0
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("Grpc-Encoding", "gzip")
	w := httptest.NewRecorder()
	res := New(limit, time.Second).Forward(w, r, &Call{
		Upstream: &http.Client{Transport: transport}, BaseURL: srv.URL, Header: r.Header.Clone(), FullDuplex: true,
	})
	if res.Code != connect.CodeResourceExhausted || !errors.Is(res.Err, ErrTooLarge) {
		t.Fatalf("the call ended %v (%v), want resource_exhausted", res.Code, res.Err)
	}
	status := w.Header().Get("Grpc-Status") + w.Header().Get(http.TrailerPrefix+"Grpc-Status")
	if w.Code != http.StatusOK || status != "8" {
		t.Errorf("the client got %d with grpc-status %q, want 200 with 8", w.Code, status)
	}
	// Close waits for the upstream's handler, if the request reached it.
	srv.Close()
	select {
	case b := <-received:
		if !bytes.Equal(b, first[:min(len(b), len(first))]) || len(b) > len(first) {
			t.Errorf("the upstream received %q, more than the first message", b)
		}
	default:
	}
}
