// Package handler implements the AuditService API: it validates requests, turns them into
// chain entries and answers with what the store did.
package handler

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/audit/v1/auditv1connect"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
	"github.com/basaltplatform/basalt/services/audit/internal/store"
)

// Limits of one Record call.
const (
	MaxBatch         = 500
	maxMetadata      = 32
	maxMetadataValue = 1024
	maxUserAgent     = 512
	maxFutureSkew    = 5 * time.Minute
)

// Log is what the handler needs of the store.
type Log interface {
	Append(ctx context.Context, entries []chain.Entry) ([]store.Receipt, error)
	List(ctx context.Context, f store.Filter, before int64, limit int) ([]chain.Stored, bool, error)
	Export(ctx context.Context, f store.Filter, after int64, fn func(chain.Stored) error) error
	LatestCheckpoint(ctx context.Context) (chain.Checkpoint, bool, error)
	Verify(ctx context.Context, keys chain.Keys) (store.Verification, error)
}

// Server implements basalt.audit.v1.AuditService.
type Server struct {
	log  Log
	keys chain.Keys
	now  func() time.Time
}

var _ auditv1connect.AuditServiceHandler = (*Server)(nil)

// New returns a Server over log; keys verify the log's checkpoints.
func New(log Log, keys chain.Keys, opts ...Option) *Server {
	s := &Server{log: log, keys: keys, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Option configures New.
type Option func(*Server)

// WithClock replaces the clock used to reject events from the future.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// Record appends a batch of events.
func (s *Server) Record(ctx context.Context, req *connect.Request[auditv1.RecordRequest]) (*connect.Response[auditv1.RecordResponse], error) {
	entries, err := s.entries(req.Msg.GetEvents())
	if err != nil {
		return nil, err
	}
	receipts, err := s.log.Append(ctx, entries)
	if err != nil {
		return nil, err
	}
	res := &auditv1.RecordResponse{Receipts: make([]*auditv1.Receipt, len(receipts))}
	for i, r := range receipts {
		status := auditv1.ReceiptStatus_RECEIPT_STATUS_APPENDED
		if r.Duplicate {
			status = auditv1.ReceiptStatus_RECEIPT_STATUS_DUPLICATE
		}
		res.Receipts[i] = &auditv1.Receipt{Id: r.ID, Sequence: r.Sequence, Status: status}
	}
	return connect.NewResponse(res), nil
}

var (
	servicePattern  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	actionPattern   = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
	typePattern     = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,63}$`)
	metaKeyPattern  = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	traceIDPattern  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	earliestAllowed = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

var outcomes = map[auditv1.Outcome]string{
	auditv1.Outcome_OUTCOME_SUCCESS: "success",
	auditv1.Outcome_OUTCOME_FAILURE: "failure",
	auditv1.Outcome_OUTCOME_DENIED:  "denied",
}

// entries validates a batch, reporting every invalid field, and converts it.
func (s *Server) entries(events []*auditv1.Event) ([]chain.Entry, error) {
	var v errs.Violations
	switch {
	case len(events) == 0:
		v.Add("events", "must hold at least one event")
	case len(events) > MaxBatch:
		v.Add("events", fmt.Sprintf("must hold at most %d events, not %d", MaxBatch, len(events)))
	}
	if v.Len() > 0 {
		return nil, v.Err()
	}
	now := s.now()
	out := make([]chain.Entry, len(events))
	for i, ev := range events {
		f := func(name string) string { return fmt.Sprintf("events[%d].%s", i, name) }
		id, err := uuid.Parse(ev.GetId())
		if err != nil || len(ev.GetId()) != 36 {
			v.Add(f("id"), "must be a UUID in its 36-character form")
		}
		if ev.GetSequence() != 0 || len(ev.GetPrevHash()) != 0 || len(ev.GetHash()) != 0 {
			v.Add(f("sequence"), "sequence, prev_hash and hash are assigned by the log and must be empty")
		}
		t := ev.GetTime().AsTime()
		switch {
		case ev.GetTime() == nil:
			v.Add(f("time"), "is required")
		case ev.GetTime().CheckValid() != nil || t.Before(earliestAllowed):
			v.Add(f("time"), "must be a valid time after 2000-01-01")
		case t.After(now.Add(maxFutureSkew)):
			v.Add(f("time"), "must not be more than 5 minutes in the future")
		}
		if !servicePattern.MatchString(ev.GetService()) {
			v.Add(f("service"), "must be a lower-case service name")
		}
		if len(ev.GetAction()) > 128 || !actionPattern.MatchString(ev.GetAction()) {
			v.Add(f("action"), `must be dotted lower-case words, such as "auth.login"`)
		}
		outcome, ok := outcomes[ev.GetOutcome()]
		if !ok {
			v.Add(f("outcome"), "must be success, failure or denied")
		}
		actor, resource := ev.GetActor(), ev.GetResource()
		if len(actor.GetSubject()) > 256 {
			v.Add(f("actor.subject"), "must be at most 256 bytes")
		}
		if ip := actor.GetIp(); ip != "" {
			if _, err := netip.ParseAddr(ip); err != nil {
				v.Add(f("actor.ip"), "must be an IPv4 or IPv6 address")
			}
		}
		if rt := resource.GetType(); rt != "" && !typePattern.MatchString(rt) {
			v.Add(f("resource.type"), "must be a lower-case type name")
		}
		if len(resource.GetId()) > 256 {
			v.Add(f("resource.id"), "must be at most 256 bytes")
		}
		if len(ev.GetRequestId()) > 128 {
			v.Add(f("request_id"), "must be at most 128 bytes")
		}
		if tid := ev.GetTraceId(); tid != "" && !traceIDPattern.MatchString(tid) {
			v.Add(f("trace_id"), "must be 32 lower-case hex digits")
		}
		if len(ev.GetMetadata()) > maxMetadata {
			v.Add(f("metadata"), fmt.Sprintf("must hold at most %d entries", maxMetadata))
		}
		for k, val := range ev.GetMetadata() {
			if !metaKeyPattern.MatchString(k) {
				v.Add(f("metadata"), fmt.Sprintf("key %q must be a lower-case name", k))
			}
			if len(val) > maxMetadataValue {
				v.Add(f("metadata"), fmt.Sprintf("value of %q must be at most %d bytes", k, maxMetadataValue))
			}
		}
		out[i] = chain.Entry{
			ID:             id.String(),
			Time:           t.UTC().Truncate(time.Microsecond),
			Service:        ev.GetService(),
			Action:         ev.GetAction(),
			Outcome:        outcome,
			ActorSubject:   actor.GetSubject(),
			ActorIP:        actor.GetIp(),
			ActorUserAgent: truncate(actor.GetUserAgent(), maxUserAgent),
			ResourceType:   resource.GetType(),
			ResourceID:     resource.GetId(),
			RequestID:      ev.GetRequestId(),
			TraceID:        ev.GetTraceId(),
			Metadata:       ev.GetMetadata(),
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.Clone(s)
}
