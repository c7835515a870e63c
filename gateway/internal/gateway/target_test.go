package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Answer is what a raw HTTP/2 client read of one stream's answer: the fields of every header
// block (the response's and its trailers') and the body.
type h2Answer struct {
	fields map[string]string
	body   []byte
}

// rawH2 sends one request on a new h2c connection to addr, with header fields as given (the
// pseudo-header fields first, as HTTP/2 requires) and body, through http2's framer, so that a
// :path goes as it is, bytes no HTTP/1.1 client could send included.
func rawH2(t *testing.T, addr string, fields [][2]string, body []byte) h2Answer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, bufio.NewReader(c))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: body == nil}); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		if err := fr.WriteData(1, true, body); err != nil {
			t.Fatal(err)
		}
	}
	a := h2Answer{fields: map[string]string{}}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			for _, hf := range f.Fields {
				a.fields[hf.Name] = hf.Value
			}
			if f.StreamEnded() {
				return a
			}
		case *http2.DataFrame:
			a.body = append(a.body, f.Data()...)
			if f.StreamEnded() {
				return a
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("the stream was reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("the connection went away: %v", f.ErrCode)
		}
	}
}

// TestAQueryThatIsNotAURIIsRefused sends calls whose query holds a space or bytes that are not
// ASCII, over HTTP/2 (whose :path carries them) and HTTP/1.1 (where net/http takes bytes that
// are not ASCII): the query would go upstream as it is, on an HTTP/1.1 request line it would
// break, so the gateway refuses the call as invalid_argument in its protocol and forwards
// nothing.
func TestAQueryThatIsNotAURIIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	auth := "Bearer " + f.keys.token(t, "user-1")
	const get = "/basalt.identity.v1.IdentityService/GetUser?connect=v1&encoding=json&message=%7B%7D"
	for _, tt := range []struct{ name, query string }{
		{"a space", "&note=a b"},
		{"a space and a request line", "&x= HTTP/1.1"},
		{"bytes that are not ASCII", "&note=caf\xc3\xa9"},
	} {
		t.Run("Connect GET over HTTP/2, "+tt.name, func(t *testing.T) {
			t.Parallel()
			a := rawH2(t, f.gw.Addr().String(), [][2]string{
				{":method", "GET"}, {":scheme", "http"}, {":authority", "gw"}, {":path", get + tt.query},
				{"authorization", auth},
			}, nil)
			if a.fields[":status"] != "400" || !bytes.Contains(a.body, []byte(`"code":"invalid_argument"`)) || !bytes.Contains(a.body, []byte("RFC 3986")) {
				t.Errorf("answered %s %q, want the gateway's 400 invalid_argument", a.fields[":status"], a.body)
			}
		})
		t.Run("gRPC over HTTP/2, "+tt.name, func(t *testing.T) {
			t.Parallel()
			a := rawH2(t, f.gw.Addr().String(), [][2]string{
				{":method", "POST"}, {":scheme", "http"}, {":authority", "gw"},
				{":path", "/basalt.identity.v1.IdentityService/GetUser?" + strings.TrimPrefix(tt.query, "&")},
				{"content-type", "application/grpc"}, {"te", "trailers"}, {"authorization", auth},
			}, []byte{0, 0, 0, 0, 0})
			if a.fields["grpc-status"] != "3" {
				t.Errorf("answered %v, want grpc-status 3", a.fields)
			}
		})
	}
	t.Run("Connect GET over HTTP/1.1, bytes that are not ASCII", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", f.gw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "GET "+get+"&note=caf\xc3\xa9 HTTP/1.1\r\nHost: gw\r\nAuthorization: "+auth+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("RFC 3986")) {
			t.Errorf("answered %d %q, want the gateway's 400 invalid_argument", resp.StatusCode, body)
		}
	})
	t.Cleanup(func() {
		if n := f.upstreams[0].hits.Load(); n != 0 {
			t.Errorf("%d calls reached the upstream", n)
		}
	})
}
