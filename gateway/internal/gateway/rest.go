package gateway

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// restJSON is vanguard's JSON codec with one change: a body that does not decode is the
// client's mistake, so it is invalid_argument (HTTP 400) rather than the unknown error (HTTP
// 500) vanguard reports for codec failures.
type restJSON struct {
	*vanguard.JSONCodec
}

var _ vanguard.RESTCodec = restJSON{}

func newRESTJSON(res vanguard.TypeResolver) vanguard.Codec {
	return restJSON{vanguard.NewJSONCodec(res)}
}

func (c restJSON) Unmarshal(data []byte, msg proto.Message) error {
	return invalidBody(c.JSONCodec.Unmarshal(data, msg), msg)
}

func (c restJSON) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return invalidBody(c.JSONCodec.UnmarshalField(data, msg, field), msg)
}

func invalidBody(err error, msg proto.Message) error {
	if err == nil {
		return nil
	}
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return err
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the request body is not a valid %s: %w", msg.ProtoReflect().Descriptor().Name(), err))
}
