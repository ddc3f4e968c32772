package consumer_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// outcomes records what a middleware was told, by message subject.
type outcomes struct {
	mu     sync.Mutex
	begun  map[string]int
	ended  map[string][]consumer.Result
	routes map[string]string
	inCtx  map[string]bool // the handler's context carried the message
}

func (o *outcomes) middleware(ctx context.Context, m *consumer.Message) (context.Context, func(consumer.Outcome)) {
	o.mu.Lock()
	o.begun[m.Subject]++
	o.mu.Unlock()
	return ctx, func(out consumer.Outcome) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.ended[m.Subject] = append(o.ended[m.Subject], out.Result)
		o.routes[m.Subject] = m.Route
	}
}

func (o *outcomes) snapshot() (map[string]int, map[string][]consumer.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	begun := map[string]int{}
	ended := map[string][]consumer.Result{}
	for k, v := range o.begun {
		begun[k] = v
	}
	for k, v := range o.ended {
		ended[k] = append([]consumer.Result(nil), v...)
	}
	return begun, ended
}

// Every delivery passes through the middleware once, from its arrival to
// its outcome: handled, duplicate (the inbox had it), retried, dead-lettered.
func TestMiddlewareSeesEveryDeliveryAndItsOutcome(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b sqltest.Backend) {
		f := mustFixture(t)
		s := mustStore(t, b)
		// t.ok.1 twice (a duplicate), t.flaky.1 fails once then works,
		// t.poison.1 fails for good.
		mustPublish(t, f.js, "t.ok.1", "ok", nil)
		mustPublish(t, f.js, "t.ok.1", "ok", nil)
		mustPublish(t, f.js, "t.flaky.1", "flaky", nil)
		mustPublish(t, f.js, "t.poison.1", "poison", nil)

		rec := &outcomes{begun: map[string]int{}, ended: map[string][]consumer.Result{}, routes: map[string]string{}, inCtx: map[string]bool{}}
		var logs bytes.Buffer
		var logMu sync.Mutex
		logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))

		var flakyOnce sync.Once
		r := consumer.NewRouter("svc")
		consumer.Route(r, "t.*.*", func(m *consumer.Message) (string, error) {
			m.ID, m.Key, m.KeyName = string(m.Data)+"-id", "1", "thing_id"
			return string(m.Data), nil
		}, func(ctx context.Context, m *consumer.Message, body string) (consumer.Work, error) {
			rec.mu.Lock()
			rec.inCtx[m.Subject] = consumer.MessageFrom(ctx) == m
			rec.mu.Unlock()
			switch body {
			case "poison":
				return consumer.Work{}, events.Permanent(errors.New("cannot be handled"))
			case "flaky":
				var err error
				flakyOnce.Do(func() { err = errors.New("not yet") })
				if err != nil {
					return consumer.Work{}, err
				}
			}
			return consumer.Work{
				Key:   inbox.Key{Consumer: "svc", EventID: body},
				Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) { return s.Increment(body)(ctx, tx) },
			}, nil
		})
		cfg := config()
		cfg.Batch = 8
		cfg.Outbox = s.Outbox
		cfg.Handler = r.Handle
		cfg.Middleware = []consumer.Middleware{rec.middleware, consumer.LogOutcomes(logger)}
		mustStartHandler(t, f.js, cfg)
		waitSettled(t, f.js, "T", "svc")
		waitFor(t, "every outcome", func() bool {
			_, ended := rec.snapshot()
			return len(ended["t.ok.1"]) == 2 && len(ended["t.flaky.1"]) == 2 && len(ended["t.poison.1"]) == 1
		})

		begun, ended := rec.snapshot()
		want := map[string][]consumer.Result{
			"t.ok.1":     {consumer.Handled, consumer.Duplicate},
			"t.flaky.1":  {consumer.Retried, consumer.Handled},
			"t.poison.1": {consumer.DeadLettered},
		}
		if len(ended) != len(want) {
			t.Errorf("outcomes for %d subjects, want %d: %v", len(ended), len(want), ended)
		}
		for subject, results := range want {
			if got := ended[subject]; !equalResults(got, results) {
				t.Errorf("%s: outcomes %v, want %v", subject, got, results)
			}
			if begun[subject] != len(results) {
				t.Errorf("%s: begun %d times, want %d (once per delivery)", subject, begun[subject], len(results))
			}
			if rec.routes[subject] != "t.*.*" {
				t.Errorf("%s: route %q at the end, want t.*.*", subject, rec.routes[subject])
			}
			if !rec.inCtx[subject] {
				t.Errorf("%s: the handler's context does not carry the message", subject)
			}
		}

		logMu.Lock()
		out := logs.String()
		logMu.Unlock()
		for _, line := range []string{"outcome=handled", "outcome=duplicate", "outcome=retried", "outcome=dead_lettered", "retry_in=", "took="} {
			if !strings.Contains(out, line) {
				t.Errorf("logs lack %q:\n%s", line, out)
			}
		}
	})
}

func equalResults(a, b []consumer.Result) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
