package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/database"
)

// Sender delivers events to the audit service; the generated AuditService client has it.
type Sender interface {
	Record(context.Context, *connect.Request[auditv1.RecordRequest]) (*connect.Response[auditv1.RecordResponse], error)
}

// RelayOptions configure Relay.
type RelayOptions struct {
	// Interval is how often the relay looks for events when nobody woke it (default 500ms).
	Interval time.Duration
	// BatchSize is the most events sent in one call (default 100, at most 500).
	BatchSize int
	// Lease is how long a claimed batch is hidden from other relays while it is sent
	// (default 30s); a relay that dies mid-send leaves its batch to others after that.
	Lease time.Duration
	// MaxBackoff bounds the wait before a failed event is tried again (default 30s).
	MaxBackoff time.Duration
}

func (r *RelayOptions) defaults() {
	if r.Interval <= 0 {
		r.Interval = 500 * time.Millisecond
	}
	if r.BatchSize <= 0 || r.BatchSize > 500 {
		r.BatchSize = 100
	}
	if r.Lease <= 0 {
		r.Lease = 30 * time.Second
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 30 * time.Second
	}
}

// Relay sends outbox events to the audit service until ctx is done. Several instances of a
// service may relay at once: each claims its own batches.
func (o *Outbox) Relay(ctx context.Context, sender Sender, opts RelayOptions) {
	opts.defaults()
	for ctx.Err() == nil {
		n, err := o.RelayOnce(ctx, sender, opts)
		if err != nil && ctx.Err() == nil {
			o.log.WarnContext(ctx, "outbox relay failed; events stay queued", "error", err)
		}
		if n == opts.BatchSize && err == nil {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
		case <-o.wake:
		case <-time.After(opts.Interval):
		}
	}
}

type row struct {
	seq      int64
	attempts int
	event    *auditv1.Event
	// writer is the span of the request that wrote the event; invalid when there was none.
	writer trace.SpanContext
}

// RelayOnce claims one batch of due events, sends it and settles it: acknowledged events are
// deleted; a batch the audit service calls invalid is sent again event by event, and an event
// it still calls invalid is marked dead (kept, never resent, reported in the log); other
// failures leave the events for a later attempt with exponential backoff. It returns how many
// events it claimed.
func (o *Outbox) RelayOnce(ctx context.Context, sender Sender, opts RelayOptions) (int, error) {
	opts.defaults()
	rows, err := o.claim(ctx, opts)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	err = o.send(ctx, sender, rows, opts)
	if errors.Is(err, errInvalid) && len(rows) > 1 {
		var errs []error
		for _, r := range rows {
			if err := o.send(ctx, sender, []row{r}, opts); err != nil && !errors.Is(err, errInvalid) {
				errs = append(errs, err)
			}
		}
		return len(rows), errors.Join(errs...)
	}
	if errors.Is(err, errInvalid) {
		return len(rows), nil
	}
	return len(rows), err
}

var errInvalid = errors.New("outbox: the audit service rejected the events as invalid")

// send delivers rows and settles them, in a span linked to the spans that wrote them.
func (o *Outbox) send(ctx context.Context, sender Sender, rows []row, opts RelayOptions) (err error) {
	ctx, span := o.deliverySpan(ctx, rows)
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	req := &auditv1.RecordRequest{Events: make([]*auditv1.Event, len(rows))}
	for i, r := range rows {
		req.Events[i] = r.event
	}
	sendCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = sender.Record(sendCtx, connect.NewRequest(req))
	cancel()
	seqs := make([]any, len(rows))
	for i, r := range rows {
		seqs[i] = r.seq
	}
	settleCtx := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		return o.exec(settleCtx, `DELETE FROM basalt_outbox WHERE seq IN (`+placeholders(len(seqs))+`)`, seqs...)
	case connect.CodeOf(err) == connect.CodeInvalidArgument:
		if len(rows) == 1 {
			o.log.ErrorContext(ctx, "the audit service rejected an event; it is kept in the outbox as dead", "event_id", rows[0].event.GetId(), "action", rows[0].event.GetAction(), "error", err)
			if derr := o.exec(settleCtx, `UPDATE basalt_outbox SET dead = TRUE, last_error = ? WHERE seq = ?`, truncateErr(err), rows[0].seq); derr != nil {
				return derr
			}
		}
		return errInvalid
	default:
		attempts := rows[0].attempts + 1
		backoff := min(time.Duration(1<<min(attempts, 10))*100*time.Millisecond, opts.MaxBackoff)
		backoff += rand.N(backoff/4 + 1)
		args := append([]any{o.now().Add(backoff).UnixMilli(), truncateErr(err)}, seqs...)
		if uerr := o.exec(settleCtx, `UPDATE basalt_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE seq IN (`+placeholders(len(seqs))+`)`, args...); uerr != nil {
			return errors.Join(err, uerr)
		}
		return fmt.Errorf("outbox: send %d events: %w", len(rows), err)
	}
}

// deliverySpan starts the span of one delivery: a new trace, since many requests wrote the
// batch, with a link to each writer's span, so a trace viewer leads from a request to the
// delivery of its events and back. The call to the audit service is its child.
func (o *Outbox) deliverySpan(ctx context.Context, rows []row) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(rows))
	for _, r := range rows {
		if r.writer.IsValid() {
			links = append(links, trace.Link{SpanContext: r.writer})
		}
	}
	return o.tracer.Start(ctx, "outbox.relay",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(rows))),
	)
}

// claim leases a batch of due events by moving their next attempt past the lease, so no other
// relay takes them meanwhile. On PostgreSQL, SKIP LOCKED lets relays claim side by side.
func (o *Outbox) claim(ctx context.Context, opts RelayOptions) ([]row, error) {
	now := o.now()
	lock := ""
	if o.db.Dialect() == "postgres" {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	q := o.db.Rebind(`UPDATE basalt_outbox SET next_attempt_at = ? WHERE seq IN (
		SELECT seq FROM basalt_outbox WHERE NOT dead AND next_attempt_at <= ? ORDER BY seq LIMIT ?` + lock + `
	) RETURNING seq, attempts, payload, traceparent`)
	rs, err := o.db.SQL().QueryContext(ctx, q, now.Add(opts.Lease).UnixMilli(), now.UnixMilli(), opts.BatchSize)
	if err != nil {
		return nil, database.Translate(err)
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var (
			r           row
			payload     []byte
			traceparent sql.NullString
		)
		if err := rs.Scan(&r.seq, &r.attempts, &payload, &traceparent); err != nil {
			return nil, database.Translate(err)
		}
		r.writer = writerSpan(traceparent.String)
		r.event = &auditv1.Event{}
		if err := proto.Unmarshal(payload, r.event); err != nil {
			return nil, fmt.Errorf("outbox: event %d is corrupt: %w", r.seq, err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, database.Translate(err)
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
	return rows, nil
}

func (o *Outbox) exec(ctx context.Context, q string, args ...any) error {
	_, err := o.db.SQL().ExecContext(ctx, o.db.Rebind(q), args...)
	return database.Translate(err)
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func truncateErr(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500]
	}
	return strings.ToValidUTF8(s, "")
}
