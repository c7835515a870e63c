package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonCodec is Connect's JSON codec (protojson, unknown fields discarded) with decode errors a
// client can act on. Connect's own names the Go type it decoded into ("unmarshal into
// *blogv1.CreatePostRequest: proto: ..."), which means nothing to a client in another language
// and tells outsiders how the service is built; this one says what protojson found and where,
// naming the field by its JSON name when a value is wrong.
type jsonCodec struct{ name string }

// jsonCodecs replace Connect's JSON codec under both names it registers.
func jsonCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCodec(jsonCodec{"json"}),
		connect.WithCodec(jsonCodec{"json; charset=utf-8"}),
	}
}

func (c jsonCodec) Name() string { return c.name }

func (jsonCodec) IsBinary() bool { return false }

func (jsonCodec) Marshal(msg any) ([]byte, error) {
	m, err := protoMessage(msg)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(m)
}

func (jsonCodec) MarshalAppend(b []byte, msg any) ([]byte, error) {
	m, err := protoMessage(msg)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{}.MarshalAppend(b, m)
}

// MarshalStable is Marshal without the varying whitespace protojson adds, for Connect's GET
// requests, whose message is in the URL.
func (c jsonCodec) MarshalStable(msg any) ([]byte, error) {
	b, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (jsonCodec) Unmarshal(data []byte, msg any) error {
	m, err := protoMessage(msg)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New("the message is empty; a message without fields is {}")
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("invalid JSON message: %s", decodeErrorText(err))
	}
	return nil
}

// decodeErrorText is the text of a protojson or proto decoding error without the package's
// "proto:" prefix, which says nothing to a client: "(line 1:12): invalid value for int32 field
// pageSize: "ten"". protobuf-go separates the prefix from the text by a space or a no-break
// space, at random, so that no one compares error texts; both are taken off here, and a text
// without the prefix is returned as it is.
func decodeErrorText(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "proto:"); ok {
		return strings.TrimLeft(rest, " \u00a0")
	}
	return s
}

func protoMessage(msg any) (proto.Message, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return m, nil
}
