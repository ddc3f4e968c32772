package consumer_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// HandleOffline says what the runner would have made of a message, with
// no server: handled, a duplicate the inbox already held, retried or
// dead-lettered — and its middleware is told the same.
func TestHandleOfflineReportsTheOutcome(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b sqltest.Backend) {
		s := mustStore(t, b)
		ctx := context.Background()
		cfg := config()
		cfg.Outbox = s.Outbox
		cfg.Handler = func(_ context.Context, m *consumer.Message) (consumer.Work, error) {
			switch body := string(m.Data); body {
			case "poison":
				return consumer.Work{}, events.Permanent(errors.New("cannot be handled"))
			case "flaky":
				return consumer.Work{}, errors.New("not yet")
			case "down":
				return consumer.Work{}, events.Unavailable(errors.New("dependency down"))
			case "early":
				return consumer.Work{}, events.Early(errors.New("what it follows has not come"))
			case "panic":
				panic("handler bug")
			default:
				return consumer.Work{
					Key:   inbox.Key{Consumer: "svc", EventID: body},
					Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) { return s.Increment(body)(ctx, tx) },
					// Work after the commit runs for a duplicate too; it
					// must not hide that the message was one.
					After: func(context.Context, bool) (consumer.Work, error) { return consumer.Work{}, nil },
				}, nil
			}
		}
		var told []consumer.Result
		cfg.Middleware = []consumer.Middleware{func(ctx context.Context, m *consumer.Message) (context.Context, func(consumer.Outcome)) {
			return ctx, func(o consumer.Outcome) { told = append(told, o.Result) }
		}}
		for _, tc := range []struct {
			body      string
			delivered uint64
			age       time.Duration // since the stream stored it
			want      consumer.Result
		}{
			{"ok", 0, 0, consumer.Handled},
			{"ok", 0, 0, consumer.Duplicate},
			{"flaky", 1, 0, consumer.Retried},
			{"flaky", 3, 0, consumer.DeadLettered},         // MaxDeliver is 3
			{"down", 3, 0, consumer.Retried},               // an outage is never dead-lettered
			{"early", 30, time.Second, consumer.Retried},   // within the reorder wait, however many deliveries
			{"early", 1, time.Hour, consumer.DeadLettered}, // past it, even on its first
			{"poison", 1, 0, consumer.DeadLettered},
			{"panic", 1, 0, consumer.DeadLettered},
		} {
			m := &consumer.Message{Subject: "t." + tc.body, Data: []byte(tc.body), Stream: "T", Delivered: tc.delivered}
			if tc.age > 0 {
				m.Time = time.Now().Add(-tc.age)
			}
			if got := consumer.HandleOffline(ctx, cfg, m); got.Result != tc.want {
				t.Errorf("%s (delivery %d): outcome %s (%v), want %s", tc.body, tc.delivered, got.Result, got.Err, tc.want)
			}
		}
		if got := s.Counters(t)["ok"]; got != 1 {
			t.Errorf("counter ok = %d, want 1: a duplicate changes nothing", got)
		}
		if len(told) != 9 || told[1] != consumer.Duplicate {
			t.Errorf("middleware told %v, want the 9 outcomes, the second a duplicate", told)
		}
	})
}
