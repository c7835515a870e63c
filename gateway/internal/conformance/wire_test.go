package conformance

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// encodeRequest builds a ServerCompatRequest the way the runner's generated code does, plus
// fields from a future version of the protocol, so the tests do not use the code under test
// to make their input.
func encodeRequest(t *testing.T) []byte {
	t.Helper()
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 3) // PROTOCOL_GRPC_WEB
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 1) // HTTP_VERSION_1
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("client cert"))
	b = protowire.AppendTag(b, 6, protowire.VarintType)
	b = protowire.AppendVarint(b, 200*1024)
	var creds []byte
	creds = protowire.AppendTag(creds, 1, protowire.BytesType)
	creds = protowire.AppendBytes(creds, []byte("server cert"))
	creds = protowire.AppendTag(creds, 2, protowire.BytesType)
	creds = protowire.AppendBytes(creds, []byte("server key"))
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, creds)
	return append(b, unknownFields()...)
}

// unknownFields are fields a newer runner might send: one of each wire type.
func unknownFields() []byte {
	var b []byte
	b = protowire.AppendTag(b, 8, protowire.BytesType)
	b = protowire.AppendString(b, "a future field")
	b = protowire.AppendTag(b, 9, protowire.VarintType)
	b = protowire.AppendVarint(b, 42)
	b = protowire.AppendTag(b, 10, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 7)
	b = protowire.AppendTag(b, 11, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 9)
	return b
}

func TestServerCompatRequestDecodes(t *testing.T) {
	t.Parallel()
	var req ServerCompatRequest
	if err := req.Unmarshal(encodeRequest(t)); err != nil {
		t.Fatal(err)
	}
	want := ServerCompatRequest{
		Protocol:            ProtocolGRPCWeb,
		HTTPVersion:         HTTPVersion1,
		UseTLS:              true,
		ClientTLSCert:       []byte("client cert"),
		MessageReceiveLimit: 200 * 1024,
		ServerCreds:         &TLSCreds{Cert: []byte("server cert"), Key: []byte("server key")},
		unknown:             unknownFields(),
	}
	if !reflect.DeepEqual(req, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", req, want)
	}
}

func TestServerCompatRequestRoundTrips(t *testing.T) {
	t.Parallel()
	in := encodeRequest(t)
	var req ServerCompatRequest
	if err := req.Unmarshal(in); err != nil {
		t.Fatal(err)
	}
	// The input is in field order with zero values left out, as protobuf-go writes it, so a
	// faithful encoder reproduces it byte for byte.
	if out := req.Marshal(); !bytes.Equal(out, in) {
		t.Fatalf("re-encoded\n%x\nwant\n%x", out, in)
	}
}

func TestUpstreamDropsTLSAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	var req ServerCompatRequest
	if err := req.Unmarshal(encodeRequest(t)); err != nil {
		t.Fatal(err)
	}
	up := req.Upstream(HTTPVersion2)
	var got ServerCompatRequest
	if err := got.Unmarshal(up.Marshal()); err != nil {
		t.Fatal(err)
	}
	want := ServerCompatRequest{
		Protocol:            ProtocolGRPCWeb,
		HTTPVersion:         HTTPVersion2,
		MessageReceiveLimit: 200 * 1024,
		unknown:             unknownFields(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("upstream request\n%+v\nwant\n%+v", got, want)
	}
	if !req.UseTLS || req.ServerCreds == nil || req.ClientTLSCert == nil {
		t.Fatal("Upstream changed the original request")
	}
}

func TestServerCompatRequestDecodingRules(t *testing.T) {
	t.Parallel()
	var b []byte
	// The last value of a scalar wins.
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 2)
	// Two occurrences of a message field merge.
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("cert")))
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte("key")))
	// A known number with an unexpected wire type is an unknown field, as in protobuf-go.
	mismatched := protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), 5)
	b = append(b, mismatched...)
	// A negative enum value is a ten-byte varint.
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	minusOne := int64(-1)
	b = protowire.AppendVarint(b, uint64(minusOne))

	var req ServerCompatRequest
	if err := req.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if req.HTTPVersion != HTTPVersion2 {
		t.Errorf("HTTPVersion = %d, want the last value 2", req.HTTPVersion)
	}
	if req.ServerCreds == nil || string(req.ServerCreds.Cert) != "cert" || string(req.ServerCreds.Key) != "key" {
		t.Errorf("ServerCreds = %+v, want the merge of both occurrences", req.ServerCreds)
	}
	if !bytes.Equal(req.unknown, mismatched) {
		t.Errorf("unknown = %x, want %x", req.unknown, mismatched)
	}
	if req.Protocol != -1 {
		t.Errorf("Protocol = %d, want -1", req.Protocol)
	}
	var again ServerCompatRequest
	if err := again.Unmarshal(req.Marshal()); err != nil || again.Protocol != -1 {
		t.Errorf("a negative enum did not round-trip: %d, %v", again.Protocol, err)
	}
}

func TestUnmarshalRejectsMalformedInput(t *testing.T) {
	t.Parallel()
	cases := map[string][]byte{
		"truncated tag":       {0x80},
		"truncated varint":    {0x08, 0x80},
		"truncated bytes":     {0x2a, 0x05, 'a'},
		"field number zero":   {0x00, 0x01},
		"truncated creds":     {0x3a, 0x02, 0x0a, 0x05},
		"end group unmatched": {0x0c},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var req ServerCompatRequest
			if err := req.Unmarshal(b); err == nil {
				t.Fatalf("Unmarshal(%x) succeeded", b)
			}
		})
	}
}

func TestServerCompatResponseRoundTrips(t *testing.T) {
	t.Parallel()
	resp := ServerCompatResponse{Host: "127.0.0.1", Port: 54321, PEMCert: []byte("-----BEGIN CERTIFICATE-----")}
	b := resp.Marshal()

	// The encoding is the one protobuf-go gives the generated message.
	var want []byte
	want = protowire.AppendTag(want, 1, protowire.BytesType)
	want = protowire.AppendString(want, "127.0.0.1")
	want = protowire.AppendTag(want, 2, protowire.VarintType)
	want = protowire.AppendVarint(want, 54321)
	want = protowire.AppendTag(want, 3, protowire.BytesType)
	want = protowire.AppendBytes(want, []byte("-----BEGIN CERTIFICATE-----"))
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded %x, want %x", b, want)
	}

	var got ServerCompatResponse
	if err := got.Unmarshal(append(b, unknownFields()...)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, resp) {
		t.Fatalf("decoded %+v, want %+v", got, resp)
	}
	if empty := (&ServerCompatResponse{}).Marshal(); len(empty) != 0 {
		t.Fatalf("an empty response encodes to %x, want nothing", empty)
	}
}

func TestMessageFraming(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	msgs := [][]byte{[]byte("first"), {}, bytes.Repeat([]byte{7}, 70000)}
	for _, m := range msgs {
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	if got := buf.Bytes()[:4]; !bytes.Equal(got, []byte{0, 0, 0, 5}) {
		t.Fatalf("prefix %x, want a big-endian 32-bit length", got)
	}
	for i, want := range msgs {
		got, err := ReadMessage(&buf)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := ReadMessage(&buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last message: %v, want EOF", err)
	}
}

func TestReadMessageFailures(t *testing.T) {
	t.Parallel()
	if _, err := ReadMessage(bytes.NewReader([]byte{0, 0, 0, 9, 'a'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short message: %v, want unexpected EOF", err)
	}
	if _, err := ReadMessage(bytes.NewReader([]byte{0, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short prefix: %v, want unexpected EOF", err)
	}
	_, err := ReadMessage(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge prefix: %v, want a size error", err)
	}
	if err := WriteMessage(io.Discard, make([]byte, MaxMessageSize+1)); err == nil {
		t.Error("WriteMessage accepted a message over the limit")
	}
}
