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
	// failed is applied again one message at a time — so it must not keep
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
// After, then any follow-up Work the same way. Tests and tools (choreo
// replay) use it; ob may be nil for work that needs no database.
func HandleOne(ctx context.Context, ob *outbox.Outbox, h Handler, m *Message) error {
	w, err := h(ctx, m)
	if m.ID != "" {
		ctx = events.WithCause(ctx, m.ID)
	}
	for step := 0; err == nil && !w.Empty(); step++ {
		if step == maxFollowUps {
			return events.Permanent(fmt.Errorf("consumer: more than %d follow-ups for one message", maxFollowUps))
		}
		applied := true
		if w.needsDB() {
			if ob == nil {
				return errNoOutbox
			}
			if applied, err = inbox.Apply(ctx, ob, w.Key, inbox.Fn(w.Apply)); err != nil {
				return err
			}
			if applied && w.Committed != nil {
				w.Committed(ctx)
			}
		}
		if w.After == nil {
			return nil
		}
		w, err = w.After(ctx, applied)
	}
	return err
}
