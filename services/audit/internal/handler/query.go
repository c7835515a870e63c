package handler

import (
	"context"
	"encoding/binary"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/pagetoken"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// ListEvents lists events newest first.
func (s *Server) ListEvents(ctx context.Context, req *connect.Request[auditv1.ListEventsRequest]) (*connect.Response[auditv1.ListEventsResponse], error) {
	f, err := filter(req.Msg.GetFilter())
	if err != nil {
		return nil, err
	}
	size := int(req.Msg.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		return nil, errs.Invalid("page_size", fmt.Sprintf("must be between 1 and %d", maxPageSize))
	case size == 0:
		size = defaultPageSize
	}
	before, err := decodeToken(req.Msg.GetPageToken(), f)
	if err != nil {
		return nil, err
	}
	events, more, err := s.log.List(ctx, f, before, size)
	if err != nil {
		return nil, err
	}
	res := &auditv1.ListEventsResponse{Events: make([]*auditv1.Event, len(events))}
	for i, e := range events {
		res.Events[i] = toProto(e)
	}
	if more {
		res.NextPageToken = encodeToken(events[len(events)-1].Sequence, f)
	}
	return connect.NewResponse(res), nil
}

// VerifyLog verifies the whole log.
func (s *Server) VerifyLog(ctx context.Context, _ *connect.Request[auditv1.VerifyLogRequest]) (*connect.Response[auditv1.VerifyLogResponse], error) {
	v, err := s.log.Verify(ctx, s.keys)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&auditv1.VerifyLogResponse{
		Ok:                 v.OK,
		EventsChecked:      v.EventsChecked,
		FirstBadSequence:   v.FirstBadSequence,
		CheckpointsChecked: v.CheckpointsChecked,
		Problem:            v.Problem,
	}), nil
}

// ExportEvents streams matching events in sequence order, then the latest checkpoint.
func (s *Server) ExportEvents(ctx context.Context, req *connect.Request[auditv1.ExportEventsRequest], stream *connect.ServerStream[auditv1.ExportEventsResponse]) error {
	f, err := filter(req.Msg.GetFilter())
	if err != nil {
		return err
	}
	if req.Msg.GetAfterSequence() < 0 {
		return errs.Invalid("after_sequence", "must not be negative")
	}
	err = s.log.Export(ctx, f, req.Msg.GetAfterSequence(), func(e chain.Stored) error {
		return stream.Send(&auditv1.ExportEventsResponse{Item: &auditv1.ExportEventsResponse_Event{Event: toProto(e)}})
	})
	if err != nil {
		return err
	}
	cp, ok, err := s.log.LatestCheckpoint(ctx)
	if err != nil || !ok {
		return err
	}
	return stream.Send(&auditv1.ExportEventsResponse{Item: &auditv1.ExportEventsResponse_Checkpoint{Checkpoint: &auditv1.Checkpoint{
		Sequence: cp.Sequence, HeadHash: cp.HeadHash, Time: timestamppb.New(cp.Time), KeyId: cp.KeyID, Signature: cp.Signature,
	}}})
}

// filter validates and converts a request filter.
func filter(f *auditv1.EventFilter) (store.Filter, error) {
	var v errs.Violations
	out := store.Filter{
		ActorSubject: f.GetActorSubject(),
		Action:       f.GetAction(),
		ResourceType: f.GetResourceType(),
		ResourceID:   f.GetResourceId(),
		Service:      f.GetService(),
	}
	if f.GetOutcome() != auditv1.Outcome_OUTCOME_UNSPECIFIED {
		o, ok := outcomes[f.GetOutcome()]
		if !ok {
			v.Add("filter.outcome", "must be success, failure or denied")
		}
		out.Outcome = o
	}
	if out.ResourceID != "" && out.ResourceType == "" {
		v.Add("filter.resource_id", "needs filter.resource_type")
	}
	for name, val := range map[string]string{"actor_subject": out.ActorSubject, "action": out.Action, "resource_type": out.ResourceType, "resource_id": out.ResourceID, "service": out.Service} {
		if len(val) > 256 {
			v.Add("filter."+name, "must be at most 256 bytes")
		}
	}
	if f.GetStartTime() != nil {
		if err := f.GetStartTime().CheckValid(); err != nil {
			v.Add("filter.start_time", "must be a valid time")
		}
		out.Start = f.GetStartTime().AsTime()
	}
	if f.GetEndTime() != nil {
		if err := f.GetEndTime().CheckValid(); err != nil {
			v.Add("filter.end_time", "must be a valid time")
		}
		out.End = f.GetEndTime().AsTime()
	}
	if !out.Start.IsZero() && !out.End.IsZero() && !out.End.After(out.Start) {
		v.Add("filter.end_time", "must be after filter.start_time")
	}
	return out, v.Err()
}

// Page tokens carry the last sequence returned, bound to the filter they belong to.
func encodeToken(before int64, f store.Filter) string {
	return pagetoken.Encode(filterScope(f), binary.BigEndian.AppendUint64(nil, uint64(before)))
}

func decodeToken(token string, f store.Filter) (int64, error) {
	pos, err := pagetoken.Decode(token, filterScope(f))
	if err != nil || pos == nil {
		return 0, err
	}
	if len(pos) != 8 || int64(binary.BigEndian.Uint64(pos)) <= 0 {
		return 0, pagetoken.Invalid()
	}
	return int64(binary.BigEndian.Uint64(pos)), nil
}

func filterScope(f store.Filter) string {
	return fmt.Sprintf("events|%q|%q|%q|%q|%q|%q|%d|%d", f.ActorSubject, f.Action, f.ResourceType, f.ResourceID, f.Outcome, f.Service, f.Start.UnixNano(), f.End.UnixNano())
}

var protoOutcomes = map[string]auditv1.Outcome{
	"success": auditv1.Outcome_OUTCOME_SUCCESS,
	"failure": auditv1.Outcome_OUTCOME_FAILURE,
	"denied":  auditv1.Outcome_OUTCOME_DENIED,
}

func toProto(e chain.Stored) *auditv1.Event {
	ev := &auditv1.Event{
		Id:        e.ID,
		Sequence:  e.Sequence,
		Time:      timestamppb.New(e.Time),
		Service:   e.Service,
		Action:    e.Action,
		Outcome:   protoOutcomes[e.Outcome],
		Actor:     &auditv1.Actor{Subject: e.ActorSubject, Ip: e.ActorIP, UserAgent: e.ActorUserAgent},
		RequestId: e.RequestID,
		TraceId:   e.TraceID,
		Metadata:  e.Metadata,
		PrevHash:  e.PrevHash,
		Hash:      e.Hash,
	}
	if e.ResourceType != "" || e.ResourceID != "" {
		ev.Resource = &auditv1.Resource{Type: e.ResourceType, Id: e.ResourceID}
	}
	return ev
}

// Recorder appends the audit service's own events (permission denials) straight to its log,
// through the same validation as Record.
type Recorder struct {
	srv *Server
}

// NewRecorder returns a recorder appending through srv.
func NewRecorder(srv *Server) *Recorder { return &Recorder{srv: srv} }

// Record appends events.
func (r *Recorder) Record(ctx context.Context, events ...*auditv1.Event) error {
	entries, err := r.srv.entries(events)
	if err != nil {
		return err
	}
	_, err = r.srv.log.Append(ctx, entries)
	return err
}
