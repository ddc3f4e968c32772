// Package outbox implements the transactional outbox: events are inserted
// as rows inside the same database transaction as the state change that
// caused them, and a Relay publishes them to JetStream afterwards. A state
// change and its events therefore commit together or not at all, and a
// crash between commit and publish loses nothing: the rows wait for the
// relay.
package outbox

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates the outbox table in db if it does not exist yet.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return sqldb.Migrate(ctx, db, "outbox", mustSub(migrations, "migrations"))
}

// Outbox writes events into one database's outbox table and wakes the
// relay of the same process when they commit.
type Outbox struct {
	db   *sqldb.DB
	wake chan struct{}
}

// New returns the outbox of db. Migrate must have run.
func New(db *sqldb.DB) *Outbox {
	return &Outbox{db: db, wake: make(chan struct{}, 1)}
}

// DB returns the database the outbox lives in.
func (o *Outbox) DB() *sqldb.DB { return o.db }

// Add inserts evts into the outbox inside tx; they become visible to the
// relay only if tx commits. An event whose id is already waiting in the
// outbox is skipped, so a retried transaction cannot queue it twice. Call
// Notify after the commit so the relay publishes at once.
func (o *Outbox) Add(ctx context.Context, tx *sql.Tx, evts ...events.Outgoing) error {
	if len(evts) == 0 {
		return nil
	}
	now := time.Now()
	stmts := o.db.In(tx)
	cause := events.CauseFrom(ctx)
	tracer := events.Tracer(ctx)
	for _, e := range evts {
		if e.CausationID == "" {
			e.CausationID = cause
		}
		if err := validSubject(e.Subject); err != nil {
			return fmt.Errorf("outbox: event %s: %w", e.ID, err)
		}
		headers := nats.Header{}
		for k, v := range e.Headers {
			headers.Set(k, v)
		}
		env, err := e.Envelope()
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		create(ctx, tracer, e, headers, &env)
		payload, err := events.Encode(env)
		if err != nil {
			return fmt.Errorf("outbox: event %s on %s: %w", e.ID, e.Subject, err)
		}
		if _, err := stmts.Exec(ctx, `INSERT INTO outbox (event_id, subject, headers, payload, created_unix_ms)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
			e.ID, e.Subject, encodeHeaders(headers), payload, now.UnixMilli()); err != nil {
			return fmt.Errorf("outbox: insert event %s: %w", e.ID, err)
		}
	}
	return nil
}

// create is the event's creation span, a child of the span that decided
// to publish it (a message's process span, an HTTP request's): its
// context becomes the event's trace context, in the row's headers (for
// the relay's send span, and for the consumers' process spans as their
// parent) and in the envelope's distributed-tracing extension. It ends at
// once: writing the row is all there is to it.
func create(ctx context.Context, tracer trace.Tracer, e events.Outgoing, headers nats.Header, env *events.Envelope) {
	template := events.SubjectTemplate(e.Subject)
	ctx, span := tracer.Start(ctx, "create "+template, trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(events.MessageAttributes("create", e.Subject, template, e.ID, e.Type)...)
	}
	events.InjectTrace(ctx, headers)
	env.TraceParent = headers.Get(events.HeaderTraceParent)
	env.TraceState = headers.Get(events.HeaderTraceState)
}

// validSubject accepts only subjects the relay can publish: tokens that are
// non-empty and free of wildcards and whitespace. A row with any other
// subject would fail on every attempt and, being the oldest, hold back the
// rows behind it; refusing it here rolls back the transaction that wrote it
// instead, with a Permanent error.
func validSubject(subject string) error {
	if subject == "" {
		return events.Permanent(fmt.Errorf("empty subject"))
	}
	for _, tok := range strings.Split(subject, ".") {
		if err := events.ValidToken(tok); err != nil {
			return fmt.Errorf("invalid subject %q: %w", subject, err)
		}
	}
	return nil
}

// encodeHeaders writes message headers as "Key: value" lines, the shape
// NATS headers have on the wire: readable in a SQL console, and parsed by
// the relay with a split instead of a JSON decoder on its hot path. Line
// breaks inside a value are dropped, as NATS headers cannot carry them.
var dropLineBreaks = strings.NewReplacer("\r", "", "\n", "")

func encodeHeaders(h nats.Header) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			b.WriteString(k + ": " + dropLineBreaks.Replace(v) + "\n")
		}
	}
	return b.String()
}

// Notify wakes the relay after a commit that added rows. It never blocks:
// a wake-up already pending covers this one too.
func (o *Outbox) Notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Message is an event waiting in the outbox, as the relay will publish it.
type Message struct {
	EventID string
	Subject string
	Header  nats.Header
	Data    []byte // the encoded CloudEvent
}

// Pending returns the events waiting to be published, oldest first, for
// inspection by tests and operator tools. It publishes nothing.
func (o *Outbox) Pending(ctx context.Context) ([]Message, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT event_id, subject, headers, payload FROM outbox ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("outbox: pending: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var (
			m       Message
			headers string
		)
		if err := rows.Scan(&m.EventID, &m.Subject, &headers, &m.Data); err != nil {
			return nil, fmt.Errorf("outbox: pending: %w", err)
		}
		m.Header = nats.Header{}
		setHeaders(m.Header, headers)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: pending: %w", err)
	}
	return out, nil
}

// Backlog returns how many rows wait to be published and when the oldest
// of them was written (zero time when none).
func (o *Outbox) Backlog(ctx context.Context) (int, time.Time, error) {
	var (
		n      int
		oldest sql.NullInt64
	)
	err := o.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_unix_ms) FROM outbox`).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox: backlog: %w", err)
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, time.UnixMilli(oldest.Int64), nil
}
