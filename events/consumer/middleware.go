package consumer

import (
	"context"
	"log/slog"
	"time"

	"github.com/choreo-dev/choreo/events"
)

// Result is what became of a message.
type Result string

const (
	// Handled: its work committed (or it had none) and it was acked.
	Handled Result = "handled"
	// Duplicate: the inbox showed it had been handled before; it was
	// acked and changed nothing.
	Duplicate Result = "duplicate"
	// Retried: it failed and was nak'ed; it comes back after a back-off.
	Retried Result = "retried"
	// DeadLettered: it failed for good (a Permanent error, or its last
	// delivery) and was published to the dead-letter queue.
	DeadLettered Result = "dead_lettered"
)

// Outcome is how the handling of one delivery ended.
type Outcome struct {
	Result Result
	// Err is why a message was retried or dead-lettered.
	Err error
	// RetryIn is how long a retried message waits before it comes back.
	RetryIn time.Duration
}

// Middleware wraps the handling of every message, in one place for every
// handler: tracing, metrics, logging. The runner calls it when a message
// arrives, before its route decodes it; the context it returns is the one
// the message is handled in (with a span, say), and the runner calls done
// once with the outcome, after the message was acked, nak'ed or
// dead-lettered. By then the route has filled m's Route, ID, Type and Key
// (unless the message could not be decoded).
type Middleware func(ctx context.Context, m *Message) (_ context.Context, done func(Outcome))

// LogOutcomes is a Middleware that logs what became of every message: a
// handled message or a duplicate at debug level, a retry as a warning, a
// dead letter as an error. Records are logged in the message's context,
// so a handler that reads it (see MessageFrom) can add the message's
// identity and its trace; this one adds the delivery, the outcome and how
// long the handling took, as a readable duration.
func LogOutcomes(log *slog.Logger) Middleware {
	return func(ctx context.Context, m *Message) (context.Context, func(Outcome)) {
		start := time.Now()
		return ctx, func(o Outcome) {
			level, msg := slog.LevelDebug, "consumer: handled"
			switch o.Result {
			case Duplicate:
				msg = "consumer: duplicate, already handled"
			case Retried:
				level, msg = slog.LevelWarn, "consumer: handling failed, will retry"
				if events.KindOf(o.Err) == events.KindEarly {
					// Streams interleave: a message ahead of what it
					// follows is expected, not a failure. It says so only
					// if it keeps waiting (then it is a warning again).
					level, msg = slog.LevelDebug, "consumer: came before what it follows, will retry"
					if m.Delivered >= earlyWarnAfter {
						level = slog.LevelWarn
					}
				}
			case DeadLettered:
				level, msg = slog.LevelError, "consumer: dead-lettered"
			}
			if !log.Enabled(ctx, level) {
				return
			}
			attrs := []slog.Attr{
				slog.String("outcome", string(o.Result)),
				slog.Uint64("delivered", m.Delivered),
				slog.String("took", time.Since(start).String()),
			}
			if o.Err != nil {
				attrs = append(attrs, slog.String("err", o.Err.Error()))
			}
			if o.Result == Retried {
				attrs = append(attrs, slog.String("retry_in", o.RetryIn.String()))
			}
			log.LogAttrs(ctx, level, msg, attrs...)
		}
	}
}

// earlyWarnAfter is the delivery from which a message still waiting for
// what it follows is logged as a warning: by then it has waited over a
// second (EarlyBackoff's default), longer than streams interleave.
const earlyWarnAfter = 8

// MessageAttrs are the attributes that say which message a log record is
// about: its subject, stream position and consumer, its id and what it is
// about (order id, SKU) once decoded. A log handler adds them to records
// logged in a message's context (see MessageFrom).
func MessageAttrs(m *Message) []slog.Attr {
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String("subject", m.Subject),
		slog.String("stream", m.Stream),
		slog.Uint64("seq", m.Sequence),
		slog.String("consumer", m.Consumer))
	if m.ID != "" {
		attrs = append(attrs, slog.String("event_id", m.ID))
	}
	if m.Key != "" {
		name := m.KeyName
		if name == "" {
			name = "key"
		}
		attrs = append(attrs, slog.String(name, m.Key))
	}
	return attrs
}
