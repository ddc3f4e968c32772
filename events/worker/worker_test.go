package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/events/streams"
	"github.com/choreo-dev/choreo/events/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitTimeout = 20 * time.Second

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type fixture struct {
	js jetstream.JetStream
	db *sqldb.DB
	ob *outbox.Outbox
}

func mustFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	err := streams.Ensure(ctx, js, []streams.Spec{
		{Name: "IN", Subjects: []string{"in.>"}},
		{Name: "OUT", Subjects: []string{"out.>"}},
		{Name: "DLQ", Subjects: []string{"dlq.>"}},
	}, streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := sqltest.MustOpen(t, sqltest.SQLiteURL(t))
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return &fixture{js: js, db: db, ob: outbox.New(db)}
}

// handler counts each input once and answers with one event per input.
func (f *fixture) handler(_ context.Context, m *consumer.Message) (consumer.Work, error) {
	id := string(m.Data) // the input's event id
	return consumer.Work{
		Key: inbox.Key{Consumer: "svc", EventID: id},
		Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
			_, err := tx.ExecContext(ctx, `INSERT INTO counters (key, value) VALUES ('k', 1)
				ON CONFLICT (key) DO UPDATE SET value = counters.value + 1`)
			return []events.Outgoing{{
				ID:      events.DerivedID(id, "done"),
				Subject: "out.done." + id,
				Type:    "choreo.test.done.v1",
				Source:  "choreo/test",
				Data:    map[string]string{"input": id},
			}}, err
		},
	}, nil
}

func (f *fixture) counter(t testing.TB) int {
	t.Helper()
	var v int
	err := f.db.QueryRowContext(context.Background(), `SELECT value FROM counters WHERE key = 'k'`).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return v
}

func consumerConfig(h consumer.Handler) consumer.Config {
	return consumer.Config{
		Sources:    []consumer.Source{{Stream: "IN", Durable: "svc"}},
		Handler:    h,
		DLQSubject: "dlq.svc",
		Backoff:    func(int) time.Duration { return 10 * time.Millisecond },
		Batch:      16,
	}
}

func TestWorkerConsumesAndRelays(t *testing.T) {
	f := mustFixture(t)
	w, err := worker.Start(context.Background(), worker.Config{
		JS:           f.js,
		Outbox:       f.ob,
		Consumer:     consumerConfig(f.handler),
		RelayOptions: []outbox.Option{outbox.WithSweep(time.Hour)},
	})
	if err != nil {
		t.Fatalf("worker.Start: %v", err)
	}
	defer w.Stop()

	// Five inputs, each delivered twice (a redelivery, a replay): the
	// inbox applies each once.
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c", "d", "e", "a", "b", "c", "d", "e"} {
		if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: "in.happened." + id, Data: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := f.js.Stream(ctx, "OUT")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "five answers in OUT", func() bool {
		info, err := out.Info(ctx)
		return err == nil && info.State.Msgs == 5
	})
	waitFor(t, "every input handled", func() bool {
		c, err := f.js.Consumer(ctx, "IN", "svc")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if got := f.counter(t); got != 5 {
		t.Errorf("counter: got %d, want 5 (each input applied once)", got)
	}
	w.Stop()
	w.Stop() // harmless
	if n, _, err := f.ob.Backlog(ctx); err != nil || n != 0 {
		t.Errorf("backlog after Stop: got (%d, %v), want (0, nil)", n, err)
	}
	if info, err := out.Info(ctx); err != nil || info.State.Msgs != 5 {
		t.Errorf("answers: got %v (err %v), want 5 (one per input)", info.State.Msgs, err)
	}
}

func TestWorkerStopDrainsInFlightThenFlushes(t *testing.T) {
	f := mustFixture(t)
	started := make(chan struct{})
	release := make(chan struct{})
	w, err := worker.Start(context.Background(), worker.Config{
		JS:     f.js,
		Outbox: f.ob,
		Consumer: consumerConfig(func(ctx context.Context, m *consumer.Message) (consumer.Work, error) {
			close(started)
			<-release
			return f.handler(ctx, m)
		}),
		// No sweep: the wake-up after the last commit, or the relay's
		// final flush on Stop, must publish what the last handler wrote.
		RelayOptions: []outbox.Option{outbox.WithSweep(time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: "in.happened.x", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("handler never called")
	}
	stopped := make(chan struct{})
	go func() { w.Stop(); close(stopped) }()
	close(release)
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("Stop did not return")
	}
	if got := f.counter(t); got != 1 {
		t.Errorf("counter: got %d, want 1 (the in-flight message finished)", got)
	}
	if n, _, err := f.ob.Backlog(ctx); err != nil || n != 0 {
		t.Errorf("backlog after Stop: got (%d, %v), want (0, nil): the relay flushes what the last handler wrote", n, err)
	}
}

func TestWorkerStartFailureStopsWhatStarted(t *testing.T) {
	f := mustFixture(t)
	bad := consumerConfig(f.handler)
	bad.Sources = append(bad.Sources, consumer.Source{Stream: "NOPE", Durable: "svc"})
	w, err := worker.Start(context.Background(), worker.Config{
		JS:       f.js,
		Outbox:   f.ob,
		Consumer: bad,
	})
	if err == nil {
		w.Stop()
		t.Fatal("Start with a consumer on a missing stream: got nil error, want one")
	}
	// goleak in TestMain checks that the relay and the first consumer
	// stopped.
	if _, err := worker.Start(context.Background(), worker.Config{JS: f.js}); err == nil {
		t.Error("Start without an outbox: got nil error, want one")
	}
}

// A worker forgets inbox claims past its retention, and only those.
func TestWorkerForgetsOldInboxClaims(t *testing.T) {
	f := mustFixture(t)
	ctx := context.Background()
	now := time.Now()
	for id, at := range map[string]time.Time{"old": now.Add(-2 * time.Hour), "young": now.Add(-time.Minute)} {
		if _, err := f.db.ExecContext(ctx, `INSERT INTO inbox (consumer, event_id, claimed_unix_ms) VALUES ('svc', ?, ?)`, id, at.UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	w, err := worker.Start(ctx, worker.Config{
		JS: f.js, Outbox: f.ob, Consumer: consumerConfig(f.handler),
		InboxRetention: time.Hour, PruneEvery: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	claims := func() []string {
		rows, err := f.db.QueryContext(ctx, `SELECT event_id FROM inbox ORDER BY event_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			ids = append(ids, id)
		}
		return ids
	}
	waitFor(t, "the old claim to be forgotten", func() bool { return len(claims()) == 1 })
	if got := claims(); got[0] != "young" {
		t.Errorf("claims left: got %v, want [young]", got)
	}
}

// A worker runs its tasks on their period until it stops.
func TestWorkerRunsTasks(t *testing.T) {
	f := mustFixture(t)
	runs := make(chan struct{}, 100)
	w, err := worker.Start(context.Background(), worker.Config{
		JS: f.js, Outbox: f.ob, Consumer: consumerConfig(f.handler),
		Tasks: []worker.Task{{Name: "tick", Every: 5 * time.Millisecond, Run: func(context.Context) error {
			runs <- struct{}{}
			return errors.New("failing runs are run again")
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-runs:
		case <-time.After(waitTimeout):
			t.Fatal("the task did not run three times")
		}
	}
	w.Stop() // goleak in TestMain checks the task stopped
	if _, err := worker.Start(context.Background(), worker.Config{JS: f.js, Outbox: f.ob, Consumer: consumerConfig(f.handler),
		Tasks: []worker.Task{{Name: "no period", Run: func(context.Context) error { return nil }}}}); err == nil {
		t.Error("Start with a task without a period: got nil error, want one")
	}
}
