// Package echo is a tiny Connect service built on well-known types, so that the kernel's own
// tests can exercise servers and clients over every protocol without generated code.
package echo

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The service's names.
const (
	Service         = "basalt.test.v1.EchoService"
	Path            = "/" + Service + "/"
	UnaryProcedure  = Path + "Echo"
	StreamProcedure = Path + "Count"
)

// UnaryFunc answers Echo.
type UnaryFunc func(context.Context, *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error)

// StreamFunc answers Count, a server stream.
type StreamFunc func(context.Context, *connect.Request[wrapperspb.Int64Value], *connect.ServerStream[wrapperspb.Int64Value]) error

// Echo returns the request's value, with the request's headers echoed as response headers
// prefixed "Echo-", so a test can see what arrived.
func Echo(_ context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
	res := connect.NewResponse(wrapperspb.String(req.Msg.GetValue()))
	for k, v := range req.Header() {
		res.Header()["Echo-"+k] = v
	}
	return res, nil
}

// Count streams 1..n.
func Count(ctx context.Context, req *connect.Request[wrapperspb.Int64Value], stream *connect.ServerStream[wrapperspb.Int64Value]) error {
	for i := int64(1); i <= req.Msg.GetValue(); i++ {
		if err := stream.Send(wrapperspb.Int64(i)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Handler serves both procedures; nil functions mean Echo and Count.
func Handler(unary UnaryFunc, stream StreamFunc, opts ...connect.HandlerOption) (string, http.Handler) {
	if unary == nil {
		unary = Echo
	}
	if stream == nil {
		stream = Count
	}
	mux := http.NewServeMux()
	mux.Handle(UnaryProcedure, connect.NewUnaryHandler(UnaryProcedure, unary, opts...))
	mux.Handle(StreamProcedure, connect.NewServerStreamHandler(StreamProcedure, stream, opts...))
	return Path, mux
}

// Client calls the service.
type Client struct {
	unary  *connect.Client[wrapperspb.StringValue, wrapperspb.StringValue]
	stream *connect.Client[wrapperspb.Int64Value, wrapperspb.Int64Value]
}

// NewClient returns a client; its signature matches generated constructors.
func NewClient(httpClient connect.HTTPClient, baseURL string, opts ...connect.ClientOption) *Client {
	return &Client{
		unary:  connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](httpClient, baseURL+UnaryProcedure, opts...),
		stream: connect.NewClient[wrapperspb.Int64Value, wrapperspb.Int64Value](httpClient, baseURL+StreamProcedure, opts...),
	}
}

// Echo calls Echo.
func (c *Client) Echo(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
	return c.unary.CallUnary(ctx, req)
}

// Count calls Count.
func (c *Client) Count(ctx context.Context, req *connect.Request[wrapperspb.Int64Value]) (*connect.ServerStreamForClient[wrapperspb.Int64Value], error) {
	return c.stream.CallServerStream(ctx, req)
}
