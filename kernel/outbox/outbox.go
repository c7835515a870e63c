// Package outbox records audit events in the service's own database, in the same transaction
// as the change they describe, and relays them to the audit service in batches.
//
// An event is a row of the service's basalt_outbox table until the audit service has
// acknowledged it, so nothing is lost while audit is down; the audit service deduplicates by
// event id, so a batch sent twice (a relay that crashed before deleting it) is recorded once.
//
// Each row keeps the trace context of the request that wrote it, and the span of a delivery
// links to the span of every request whose events it carries (links rather than a parent: a
// batch has many writers). ObserveBacklog reports how many events wait and for how long.
package outbox

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/clientinfo"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/requestid"
)

// Recorder records audit events outside any transaction of the caller's (a permission denial,
// a failed login). The outbox implements it; so does the audit service itself, which appends
// to its own log directly.
type Recorder interface {
	Record(ctx context.Context, events ...*auditv1.Event) error
}

// Outbox is one service's outbox.
type Outbox struct {
	db      *database.DB
	service string
	now     func() time.Time
	log     *slog.Logger
	tracer  trace.Tracer
	wake    chan struct{}
}

var _ Recorder = (*Outbox)(nil)

// Option configures New.
type Option func(*Outbox)

// WithClock replaces the clock events are stamped with.
func WithClock(now func() time.Time) Option { return func(o *Outbox) { o.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *Outbox) { o.log = l } }

// WithTracerProvider makes a span of tp of each delivery, linked to the spans of the requests
// that wrote its events (default: no spans).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *Outbox) { o.tracer = tp.Tracer(scope) }
}

// scope names the outbox's spans and metrics.
const scope = "github.com/basaltplatform/basalt/kernel/outbox"

// New returns the outbox of service in db.
func New(db *database.DB, service string, opts ...Option) *Outbox {
	o := &Outbox{db: db, service: service, now: time.Now, log: slog.New(slog.DiscardHandler), tracer: noop.NewTracerProvider().Tracer(scope), wake: make(chan struct{}, 1)}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Migrate creates or updates the outbox table in the service's schema with the outbox's own
// versioned migrations (component "outbox"), beside the service's.
func (o *Outbox) Migrate(ctx context.Context) error {
	files, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return migrate.Apply(ctx, o.db, "outbox", files, migrate.WithLogger(o.log))
}

// migrations are the outbox table's migrations, one folder per dialect.
//
//go:embed migrations
var migrations embed.FS

// Outcome says how an action ended.
type Outcome = auditv1.Outcome

// The outcomes of audit events.
const (
	Success = auditv1.Outcome_OUTCOME_SUCCESS
	Failure = auditv1.Outcome_OUTCOME_FAILURE
	Denied  = auditv1.Outcome_OUTCOME_DENIED
)

// Event builds an audit event of this service from what ctx knows: the acting subject, the
// client's address and user agent, the request id and the trace id. metadata must hold no
// secrets, passwords or tokens.
func (o *Outbox) Event(ctx context.Context, action string, outcome Outcome, resourceType, resourceID string, metadata map[string]string) *auditv1.Event {
	return NewEvent(ctx, o.service, o.now(), action, outcome, resourceType, resourceID, metadata)
}

// NewEvent builds an audit event for service at time t; see Outbox.Event.
func NewEvent(ctx context.Context, service string, t time.Time, action string, outcome Outcome, resourceType, resourceID string, metadata map[string]string) *auditv1.Event {
	info := clientinfo.From(ctx)
	ev := &auditv1.Event{
		Id:        uuid.Must(uuid.NewV7()).String(),
		Time:      timestamppb.New(t),
		Service:   service,
		Action:    action,
		Outcome:   outcome,
		Actor:     &auditv1.Actor{Subject: authn.Subject(ctx), Ip: info.IP, UserAgent: info.UserAgent},
		RequestId: requestid.From(ctx),
		Metadata:  metadata,
	}
	if resourceType != "" || resourceID != "" {
		ev.Resource = &auditv1.Resource{Type: resourceType, Id: resourceID}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		ev.TraceId = sc.TraceID().String()
	}
	return ev
}

// Add writes events into the outbox inside the caller's transaction (for Ent, a *Tx with the
// sql/execquery feature), so they are committed or rolled back with the change. The trace
// context of ctx, the writing request's, is kept with them.
func (o *Outbox) Add(ctx context.Context, tx database.Execer, events ...*auditv1.Event) error {
	now := o.now().UnixMilli()
	parent := traceparent(ctx)
	for _, ev := range events {
		payload, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, o.db.Rebind(`INSERT INTO basalt_outbox (event_id, payload, created_at, next_attempt_at, traceparent) VALUES (?, ?, ?, ?, ?)`),
			ev.GetId(), payload, now, now, parent); err != nil {
			return database.Translate(err)
		}
	}
	o.Notify()
	return nil
}

// traceparent returns the W3C traceparent of ctx's span, or nil (NULL) outside a trace.
func traceparent(ctx context.Context) any {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// writerSpan returns the span context a stored traceparent names; it is invalid when the
// event has none.
func writerSpan(traceparent string) trace.SpanContext {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}

// Record writes events in a transaction of their own.
func (o *Outbox) Record(ctx context.Context, events ...*auditv1.Event) error {
	return database.WithTx(ctx, func(ctx context.Context) (*sql.Tx, error) { return o.db.SQL().BeginTx(ctx, nil) },
		func(tx *sql.Tx) error { return o.Add(ctx, tx, events...) })
}

// Notify wakes the relay so that committed events go out without waiting for its next poll.
// Add calls it; a relay woken before the commit finds nothing and polls again shortly.
func (o *Outbox) Notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Pending returns how many events wait to be relayed (dead ones excluded).
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	var n int
	err := o.db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM basalt_outbox WHERE NOT dead`).Scan(&n)
	return n, database.Translate(err)
}

// ObserveBacklog reports the outbox through mp whenever its metrics are collected: the events
// waiting to be relayed (basalt.outbox.backlog), the age of the oldest of them
// (basalt.outbox.oldest_age, 0 when none waits) and the events set aside as dead
// (basalt.outbox.dead). A growing backlog or age means the audit service is not taking events.
// Each collection counts the table's rows, so unregister before the database closes.
func (o *Outbox) ObserveBacklog(mp metric.MeterProvider) (metric.Registration, error) {
	meter := mp.Meter(scope)
	waiting, err := meter.Int64ObservableGauge("basalt.outbox.backlog", metric.WithUnit("{event}"),
		metric.WithDescription("Audit events waiting in the outbox to be relayed to the audit service."))
	if err != nil {
		return nil, err
	}
	oldest, err := meter.Float64ObservableGauge("basalt.outbox.oldest_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest audit event waiting in the outbox; 0 when none waits."))
	if err != nil {
		return nil, err
	}
	dead, err := meter.Int64ObservableGauge("basalt.outbox.dead", metric.WithUnit("{event}"),
		metric.WithDescription("Audit events the audit service rejected as invalid, kept in the outbox and never resent."))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(ctx context.Context, obs metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		b, err := o.backlog(ctx)
		if err != nil {
			// Nothing is observed, so a scraper sees the series go stale rather than a wrong
			// value; the global error handler would not name the outbox.
			o.log.WarnContext(ctx, "the outbox's backlog could not be read", "error", err)
			return nil
		}
		obs.ObserveInt64(waiting, b.waiting)
		obs.ObserveFloat64(oldest, b.oldestAge.Seconds())
		obs.ObserveInt64(dead, b.dead)
		return nil
	}, waiting, oldest, dead)
}

type backlog struct {
	waiting, dead int64
	oldestAge     time.Duration
}

// backlog reads the outbox's state in one pass over its rows, which the counts need anyway.
func (o *Outbox) backlog(ctx context.Context) (backlog, error) {
	var b backlog
	var oldest sql.NullInt64
	err := o.db.SQL().QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN dead THEN 0 ELSE 1 END), 0),
		COALESCE(SUM(CASE WHEN dead THEN 1 ELSE 0 END), 0),
		MIN(CASE WHEN dead THEN NULL ELSE created_at END)
		FROM basalt_outbox`).Scan(&b.waiting, &b.dead, &oldest)
	if err != nil {
		return b, database.Translate(err)
	}
	if oldest.Valid {
		b.oldestAge = max(o.now().Sub(time.UnixMilli(oldest.Int64)), 0)
	}
	return b, nil
}
