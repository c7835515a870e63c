package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
)

// callInterceptor logs one line per RPC and maps the handler's error to the error the client
// sees. It sits inside the OpenTelemetry interceptor, so spans record the mapped code.
type callInterceptor struct {
	log *slog.Logger
}

var _ connect.Interceptor = callInterceptor{}

func (i callInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		start := time.Now()
		res, err := next(ctx, req)
		err = ToConnectError(ctx, i.log, req.Spec().Procedure, err)
		i.logCall(ctx, req.Spec().Procedure, req.Peer().Protocol, start, err)
		return res, err
	}
}

func (i callInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i callInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		err = ToConnectError(ctx, i.log, conn.Spec().Procedure, err)
		i.logCall(ctx, conn.Spec().Procedure, conn.Peer().Protocol, start, err)
		return err
	}
}

func (i callInterceptor) logCall(ctx context.Context, procedure, protocol string, start time.Time, err error) {
	code := "ok"
	level := slog.LevelInfo
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	i.log.LogAttrs(ctx, level, "rpc",
		slog.String("procedure", procedure),
		slog.String("protocol", protocol),
		slog.String("code", code),
		slog.Duration("duration", time.Since(start)),
	)
}

// recoverInterceptor turns a handler panic into an internal error and logs the stack, so one
// bad request cannot take the process down or leave the client without an answer.
type recoverInterceptor struct {
	log *slog.Logger
}

var _ connect.Interceptor = recoverInterceptor{}

func (i recoverInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (res connect.AnyResponse, err error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		defer i.recover(ctx, req.Spec().Procedure, &err)
		return next(ctx, req)
	}
}

func (i recoverInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i recoverInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) (err error) {
		defer i.recover(ctx, conn.Spec().Procedure, &err)
		return next(ctx, conn)
	}
}

func (i recoverInterceptor) recover(ctx context.Context, procedure string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	if r == http.ErrAbortHandler { //nolint:errorlint // net/http compares with ==, so must we.
		panic(r)
	}
	i.log.ErrorContext(ctx, "rpc handler panicked", "procedure", procedure, "panic", r, "stack", string(debug.Stack()))
	*err = connect.NewError(connect.CodeInternal, errors.New("handler panicked"))
}
