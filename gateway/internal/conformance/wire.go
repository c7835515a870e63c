// Package conformance lets the Connect conformance suite (connectrpc.com/conformance) test the
// gateway's protocol transparency. The suite's runner, in server mode, starts a "server under
// test" and talks to it through a small stdin/stdout protocol; this package answers that
// protocol by starting the suite's reference server as a child process and a gateway in front
// of it, routing the conformance service to the reference server as a passthrough. Every RPC of
// the suite then crosses the gateway, so any way in which the gateway changes a call shows up
// as a failing test case.
//
// The suite's generated Go types are internal to its module, so the two messages of the
// protocol are encoded here by hand with protowire. Only the fields the gateway needs are
// decoded; the others are kept byte for byte, so that a newer runner's request reaches the
// reference server whole.
package conformance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// Protocol is connectrpc.conformance.v1.Protocol.
type Protocol int32

// The protocols of the suite.
const (
	ProtocolUnspecified Protocol = 0
	ProtocolConnect     Protocol = 1
	ProtocolGRPC        Protocol = 2
	ProtocolGRPCWeb     Protocol = 3
)

// HTTPVersion is connectrpc.conformance.v1.HTTPVersion.
type HTTPVersion int32

// The HTTP versions of the suite.
const (
	HTTPVersionUnspecified HTTPVersion = 0
	HTTPVersion1           HTTPVersion = 1
	HTTPVersion2           HTTPVersion = 2
	HTTPVersion3           HTTPVersion = 3
)

// Field numbers of connectrpc.conformance.v1.ServerCompatRequest, from
// proto/connectrpc/conformance/v1/server_compat.proto of the suite (field 3 is reserved).
const (
	reqProtocol            protowire.Number = 1
	reqHTTPVersion         protowire.Number = 2
	reqUseTLS              protowire.Number = 4
	reqClientTLSCert       protowire.Number = 5
	reqMessageReceiveLimit protowire.Number = 6
	reqServerCreds         protowire.Number = 7
)

// Field numbers of connectrpc.conformance.v1.TLSCreds (config.proto).
const (
	credsCert protowire.Number = 1
	credsKey  protowire.Number = 2
)

// Field numbers of connectrpc.conformance.v1.ServerCompatResponse (server_compat.proto).
const (
	respHost    protowire.Number = 1
	respPort    protowire.Number = 2
	respPEMCert protowire.Number = 3
)

// ServerCompatRequest is connectrpc.conformance.v1.ServerCompatRequest: what the runner asks
// of the server under test.
type ServerCompatRequest struct {
	// Protocol is the protocol the server must support at least.
	Protocol Protocol
	// HTTPVersion is the HTTP version the server must support at least.
	HTTPVersion HTTPVersion
	// UseTLS asks for TLS, with the certificate returned in the response's PEMCert.
	UseTLS bool
	// ClientTLSCert, when set, is the PEM certificate clients present; the server must
	// require and verify it.
	ClientTLSCert []byte
	// MessageReceiveLimit, when not zero, is the largest request message the server accepts.
	MessageReceiveLimit uint32
	// ServerCreds is a certificate and key the runner offers for the server's use.
	ServerCreds *TLSCreds

	// unknown holds the encoded fields this package does not decode, in their order.
	unknown []byte
}

// TLSCreds is connectrpc.conformance.v1.TLSCreds: a PEM certificate and its PEM key.
type TLSCreds struct {
	Cert []byte
	Key  []byte
}

// ServerCompatResponse is connectrpc.conformance.v1.ServerCompatResponse: where the server
// under test listens, and its certificate when it uses TLS.
type ServerCompatResponse struct {
	Host    string
	Port    uint32
	PEMCert []byte
}

// Unmarshal decodes the binary encoding of a ServerCompatRequest into r, replacing its
// contents. As in any protobuf decoder the last value of a repeated scalar field wins, and a
// field whose wire type is not the declared one is kept as unknown.
func (r *ServerCompatRequest) Unmarshal(b []byte) error {
	*r = ServerCompatRequest{}
	return eachField(b, func(num protowire.Number, typ protowire.Type, field, value []byte) error {
		switch {
		case num == reqProtocol && typ == protowire.VarintType:
			r.Protocol = Protocol(int32(varint(value)))
		case num == reqHTTPVersion && typ == protowire.VarintType:
			r.HTTPVersion = HTTPVersion(int32(varint(value)))
		case num == reqUseTLS && typ == protowire.VarintType:
			r.UseTLS = varint(value) != 0
		case num == reqClientTLSCert && typ == protowire.BytesType:
			r.ClientTLSCert = clone(bytesValue(value))
		case num == reqMessageReceiveLimit && typ == protowire.VarintType:
			r.MessageReceiveLimit = uint32(varint(value))
		case num == reqServerCreds && typ == protowire.BytesType:
			// A message field seen twice is merged, which for TLSCreds' two scalar fields
			// means decoding the second occurrence over the first.
			if r.ServerCreds == nil {
				r.ServerCreds = &TLSCreds{}
			}
			if err := r.ServerCreds.unmarshal(bytesValue(value)); err != nil {
				return fmt.Errorf("server_creds: %w", err)
			}
		default:
			r.unknown = append(r.unknown, field...)
		}
		return nil
	})
}

// Marshal returns the binary encoding of r: the known fields in field-number order, zero
// values left out as proto3 does, then the unknown fields as they were received.
func (r *ServerCompatRequest) Marshal() []byte {
	var b []byte
	if r.Protocol != 0 {
		b = protowire.AppendTag(b, reqProtocol, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(r.Protocol)))
	}
	if r.HTTPVersion != 0 {
		b = protowire.AppendTag(b, reqHTTPVersion, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(r.HTTPVersion)))
	}
	if r.UseTLS {
		b = protowire.AppendTag(b, reqUseTLS, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if len(r.ClientTLSCert) > 0 {
		b = protowire.AppendTag(b, reqClientTLSCert, protowire.BytesType)
		b = protowire.AppendBytes(b, r.ClientTLSCert)
	}
	if r.MessageReceiveLimit != 0 {
		b = protowire.AppendTag(b, reqMessageReceiveLimit, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.MessageReceiveLimit))
	}
	if r.ServerCreds != nil {
		b = protowire.AppendTag(b, reqServerCreds, protowire.BytesType)
		b = protowire.AppendBytes(b, r.ServerCreds.marshal())
	}
	return append(b, r.unknown...)
}

// Upstream returns the request to give a reference server behind the gateway, one that
// serves version: the gateway terminates TLS, so the TLS fields are removed, and the HTTP
// version is the one the gateway speaks upstream rather than the client's. Everything else,
// unknown fields included, is kept.
func (r *ServerCompatRequest) Upstream(version HTTPVersion) *ServerCompatRequest {
	u := *r
	u.UseTLS = false
	u.ClientTLSCert = nil
	u.ServerCreds = nil
	u.HTTPVersion = version
	return &u
}

func (c *TLSCreds) unmarshal(b []byte) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, _, value []byte) error {
		switch {
		case num == credsCert && typ == protowire.BytesType:
			c.Cert = clone(bytesValue(value))
		case num == credsKey && typ == protowire.BytesType:
			c.Key = clone(bytesValue(value))
		}
		return nil
	})
}

func (c *TLSCreds) marshal() []byte {
	var b []byte
	if len(c.Cert) > 0 {
		b = protowire.AppendTag(b, credsCert, protowire.BytesType)
		b = protowire.AppendBytes(b, c.Cert)
	}
	if len(c.Key) > 0 {
		b = protowire.AppendTag(b, credsKey, protowire.BytesType)
		b = protowire.AppendBytes(b, c.Key)
	}
	return b
}

// Marshal returns the binary encoding of r.
func (r *ServerCompatResponse) Marshal() []byte {
	var b []byte
	if r.Host != "" {
		b = protowire.AppendTag(b, respHost, protowire.BytesType)
		b = protowire.AppendString(b, r.Host)
	}
	if r.Port != 0 {
		b = protowire.AppendTag(b, respPort, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.Port))
	}
	if len(r.PEMCert) > 0 {
		b = protowire.AppendTag(b, respPEMCert, protowire.BytesType)
		b = protowire.AppendBytes(b, r.PEMCert)
	}
	return b
}

// Unmarshal decodes the binary encoding of a ServerCompatResponse into r, replacing its
// contents; fields it does not know are skipped.
func (r *ServerCompatResponse) Unmarshal(b []byte) error {
	*r = ServerCompatResponse{}
	return eachField(b, func(num protowire.Number, typ protowire.Type, _, value []byte) error {
		switch {
		case num == respHost && typ == protowire.BytesType:
			r.Host = string(bytesValue(value))
		case num == respPort && typ == protowire.VarintType:
			r.Port = uint32(varint(value))
		case num == respPEMCert && typ == protowire.BytesType:
			r.PEMCert = clone(bytesValue(value))
		}
		return nil
	})
}

// eachField calls fn with every field of the encoded message b: its number and wire type, the
// whole encoded field (tag included) and its value. It stops at the first malformed field.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, field, value []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("conformance: malformed field tag: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return fmt.Errorf("conformance: malformed field %d: %w", num, protowire.ParseError(m))
		}
		if err := fn(num, typ, b[:n+m], b[n:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

// varint decodes a varint value that eachField has already validated.
func varint(value []byte) uint64 {
	v, _ := protowire.ConsumeVarint(value)
	return v
}

// bytesValue decodes a length-delimited value that eachField has already validated.
func bytesValue(value []byte) []byte {
	v, _ := protowire.ConsumeBytes(value)
	return v
}

// clone copies b, so decoded fields do not keep the whole input alive or change with it.
func clone(b []byte) []byte { return append([]byte(nil), b...) }

// MaxMessageSize bounds the messages ReadMessage accepts. The runner's own bound on a
// response is 1 MiB; a request carries at most a few certificates.
const MaxMessageSize = 4 << 20

// ReadMessage reads one message framed as the runner frames them: a 32-bit big-endian length,
// then that many bytes.
func ReadMessage(r io.Reader) ([]byte, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, fmt.Errorf("conformance: reading the length prefix: %w", err)
	}
	size := binary.BigEndian.Uint32(prefix[:])
	if size > MaxMessageSize {
		return nil, fmt.Errorf("conformance: a message of %d bytes is larger than the %d accepted", size, MaxMessageSize)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("conformance: reading a message of %d bytes: %w", size, err)
	}
	return b, nil
}

// WriteMessage writes b framed as ReadMessage reads it, in one write so that a reader never
// sees a prefix without its message.
func WriteMessage(w io.Writer, b []byte) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("conformance: a message of %d bytes is larger than the %d accepted", len(b), MaxMessageSize)
	}
	framed := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	framed = append(framed, b...)
	if _, err := w.Write(framed); err != nil {
		return fmt.Errorf("conformance: writing a message: %w", err)
	}
	return nil
}
