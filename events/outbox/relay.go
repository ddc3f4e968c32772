package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/sqldb"
)

// noObserver is the relay's observer when none is set.
type noObserver struct{}

func (noObserver) Acked(string, time.Duration) {}
func (noObserver) NotAcked(string)             {}
func (noObserver) Active(bool)                 {}

// ErrInvalidOption is wrapped by every error a relay option returns.
var ErrInvalidOption = errors.New("outbox: invalid option")

// Option configures a Relay.
type Option func(*Relay) error

// WithBatch sets how many rows the relay publishes per round trip
// (default 256).
func WithBatch(n int) Option {
	return func(r *Relay) error {
		if n < 1 {
			return fmt.Errorf("%w: batch %d < 1", ErrInvalidOption, n)
		}
		r.batch = n
		return nil
	}
}

// WithSweep sets the interval of the periodic sweep that publishes rows no
// wake-up announced: rows written by another process, or left by a crash
// (default 1s).
func WithSweep(d time.Duration) Option {
	return func(r *Relay) error {
		if d <= 0 {
			return fmt.Errorf("%w: sweep %s <= 0", ErrInvalidOption, d)
		}
		r.sweep = d
		return nil
	}
}

// WithAckTimeout bounds the wait for the server's acks of one batch
// (default 5s). Rows whose ack did not arrive stay and are sent again.
func WithAckTimeout(d time.Duration) Option {
	return func(r *Relay) error {
		if d <= 0 {
			return fmt.Errorf("%w: ack timeout %s <= 0", ErrInvalidOption, d)
		}
		r.ackTimeout = d
		return nil
	}
}

// WithBackoff sets the first and the longest pause after a failed batch
// (defaults 50ms and 5s); the pause doubles on each consecutive failure.
func WithBackoff(first, max time.Duration) Option {
	return func(r *Relay) error {
		if first <= 0 || max < first {
			return fmt.Errorf("%w: backoff %s..%s", ErrInvalidOption, first, max)
		}
		r.backoffMin, r.backoffMax = first, max
		return nil
	}
}

// WithDeleteDelay sets how long rows the server has acked may wait to be
// deleted together (default 50ms): one delete for the rows of many
// publishes instead of a transaction per publish. 0 deletes after every
// batch.
func WithDeleteDelay(d time.Duration) Option {
	return func(r *Relay) error {
		if d < 0 {
			return fmt.Errorf("%w: delete delay %s < 0", ErrInvalidOption, d)
		}
		r.deleteDelay = d
		return nil
	}
}

// Observer is told what a relay does, for metrics. Its methods are called
// from the relay's goroutines and must return quickly.
type Observer interface {
	// Acked: the server acked the event the relay published on subject,
	// took after it was sent.
	Acked(subject string, took time.Duration)
	// NotAcked: the publish of an event failed or its ack did not come in
	// time; its row stays and is sent again.
	NotAcked(subject string)
	// Active: the relay became the store's active relay (true), the one
	// that publishes, or a standby (false); see relayLock. Called once
	// when Run first knows, then on every change.
	Active(active bool)
}

// WithObserver sets the relay's observer (default: none).
func WithObserver(o Observer) Option {
	return func(r *Relay) error {
		if o == nil {
			return fmt.Errorf("%w: nil observer", ErrInvalidOption)
		}
		r.observer = o
		return nil
	}
}

// WithTracerProvider sets the provider of the relay's send spans (default:
// the global one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(r *Relay) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidOption)
		}
		r.tracer = tp.Tracer(events.TracerName)
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(r *Relay) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		r.log = l
		return nil
	}
}

// Relay publishes outbox rows to JetStream. It wakes when Outbox.Notify is
// called after a commit, and sweeps periodically for rows nobody announced.
// Of the relays sharing one store (a service's replicas), only the one
// holding the store's relay lock publishes; the others stand by and take
// over when it stops or dies (see relayLock).
// Rows are published asynchronously in batches with Nats-Msg-Id set to the
// event id, and deleted only after the server has acked them — together,
// a few at a time (WithDeleteDelay); a row whose publish failed, or whose
// ack never came, stays and is sent again after a back-off. Sending a row
// twice (after a lost ack, or while the lock changes hands) is harmless:
// the stream's duplicate window drops the second copy.
// A broker error never marks a row as failed.
type Relay struct {
	ob          *Outbox
	js          jetstream.JetStream
	batch       int
	sweep       time.Duration
	ackTimeout  time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	deleteDelay time.Duration
	log         *slog.Logger
	observer    Observer
	tracer      trace.Tracer
	// lock elects the relay that publishes; used by Run's goroutine only.
	lock relayLock
	// active: this relay holds the lock and publishes (as Run last knew).
	active atomic.Bool
	// reported: the observer has been told whether the relay is active.
	reported bool

	// acked holds the rows the server acked and the relay has not deleted
	// yet, so that they are not published again meanwhile; ackedSince is
	// when the oldest of them was acked.
	mu         sync.Mutex
	acked      map[int64]struct{}
	ackedSince time.Time
	// cursor: on SQLite every row with an id up to it has been published
	// (and acked), so a drain loads only the rows after it. SQLite has one
	// writer at a time, so rows commit in the order of their ids and none
	// can appear below the cursor later. On PostgreSQL a transaction may
	// commit after one that took a later id, so every drain starts from
	// the first row (the periodic sweep does so on SQLite too).
	cursor int64
}

// NewRelay returns a relay for ob publishing through js.
func NewRelay(ob *Outbox, js jetstream.JetStream, opts ...Option) (*Relay, error) {
	r := &Relay{
		ob:          ob,
		js:          js,
		batch:       256,
		sweep:       time.Second,
		ackTimeout:  5 * time.Second,
		backoffMin:  50 * time.Millisecond,
		backoffMax:  5 * time.Second,
		deleteDelay: 50 * time.Millisecond,
		log:         slog.New(slog.DiscardHandler),
		observer:    noObserver{},
		tracer:      otel.GetTracerProvider().Tracer(events.TracerName),
		acked:       map[int64]struct{}{},
	}
	for _, opt := range opts {
		if err := opt(r); err != nil {
			return nil, err
		}
	}
	if ob == nil || js == nil {
		return nil, fmt.Errorf("%w: nil outbox or jetstream", ErrInvalidOption)
	}
	r.lock = newRelayLock(ob.db, pausedHolderTimeout(r.sweep, r.ackTimeout, r.backoffMax))
	return r, nil
}

// maxAcked bounds the acked rows waiting to be deleted: past it, they
// are deleted at once.
const maxAcked = 1024

// Run publishes until ctx is cancelled, then returns nil. Before returning
// it makes one last attempt to publish what is pending, bounded by the ack
// timeout, and deletes what was acked, so a clean shutdown leaves as little
// as possible behind; then it gives up the relay lock. While another relay
// holds the store's relay lock, Run publishes nothing and tries to take the
// lock at every sweep interval.
func (r *Relay) Run(ctx context.Context) error {
	defer func() {
		r.lock.release()
		if r.active.Swap(false) {
			r.observer.Active(false)
		}
	}()
	sweep := time.NewTicker(r.sweep)
	defer sweep.Stop()
	deleteTimer := time.NewTimer(time.Hour)
	deleteTimer.Stop()
	defer deleteTimer.Stop()
	failures := 0
	for {
		if !r.lead(ctx) {
			select {
			case <-ctx.Done():
				r.deleteAcked(ctx)
				return nil
			case <-sweep.C:
				// Rows this relay had acked before it lost the lock.
				r.deleteAcked(ctx)
			}
			continue
		}
		_, err := r.drain(ctx, r.start())
		switch {
		case ctx.Err() != nil:
			r.flush()
			return nil
		case errors.Is(err, errLostLock):
			continue // lead says so, and stands by
		case err != nil:
			failures++
			pause := r.backoff(failures)
			r.log.Warn("outbox relay: publish failed, will retry", "err", err, "retry_in", pause.String(), "failures", failures)
			r.deleteAcked(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			continue
		}
		failures = 0
		n, since := r.waiting()
		switch {
		case n >= maxAcked || (n > 0 && r.deleteDelay == 0):
			r.deleteAcked(ctx)
		case n > 0:
			deleteTimer.Reset(max(0, time.Until(since.Add(r.deleteDelay))))
		}
		select {
		case <-ctx.Done():
		case <-r.ob.wake:
		case <-deleteTimer.C:
			r.deleteAcked(ctx)
		case <-sweep.C:
			// Rows nobody announced (another process's, a crashed run's,
			// on PostgreSQL one that committed below the cursor): look
			// from the first row.
			r.deleteAcked(ctx)
			r.mu.Lock()
			r.cursor = 0
			r.mu.Unlock()
		}
	}
}

// start is the id after which a drain loads rows.
func (r *Relay) start() int64 {
	if r.ob.db.Dialect.Engine != sqldb.SQLite {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursor
}

// waiting reports how many acked rows wait to be deleted and since when.
func (r *Relay) waiting() (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked), r.ackedSince
}

func (r *Relay) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), r.ackTimeout)
	defer cancel()
	if held, _ := r.lock.hold(ctx); held {
		_, _ = r.drain(ctx, r.start())
	}
	r.deleteAcked(ctx)
}

// Active reports whether the relay publishes: it holds its store's relay
// lock. A standby relay, or one not running, is not active.
func (r *Relay) Active() bool { return r.active.Load() }

// lead reports whether this relay is the store's active relay, taking the
// relay lock if it is free, and logs and reports every change.
func (r *Relay) lead(ctx context.Context) bool {
	if ctx.Err() != nil {
		// Stopping: the final flush checks the lock with a context of
		// its own (a cancelled query could end the lock's session).
		return r.active.Load()
	}
	held, err := r.lock.hold(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("outbox relay: relay lock unavailable; not publishing until it is", "err", err)
	}
	was := r.active.Swap(held)
	switch {
	case held && !was:
		r.log.Info("outbox relay: active: this relay publishes the store's outbox")
		// Rows committed while another relay was active lie anywhere.
		r.mu.Lock()
		r.cursor = 0
		r.mu.Unlock()
	case !held && was:
		r.log.Warn("outbox relay: lost the relay lock; standing by")
	case !held && !r.reported:
		r.log.Info("outbox relay: standby: another relay publishes the store's outbox; taking over when it stops")
	}
	if held != was || !r.reported {
		r.reported = true
		r.observer.Active(held)
	}
	return held
}

func (r *Relay) backoff(failures int) time.Duration {
	d := r.backoffMin
	for i := 1; i < failures && d < r.backoffMax; i++ {
		d *= 2
	}
	return min(d, r.backoffMax)
}

type row struct {
	id      int64
	eventID string
	subject string
	headers string
	payload []byte
}

// errLostLock stops a drain whose relay no longer holds the relay lock.
var errLostLock = errors.New("outbox: relay lock lost")

// maxInFlight bounds the rows published and not yet settled while the
// relay drains a backlog (at least one batch). It keeps the relay well
// under the JetStream client's limit of pending asynchronous publishes
// (4000 by default), beyond which publishing stalls.
const maxInFlight = 1024

// PublishPending publishes one batch of the oldest rows and deletes those
// the server acked. It returns how many rows it found. An error means some
// rows stay for a later attempt; none is lost. It does not take the relay
// lock: it is for tests and one-off tools, not for a running service.
func (r *Relay) PublishPending(ctx context.Context) (int, error) {
	rows, _, _, err := r.load(ctx, 0)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	err = r.settle(ctx, r.send(rows))
	if derr := r.deleteAcked(ctx); err == nil {
		err = derr
	}
	return len(rows), err
}

// drain publishes everything pending after the row with id from, oldest
// first, and returns how many rows it published. It is a two-stage
// pipeline: this goroutine loads and publishes batches while a second one
// waits for their acks, in order. Without it the relay would alternate between the
// database and the broker, each idle while the other works, and drain a
// backlog at a fraction of the broker's asynchronous publish rate. On the
// first error no new batch is started; those already published are still
// settled, then the error is returned. A drain that has published all it
// found may go on with rows committed meanwhile (see moreWhileUnsettled).
func (r *Relay) drain(ctx context.Context, from int64) (int, error) {
	var (
		mu       sync.Mutex
		firstErr error
		failed   atomic.Bool
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		failed.Store(true)
	}
	// The queue and the batch being settled hold at most maxInFlight rows;
	// the sender may hold one more batch while it waits for room.
	queue := make(chan *batch, max(1, maxInFlight/r.batch)-1)
	settled := make(chan struct{})
	var unsettled atomic.Int64 // batches sent and not yet settled
	idle := make(chan struct{}, 1)
	go func() {
		defer close(settled)
		for b := range queue {
			if err := r.settle(ctx, b); err != nil {
				fail(err)
			}
			if unsettled.Add(-1) == 0 {
				select {
				case idle <- struct{}{}:
				default:
				}
			}
		}
	}()
	var (
		total   int
		after   = from // the highest id loaded so far
		started = time.Now()
	)
	for batches := 0; !failed.Load(); batches++ {
		// The caller checked the lock before the first batch; a backlog
		// drained in one go checks it before every batch, so that a
		// relay that lost it stops within a batch.
		if batches > 0 {
			if held, _ := r.lock.hold(ctx); !held {
				fail(errLostLock)
				break
			}
		}
		rows, last, more, err := r.load(ctx, after)
		if err != nil {
			fail(err)
			break
		}
		if last > 0 {
			after = last
		}
		if len(rows) > 0 {
			total += len(rows)
			b := r.send(rows)
			unsettled.Add(1)
			queue <- b
			if b.err != nil {
				break // settle reports it
			}
		}
		if !more && !r.moreWhileUnsettled(ctx, &unsettled, idle, started) {
			break
		}
	}
	close(queue)
	<-settled
	mu.Lock()
	defer mu.Unlock()
	if firstErr == nil {
		// Every row up to after is now published, or acked and waiting to
		// be deleted.
		r.mu.Lock()
		r.cursor = max(r.cursor, after)
		r.mu.Unlock()
	}
	return total, firstErr
}

// moreWhileUnsettled reports whether a drain that has published every row
// it found should go on: rows were committed while the acks of its last
// batches were still on their way. Waiting for those acks first would add
// their round trip to the latency of every event committed meanwhile, at
// every hop of a saga. Only on SQLite, whose rows commit in id order, so
// that none can appear below the rows already loaded; and no new round
// once the delete delay has passed or maxAcked rows wait to be deleted,
// so that the drain ends and Run deletes them.
func (r *Relay) moreWhileUnsettled(ctx context.Context, unsettled *atomic.Int64, idle <-chan struct{}, started time.Time) bool {
	if r.ob.db.Dialect.Engine != sqldb.SQLite || unsettled.Load() == 0 || time.Since(started) >= r.deleteDelay {
		return false
	}
	if n, _ := r.waiting(); n >= maxAcked {
		return false
	}
	select {
	case <-r.ob.wake:
		return true
	case <-idle: // the acks came first
	case <-ctx.Done():
	}
	return false
}

// batch is a set of rows published and waiting for their acks.
type batch struct {
	rows     []row
	acks     []jetstream.PubAckFuture // nil from the first row that failed to publish
	spans    []trace.Span             // each row's send span, ended when it settles
	sent     time.Time
	deadline time.Time // the acks are given up on after it
	err      error     // the publish error, if any
}

// send publishes rows asynchronously, stopping at the first failure. Each
// publish has a send span whose parent is the event's creation context
// (the row's trace headers); it ends when the ack comes, or does not.
func (r *Relay) send(rows []row) *batch {
	b := &batch{rows: rows, acks: make([]jetstream.PubAckFuture, len(rows)), spans: make([]trace.Span, len(rows)), sent: time.Now()}
	for i, rw := range rows {
		msg := nats.NewMsg(rw.subject)
		msg.Data = rw.payload
		setHeaders(msg.Header, rw.headers)
		msg.Header.Set(jetstream.MsgIDHeader, rw.eventID)
		msg.Header.Set(events.HeaderContentType, events.ContentTypeCloudEventsJSON)
		b.spans[i] = r.startSend(msg, rw)
		f, err := r.js.PublishMsgAsync(msg)
		if err != nil {
			b.err = fmt.Errorf("outbox: publish %s to %s: %w", rw.eventID, rw.subject, err)
			break
		}
		b.acks[i] = f
	}
	b.deadline = time.Now().Add(r.ackTimeout)
	return b
}

// startSend starts the send span of a row's publish. Its kind is Client,
// not Producer: the creation context the message carries is the create
// span's (see Outbox.Add), as the messaging conventions have it.
func (r *Relay) startSend(msg *nats.Msg, rw row) trace.Span {
	template := events.SubjectTemplate(rw.subject)
	_, span := r.tracer.Start(events.ExtractTrace(context.Background(), msg.Header), "send "+template,
		trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(events.MessageAttributes("send", rw.subject, template, rw.eventID, "")...)
		span.SetAttributes(semconv.MessagingMessageBodySize(len(rw.payload)))
	}
	return span
}

// failed ends the send span of b's i-th row with err and tells the
// observer.
func (r *Relay) failed(b *batch, i int, err error) {
	r.observer.NotAcked(b.rows[i].subject)
	b.spans[i].RecordError(err)
	b.spans[i].SetStatus(codes.Error, err.Error())
	b.spans[i].End()
}

// settle waits for the acks of b until its deadline and records the rows
// the server acked, for deleteAcked. The error reports the rows that
// stay to be sent again.
func (r *Relay) settle(ctx context.Context, b *batch) error {
	deadline := time.NewTimer(time.Until(b.deadline))
	defer deadline.Stop()
	firstErr := b.err
	acked := make([]int64, 0, len(b.rows))
	settled := 0 // the rows before it had their ack or their error
wait:
	for i, f := range b.acks {
		if f == nil {
			break
		}
		select {
		case <-f.Ok():
			acked = append(acked, b.rows[i].id)
			r.observer.Acked(b.rows[i].subject, time.Since(b.sent))
			b.spans[i].End()
		case err := <-f.Err():
			err = fmt.Errorf("outbox: publish %s to %s: %w", b.rows[i].eventID, b.rows[i].subject, err)
			if firstErr == nil {
				firstErr = err
			}
			r.failed(b, i, err)
		case <-deadline.C:
			if firstErr == nil {
				firstErr = fmt.Errorf("outbox: no ack within %s for %d events", r.ackTimeout, len(b.rows)-i)
			}
			break wait
		}
		settled = i + 1
	}
	// The rest were not acked in time, or (after a failed publish) the
	// one that failed; those never sent have no span.
	for i := settled; i < len(b.spans) && b.spans[i] != nil; i++ {
		r.failed(b, i, firstErr)
	}
	if len(acked) > 0 {
		r.mu.Lock()
		if len(r.acked) == 0 {
			r.ackedSince = time.Now()
		}
		for _, id := range acked {
			r.acked[id] = struct{}{}
		}
		r.mu.Unlock()
	}
	return firstErr
}

// deleteAcked deletes the rows the server acked. It runs even when the
// caller is shutting down: the rows are already in the stream, and
// deleting them now saves a (harmless, de-duplicated) second publish
// after restart. Rows it could not delete stay acked, for the next call.
func (r *Relay) deleteAcked(ctx context.Context) error {
	r.mu.Lock()
	ids := make([]int64, 0, len(r.acked))
	for id := range r.acked {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	if err := r.delete(context.WithoutCancel(ctx), ids); err != nil {
		r.log.Warn("outbox relay: delete of published rows failed; will retry", "rows", len(ids), "err", err)
		return err
	}
	r.mu.Lock()
	for _, id := range ids {
		delete(r.acked, id)
	}
	r.mu.Unlock()
	return nil
}

// load reads up to one batch of the oldest rows with an id above after and
// returns those not acked already, the id of the last row read, and
// whether there may be more rows after it (the batch was full).
func (r *Relay) load(ctx context.Context, after int64) (rows []row, last int64, more bool, err error) {
	rs, err := r.ob.db.In(nil).Query(ctx, `SELECT id, event_id, subject, headers, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?`, after, r.batch)
	if err != nil {
		return nil, 0, false, fmt.Errorf("outbox: load pending: %w", err)
	}
	defer rs.Close()
	// Most loads find a few rows (one per wake-up under steady load):
	// room for the whole batch up front was the relay's largest
	// allocation (80 KB a load); a backlog grows the slice as it reads.
	rows = make([]row, 0, min(r.batch, 16))
	read := 0
	r.mu.Lock()
	defer r.mu.Unlock()
	for rs.Next() {
		var rw row
		if err := rs.Scan(&rw.id, &rw.eventID, &rw.subject, &rw.headers, &rw.payload); err != nil {
			return nil, 0, false, fmt.Errorf("outbox: scan pending: %w", err)
		}
		read++
		last = rw.id
		if _, done := r.acked[rw.id]; !done {
			rows = append(rows, rw)
		}
	}
	if err := rs.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("outbox: load pending: %w", err)
	}
	return rows, last, read == r.batch, nil
}

// delete removes published rows. It runs even when the caller is shutting
// down: the rows are already in the stream, and deleting them now saves a
// (harmless, de-duplicated) second publish after restart.
func (r *Relay) delete(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	var err error
	if first, last := ids[0], ids[len(ids)-1]; last-first+1 == int64(len(ids)) {
		// The usual case: ids ascend without a gap, so every id in the
		// range is one of ours, and a range is far cheaper than binding a
		// list. A gap may be a row whose transaction commits later; it
		// must survive, so gaps take the list below (not kept prepared:
		// its text changes with the list's length).
		_, err = r.ob.db.In(nil).Exec(ctx, `DELETE FROM outbox WHERE id BETWEEN ? AND ?`, first, last)
	} else {
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		q := `DELETE FROM outbox WHERE id IN (?` + strings.Repeat(", ?", len(ids)-1) + `)`
		_, err = r.ob.db.ExecContext(ctx, r.ob.db.Dialect.Rebind(q), args...)
	}
	if err != nil {
		return fmt.Errorf("outbox: delete %d published rows: %w", len(ids), err)
	}
	return nil
}

// setHeaders copies the headers column, written by encodeHeaders, into h.
func setHeaders(h nats.Header, col string) {
	for line := range strings.Lines(col) {
		if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ": "); ok && k != "" {
			h.Add(k, v)
		}
	}
}
