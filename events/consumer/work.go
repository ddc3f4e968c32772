package consumer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
)

// Work is what a handler decided to do with one message. The runner
// carries it out: it claims Key in the inbox and runs Apply inside one
// transaction of the service's database — together with the Work of other
// messages fetched at the same time, when batching is on — adds the
// events Apply returns to the outbox in that transaction, commits, and
// only then runs After and acknowledges the message.
type Work struct {
	// Key is the message's inbox claim. A message whose claim is already
	// held was handled before: Apply is skipped and changes nothing. An
	// empty EventID takes no claim.
	Key inbox.Key
	// Apply changes the service's state inside tx and returns the events
	// the change publishes. It may run more than once — a batch that
	// failed is applied again without the message that failed, and that
	// one alone — so it must not keep
	// state from an earlier run, and it must do all its reads and writes
	// through tx. nil: no state change.
	Apply func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error)
	// Committed runs right after Apply's transaction committed (not for
	// a duplicate, whose Apply was skipped), on the runner's goroutine,
	// with the message's context: the place for quick bookkeeping about
	// what Apply's last, committed run decided — a metric, a log record.
	// It must not block. nil: nothing.
	Committed func(ctx context.Context)
	// After runs once Apply's transaction has committed (applied true),
	// or when the inbox showed the message had been handled before
	// (applied false): the place for calls outside the database — a
	// payment provider, an email server — that a redelivery must be able
	// to finish after a crash. Its error is the message's error. nil:
	// nothing to do.
	//
	// It may return more work: a change that records what the call
	// learnt (the provider's answer, say). The runner applies it in one
	// transaction with the follow-ups of the other messages of the batch,
	// then runs its After, and so on, before it acknowledges the message.
	// Follow-ups usually take no inbox claim: the message's claim was
	// taken by the first Work.
	After func(ctx context.Context, applied bool) (Work, error)
}

// Empty reports whether w has nothing to do.
func (w Work) Empty() bool { return w.Key.EventID == "" && w.Apply == nil && w.After == nil }

// needsDB reports whether w claims or changes anything in the database.
func (w Work) needsDB() bool { return w.Key.EventID != "" || w.Apply != nil }

// Handler decides what to do with a message: it decodes and checks it and
// returns the Work that handles it. It does no I/O of its own; the runner
// carries the Work out. An error is the message's outcome: a Permanent one
// (see package events) dead-letters it, any other is retried.
type Handler func(ctx context.Context, m *Message) (Work, error)

// HandlerFunc adapts a function that handles a message entirely by itself
// (no database, no inbox) to a Handler: the function runs as the Work's
// After.
func HandlerFunc(f func(ctx context.Context, m *Message) error) Handler {
	return func(_ context.Context, m *Message) (Work, error) {
		return Work{After: func(ctx context.Context, _ bool) (Work, error) { return Work{}, f(ctx, m) }}, nil
	}
}

// maxFollowUps bounds the chain of follow-up Work one message may cause:
// a handler that keeps returning more is a bug, not a saga.
const maxFollowUps = 8

// errNoOutbox is the failure of database work with nowhere to apply it.
var errNoOutbox = events.Permanent(errors.New("consumer: the handler returned work for a database, and there is no outbox"))

// HandleOne handles one message to the end, the way the consumer does but
// one transaction at a time and without acking anything: h decides, the
// Work's claim and Apply run in one transaction of ob's database, then its
// After, then any follow-up Work the same way. Tests use it; ob may be nil
// for work that needs no database. HandleOffline does the same and also
// says what the consumer would have made of the message.
func HandleOne(ctx context.Context, ob *outbox.Outbox, h Handler, m *Message) error {
	_, err := handleOne(ctx, ob, h, m)
	return err
}

// HandleOffline handles one message as a consumer configured by cfg
// handles its delivery number m.Delivered (0 is taken for the first):
// cfg's Middleware around it, cfg.Handler deciding, the Work applied in
// cfg.Outbox's database one transaction at a time, follow-ups included.
// It returns the Outcome the runner would settle the message with:
// Duplicate when the inbox showed it had been handled before, Retried or
// DeadLettered by the same rules as the runner (a panic is a permanent
// failure). No server is involved, so nothing is acked, nak'ed or
// published to the dead-letter queue: a Retried or DeadLettered outcome
// says what would have happened. Tools that re-run a service's handlers
// on past messages (choreo replay) use it.
func HandleOffline(ctx context.Context, cfg Config, m *Message) Outcome {
	cfg.setDefaults()
	if m.Delivered == 0 {
		m.Delivered = 1
	}
	ctx = WithMessage(ctx, m)
	var done []func(Outcome)
	for _, mw := range cfg.Middleware {
		var d func(Outcome)
		if ctx, d = mw(ctx, m); d != nil {
			done = append(done, d)
		}
	}
	var duplicate bool
	err := safe(func() (err error) {
		duplicate, err = handleOne(ctx, cfg.Outbox, cfg.Handler, m)
		return err
	})
	o := cfg.verdict(m, err)
	if o.Result == Handled && duplicate {
		o.Result = Duplicate
	}
	for i := len(done) - 1; i >= 0; i-- {
		done[i](o)
	}
	return o
}

// handleOne is HandleOne; duplicate reports that the inbox already held
// the claim of the handler's own Work, as the runner counts a duplicate.
func handleOne(ctx context.Context, ob *outbox.Outbox, h Handler, m *Message) (duplicate bool, err error) {
	w, err := h(ctx, m)
	if m.ID != "" {
		ctx = events.WithCause(ctx, m.ID)
	}
	for step := 0; err == nil && !w.Empty(); step++ {
		if step == maxFollowUps {
			return duplicate, events.Permanent(fmt.Errorf("consumer: more than %d follow-ups for one message", maxFollowUps))
		}
		applied := true
		if w.needsDB() {
			if ob == nil {
				return duplicate, errNoOutbox
			}
			if applied, err = inbox.Apply(ctx, ob, w.Key, inbox.Fn(w.Apply)); err != nil {
				return duplicate, err
			}
			if step == 0 && !applied && w.Key.EventID != "" {
				duplicate = true
			}
			if applied && w.Committed != nil {
				w.Committed(ctx)
			}
		}
		if w.After == nil {
			return duplicate, nil
		}
		w, err = w.After(ctx, applied)
	}
	return duplicate, err
}
