package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/requestid"
)

var kindCodes = map[errs.Kind]connect.Code{
	errs.KindInternal:           connect.CodeInternal,
	errs.KindInvalidArgument:    connect.CodeInvalidArgument,
	errs.KindNotFound:           connect.CodeNotFound,
	errs.KindAlreadyExists:      connect.CodeAlreadyExists,
	errs.KindPermissionDenied:   connect.CodePermissionDenied,
	errs.KindUnauthenticated:    connect.CodeUnauthenticated,
	errs.KindResourceExhausted:  connect.CodeResourceExhausted,
	errs.KindFailedPrecondition: connect.CodeFailedPrecondition,
	errs.KindAborted:            connect.CodeAborted,
	errs.KindUnavailable:        connect.CodeUnavailable,
}

// genericMessages are what clients see for codes whose original message may carry internals
// (addresses, driver text, stack details).
var genericMessages = map[connect.Code]string{
	connect.CodeInternal:         "internal error",
	connect.CodeUnknown:          "internal error",
	connect.CodeDataLoss:         "internal error",
	connect.CodeUnavailable:      "the service is temporarily unavailable; retry later",
	connect.CodeDeadlineExceeded: "the deadline was exceeded",
	connect.CodeCanceled:         "the request was canceled",
}

// ToConnectError maps any error a handler returns to the error its client sees. Domain errors
// keep their kind and client-safe message, with field violations and retry information as
// error details; context errors become canceled and deadline_exceeded; Connect errors keep
// their code and details, and their message unless the code is one whose message may carry
// internals (internal, unknown, data loss, unavailable: a dial error names addresses);
// everything else is internal, with a generic message and the request id, and its cause is
// logged.
func ToConnectError(ctx context.Context, log *slog.Logger, procedure string, err error) error {
	if err == nil {
		return nil
	}
	if e, ok := errs.As(err); ok {
		code := kindCodes[e.Kind]
		if e.Kind == errs.KindInternal {
			return internal(ctx, log, procedure, err)
		}
		if e.Kind == errs.KindUnavailable || e.Kind == errs.KindAborted {
			log.WarnContext(ctx, "rpc failed", "procedure", procedure, "code", code.String(), "error", err)
		}
		cerr := connect.NewError(code, errors.New(e.Message))
		if len(e.Fields) > 0 {
			br := &errdetails.BadRequest{}
			for _, f := range e.Fields {
				br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Description})
			}
			addDetail(cerr, br)
		}
		if e.RetryAfter > 0 {
			addDetail(cerr, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
			cerr.Meta().Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.RetryAfter)))
		}
		return cerr
	}
	if errors.Is(err, context.Canceled) {
		return connect.NewError(connect.CodeCanceled, errors.New(genericMessages[connect.CodeCanceled]))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New(genericMessages[connect.CodeDeadlineExceeded]))
	}
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		code := cerr.Code()
		if code == connect.CodeInternal || code == connect.CodeUnknown || code == connect.CodeDataLoss {
			return internal(ctx, log, procedure, err)
		}
		msg, generic := genericMessages[code]
		if generic {
			log.WarnContext(ctx, "rpc failed", "procedure", procedure, "code", code.String(), "error", err)
		} else {
			msg = cerr.Message()
		}
		// A fresh error drops the metadata of a downstream response, which must not leak
		// into this response's headers; only the retry delay is carried over.
		out := connect.NewError(code, errors.New(msg))
		for _, d := range cerr.Details() {
			out.AddDetail(d)
			if v, err := d.Value(); err == nil {
				if ri, ok := v.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
					out.Meta().Set("Retry-After", strconv.Itoa(retryAfterSeconds(ri.GetRetryDelay().AsDuration())))
				}
			}
		}
		return out
	}
	return internal(ctx, log, procedure, err)
}

func internal(ctx context.Context, log *slog.Logger, procedure string, err error) error {
	log.ErrorContext(ctx, "rpc failed with an internal error", "procedure", procedure, "error", err)
	msg := genericMessages[connect.CodeInternal]
	if id := requestid.From(ctx); id != "" {
		msg += " (request id " + id + ")"
	}
	return connect.NewError(connect.CodeInternal, errors.New(msg))
}

func addDetail(cerr *connect.Error, msg proto.Message) {
	if d, err := connect.NewErrorDetail(msg); err == nil {
		cerr.AddDetail(d)
	}
}

func retryAfterSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
