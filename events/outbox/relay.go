package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

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
// Rows are published asynchronously in batches with Nats-Msg-Id set to the
// event id, and deleted only after the server has acked them; a row whose
// publish failed, or whose ack never came, stays and is sent again after a
// back-off. Sending a row twice is harmless: the stream's duplicate window
// drops the second copy. A broker error never marks a row as failed.
type Relay struct {
	ob         *Outbox
	js         jetstream.JetStream
	batch      int
	sweep      time.Duration
	ackTimeout time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	log        *slog.Logger
}

// NewRelay returns a relay for ob publishing through js.
func NewRelay(ob *Outbox, js jetstream.JetStream, opts ...Option) (*Relay, error) {
	r := &Relay{
		ob:         ob,
		js:         js,
		batch:      256,
		sweep:      time.Second,
		ackTimeout: 5 * time.Second,
		backoffMin: 50 * time.Millisecond,
		backoffMax: 5 * time.Second,
		log:        slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if err := opt(r); err != nil {
			return nil, err
		}
	}
	if ob == nil || js == nil {
		return nil, fmt.Errorf("%w: nil outbox or jetstream", ErrInvalidOption)
	}
	return r, nil
}

// Run publishes until ctx is cancelled, then returns nil. Before returning
// it makes one last attempt to flush what is pending, bounded by the ack
// timeout, so a clean shutdown leaves as little as possible behind.
func (r *Relay) Run(ctx context.Context) error {
	sweep := time.NewTicker(r.sweep)
	defer sweep.Stop()
	failures := 0
	for {
		_, err := r.drain(ctx)
		switch {
		case ctx.Err() != nil:
			r.flush()
			return nil
		case err != nil:
			failures++
			pause := r.backoff(failures)
			r.log.Warn("outbox relay: publish failed, will retry", "err", err, "retry_in", pause, "failures", failures)
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			continue
		}
		failures = 0
		select {
		case <-ctx.Done():
		case <-r.ob.wake:
		case <-sweep.C:
		}
	}
}

func (r *Relay) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), r.ackTimeout)
	defer cancel()
	_, _ = r.drain(ctx)
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

// maxInFlight bounds the rows published and not yet settled while the
// relay drains a backlog (at least one batch). It keeps the relay well
// under the JetStream client's limit of pending asynchronous publishes
// (4000 by default), beyond which publishing stalls.
const maxInFlight = 1024

// PublishPending publishes one batch of the oldest rows and deletes those
// the server acked. It returns how many rows it found. An error means some
// rows stay for a later attempt; none is lost.
func (r *Relay) PublishPending(ctx context.Context) (int, error) {
	rows, err := r.load(ctx, 0)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	return len(rows), r.settle(ctx, r.send(rows))
}

// drain publishes everything pending, oldest first, and returns how many
// rows it found. It is a two-stage pipeline: this goroutine loads and
// publishes batches while a second one waits for their acks and deletes
// them, in order. Without it the relay would alternate between the
// database and the broker, each idle while the other works, and drain a
// backlog at a fraction of the broker's asynchronous publish rate. On the
// first error no new batch is started; those already published are still
// settled, then the error is returned.
func (r *Relay) drain(ctx context.Context) (int, error) {
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
	go func() {
		defer close(settled)
		for b := range queue {
			if err := r.settle(ctx, b); err != nil {
				fail(err)
			}
		}
	}()
	var (
		total int
		after int64 // the highest id loaded so far
	)
	for !failed.Load() {
		rows, err := r.load(ctx, after)
		if err != nil {
			fail(err)
			break
		}
		total += len(rows)
		if len(rows) == 0 {
			break
		}
		after = rows[len(rows)-1].id
		b := r.send(rows)
		queue <- b
		if b.err != nil || len(rows) < r.batch {
			break // settle reports b.err
		}
	}
	close(queue)
	<-settled
	mu.Lock()
	defer mu.Unlock()
	return total, firstErr
}

// batch is a set of rows published and waiting for their acks.
type batch struct {
	rows     []row
	acks     []jetstream.PubAckFuture // nil from the first row that failed to publish
	deadline time.Time                // the acks are given up on after it
	err      error                    // the publish error, if any
}

// send publishes rows asynchronously, stopping at the first failure.
func (r *Relay) send(rows []row) *batch {
	b := &batch{rows: rows, acks: make([]jetstream.PubAckFuture, len(rows))}
	for i, rw := range rows {
		msg := nats.NewMsg(rw.subject)
		msg.Data = rw.payload
		setHeaders(msg.Header, rw.headers)
		msg.Header.Set(jetstream.MsgIDHeader, rw.eventID)
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

// settle waits for the acks of b until its deadline and deletes the rows
// the server acked. The error reports the rows that stay.
func (r *Relay) settle(ctx context.Context, b *batch) error {
	deadline := time.NewTimer(time.Until(b.deadline))
	defer deadline.Stop()
	firstErr := b.err
	acked := make([]int64, 0, len(b.rows))
wait:
	for i, f := range b.acks {
		if f == nil {
			break
		}
		select {
		case <-f.Ok():
			acked = append(acked, b.rows[i].id)
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("outbox: publish %s to %s: %w", b.rows[i].eventID, b.rows[i].subject, err)
			}
		case <-deadline.C:
			if firstErr == nil {
				firstErr = fmt.Errorf("outbox: no ack within %s for %d events", r.ackTimeout, len(b.rows)-i)
			}
			break wait
		}
	}
	if err := r.delete(context.WithoutCancel(ctx), acked); err != nil {
		return err
	}
	return firstErr
}

// load returns up to one batch of the oldest rows with an id above after.
func (r *Relay) load(ctx context.Context, after int64) ([]row, error) {
	rs, err := r.ob.db.In(nil).Query(ctx, `SELECT id, event_id, subject, headers, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?`, after, r.batch)
	if err != nil {
		return nil, fmt.Errorf("outbox: load pending: %w", err)
	}
	defer rs.Close()
	out := make([]row, 0, r.batch)
	for rs.Next() {
		var rw row
		if err := rs.Scan(&rw.id, &rw.eventID, &rw.subject, &rw.headers, &rw.payload); err != nil {
			return nil, fmt.Errorf("outbox: scan pending: %w", err)
		}
		out = append(out, rw)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("outbox: load pending: %w", err)
	}
	return out, nil
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
