package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/events/streams"
)

// waitTimeout bounds every wait for something to happen. Nothing is
// asserted about how long it takes; the bound only turns a hang into a
// failure.
const waitTimeout = 20 * time.Second

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// fixture is one service's outbox and an embedded JetStream server with a
// TEST stream capturing "test.>".
type fixture struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	db  *sqldb.DB
	ob  *outbox.Outbox
}

func mustFixture(t testing.TB, b sqltest.Backend) *fixture {
	t.Helper()
	f := &fixture{srv: natstest.Start(t)}
	f.nc, f.js = natstest.Connect(t, f.srv.URL)
	mustStream(t, f.js, "TEST", "test.>")
	f.db = b.Open(t)
	if err := outbox.Migrate(context.Background(), f.db); err != nil {
		t.Fatalf("outbox.Migrate: %v", err)
	}
	f.ob = outbox.New(f.db)
	return f
}

func mustStream(t testing.TB, js jetstream.JetStream, name string, subjects ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := streams.Ensure(ctx, js, []streams.Spec{{Name: name, Subjects: subjects}}, streams.Options{}); err != nil {
		t.Fatalf("streams.Ensure %s: %v", name, err)
	}
}

func testEvent(prefix string, i int) events.Outgoing {
	return events.Outgoing{
		ID:      fmt.Sprintf("%s-%04d", prefix, i),
		Subject: fmt.Sprintf("test.happened.%s-%d", prefix, i),
		Type:    "choreo.test.happened.v1",
		Source:  "choreo/test",
		Data:    map[string]int{"n": i},
	}
}

// mustAdd commits n events in one transaction, without waking any relay.
func (f *fixture) mustAdd(t testing.TB, prefix string, from, n int) []events.Outgoing {
	t.Helper()
	evts := make([]events.Outgoing, n)
	for i := range evts {
		evts[i] = testEvent(prefix, from+i)
	}
	// Written in a trace: each event carries it (with no tracer
	// installed, as it came).
	ctx := events.ExtractTrace(context.Background(), nats.Header{events.HeaderTraceParent: {traceParent}})
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		return f.ob.Add(ctx, tx, evts...)
	})
	if err != nil {
		t.Fatalf("outbox.Add: %v", err)
	}
	return evts
}

func (f *fixture) backlog(t testing.TB) int {
	t.Helper()
	n, _, err := f.ob.Backlog(context.Background())
	if err != nil {
		t.Fatalf("Backlog: %v", err)
	}
	return n
}

func mustRelay(t testing.TB, f *fixture, opts ...outbox.Option) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(f.ob, f.js, opts...)
	if err != nil {
		t.Fatalf("NewRelay: %v", err)
	}
	return r
}

// runRelay runs r until the test ends, and then waits for Run to return.
func runRelay(t testing.TB, r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v, want nil after cancel", err)
		}
	})
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
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

func streamInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
}

// streamMsgs returns every message stored in the stream, in order.
func streamMsgs(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream %s seq %d: %v", name, seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// mustSeeEachOnce checks the stream holds exactly one message per event.
func mustSeeEachOnce(t testing.TB, js jetstream.JetStream, stream string, evts []events.Outgoing) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range streamMsgs(t, js, stream) {
		seen[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	for _, e := range evts {
		if seen[e.ID] != 1 {
			t.Errorf("event %s in stream %s: got %d copies, want 1", e.ID, stream, seen[e.ID])
		}
		delete(seen, e.ID)
	}
	for id, n := range seen {
		t.Errorf("stream %s: got %d unexpected message(s) with id %q, want none", stream, n, id)
	}
}

func TestNewRelayOptions(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	bad := map[string]outbox.Option{
		"ZeroBatch":        outbox.WithBatch(0),
		"ZeroSweep":        outbox.WithSweep(0),
		"NegativeAck":      outbox.WithAckTimeout(-time.Second),
		"BackoffMaxBelow":  outbox.WithBackoff(time.Second, time.Millisecond),
		"ZeroBackoff":      outbox.WithBackoff(0, time.Second),
		"NilLogger":        outbox.WithLogger(nil),
		"NegativeBatch":    outbox.WithBatch(-1),
		"NegativeSweep":    outbox.WithSweep(-time.Second),
		"ZeroAckTimeout":   outbox.WithAckTimeout(0),
		"NegativeBackoffs": outbox.WithBackoff(-1, -1),
	}
	for name, opt := range bad {
		if _, err := outbox.NewRelay(f.ob, f.js, opt); !errors.Is(err, outbox.ErrInvalidOption) {
			t.Errorf("%s: got %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := outbox.NewRelay(nil, f.js); !errors.Is(err, outbox.ErrInvalidOption) {
		t.Errorf("nil outbox: got %v, want ErrInvalidOption", err)
	}
	if _, err := outbox.NewRelay(f.ob, nil); !errors.Is(err, outbox.ErrInvalidOption) {
		t.Errorf("nil jetstream: got %v, want ErrInvalidOption", err)
	}
	if _, err := outbox.NewRelay(f.ob, f.js, outbox.WithBatch(1), outbox.WithSweep(time.Minute),
		outbox.WithAckTimeout(time.Second), outbox.WithBackoff(time.Millisecond, time.Second),
		outbox.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		t.Errorf("valid options: got %v, want nil", err)
	}
}

func TestRelayPublishesWithHeadersAndDeletesAfterAck(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := mustFixture(t, b)
			evts := f.mustAdd(t, "e", 0, 3)
			r := mustRelay(t, f)
			n, err := r.PublishPending(context.Background())
			if err != nil || n != 3 {
				t.Fatalf("PublishPending: got (%d, %v), want (3, nil)", n, err)
			}
			if got := f.backlog(t); got != 0 {
				t.Errorf("backlog after the acks: got %d, want 0", got)
			}
			msgs := streamMsgs(t, f.js, "TEST")
			if len(msgs) != len(evts) {
				t.Fatalf("stream messages: got %d, want %d", len(msgs), len(evts))
			}
			for i, m := range msgs {
				e := evts[i] // published in the order they were written
				if m.Subject != e.Subject {
					t.Errorf("message %d subject: got %q, want %q", i, m.Subject, e.Subject)
				}
				if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID {
					t.Errorf("message %d Nats-Msg-Id: got %q, want %q", i, got, e.ID)
				}
				if got := m.Header.Get(events.HeaderTraceParent); got != traceParent {
					t.Errorf("message %d traceparent: got %q, want %q", i, got, traceParent)
				}
				// By the CloudEvents NATS binding, a message without it is
				// in binary mode.
				if got := m.Header.Get(events.HeaderContentType); got != events.ContentTypeCloudEventsJSON {
					t.Errorf("message %d Content-Type: got %q, want %q", i, got, events.ContentTypeCloudEventsJSON)
				}
				env, err := events.Decode(m.Data)
				if err != nil {
					t.Fatalf("message %d: got %v decoding %s, want a CloudEvent", i, err, m.Data)
				}
				if env.ID != e.ID || env.Type != e.Type || env.Source != e.Source {
					t.Errorf("message %d envelope: got id %q type %q source %q, want %q %q %q",
						i, env.ID, env.Type, env.Source, e.ID, e.Type, e.Source)
				}
			}
			n, err = r.PublishPending(context.Background())
			if err != nil || n != 0 {
				t.Errorf("PublishPending with nothing pending: got (%d, %v), want (0, nil)", n, err)
			}
		})
	}
}

func TestRelayWithoutTraceParentSendsNone(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	e := testEvent("e", 0)
	if err := f.db.InTx(context.Background(), func(tx *sql.Tx) error { return f.ob.Add(context.Background(), tx, e) }); err != nil {
		t.Fatal(err)
	}
	if n, err := mustRelay(t, f).PublishPending(context.Background()); err != nil || n != 1 {
		t.Fatalf("PublishPending: got (%d, %v), want (1, nil)", n, err)
	}
	msgs := streamMsgs(t, f.js, "TEST")
	if len(msgs) != 1 {
		t.Fatalf("stream messages: got %d, want 1", len(msgs))
	}
	if got := msgs[0].Header.Values(events.HeaderTraceParent); len(got) != 0 {
		t.Errorf("traceparent header: got %q, want none", got)
	}
}

func TestRelayBatches(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	evts := f.mustAdd(t, "e", 0, 5)
	r := mustRelay(t, f, outbox.WithBatch(2), outbox.WithSweep(time.Hour))
	if n, err := r.PublishPending(context.Background()); err != nil || n != 2 {
		t.Fatalf("PublishPending with batch 2: got (%d, %v), want (2, nil)", n, err)
	}
	if got := f.backlog(t); got != 3 {
		t.Errorf("backlog after one batch: got %d, want 3", got)
	}
	// Run keeps going while batches come back full: no wake-up, no sweep
	// needed for the rest.
	runRelay(t, r)
	waitFor(t, "the backlog to drain", func() bool { return f.backlog(t) == 0 })
	mustSeeEachOnce(t, f.js, "TEST", evts)
}

func TestRelayWokenOnCommit(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	first := f.mustAdd(t, "first", 0, 1)
	// A sweep of an hour: anything published within the test was woken.
	runRelay(t, mustRelay(t, f, outbox.WithSweep(time.Hour)))
	// The first row goes out on the relay's start-up pass; once it is
	// gone the relay is idle, waiting for a wake-up.
	waitFor(t, "the start-up pass", func() bool { return f.backlog(t) == 0 })

	second := f.mustAdd(t, "second", 0, 2)
	f.ob.Notify()
	waitFor(t, "the woken relay to publish", func() bool { return f.backlog(t) == 0 })

	// Notify never blocks, even with nobody listening for a while.
	for range 100 {
		f.ob.Notify()
	}
	third := f.mustAdd(t, "third", 0, 1)
	f.ob.Notify()
	waitFor(t, "the relay to publish after repeated wake-ups", func() bool { return f.backlog(t) == 0 })
	mustSeeEachOnce(t, f.js, "TEST", append(append(first, second...), third...))
}

func TestRelayCrashBetweenCommitAndPublish(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, b)
			// Rows committed while no relay runs: the process died right
			// after its commits.
			evts := f.mustAdd(t, "e", 0, 50)
			// The dead relay had already published the first 20 but was
			// killed before deleting them.
			for _, e := range evts[:20] {
				mustPublishLikeRelay(t, f, e)
			}
			if got := f.backlog(t); got != 50 {
				t.Fatalf("backlog before restart: got %d, want 50", got)
			}

			// A new process starts a relay and a consumer.
			cons, err := f.js.OrderedConsumer(ctx, "TEST", jetstream.OrderedConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			runRelay(t, mustRelay(t, f, outbox.WithBatch(16)))
			waitFor(t, "the backlog to drain", func() bool { return f.backlog(t) == 0 })
			mustConsumeEachOnce(t, cons, evts)

			// The same event ids committed and published again (a replayed
			// transaction after the rows were deleted): the duplicate window
			// drops every copy.
			f.mustAdd(t, "e", 0, 50)
			f.ob.Notify()
			waitFor(t, "the re-published rows to be acked", func() bool { return f.backlog(t) == 0 })
			if got := streamInfo(t, f.js, "TEST").State.Msgs; got != 50 {
				t.Errorf("stream messages after re-publishing: got %d, want 50", got)
			}
			mustSeeEachOnce(t, f.js, "TEST", evts)
		})
	}
}

// mustPublishLikeRelay publishes e as the relay would, bypassing the outbox.
func mustPublishLikeRelay(t testing.TB, f *fixture, e events.Outgoing) {
	t.Helper()
	env, err := e.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := events.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(e.Subject)
	msg.Data = payload
	msg.Header.Set(jetstream.MsgIDHeader, e.ID)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := f.js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publish %s: %v", e.ID, err)
	}
}

// mustConsumeEachOnce reads everything the consumer delivers until it has
// seen every event, failing on a duplicate or a stranger.
func mustConsumeEachOnce(t testing.TB, cons jetstream.Consumer, evts []events.Outgoing) {
	t.Helper()
	want := map[string]bool{}
	for _, e := range evts {
		want[e.ID] = true
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(waitTimeout)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		batch, err := cons.Fetch(len(want), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for m := range batch.Messages() {
			env, err := events.Decode(m.Data())
			if err != nil {
				t.Fatalf("consumed message: %v", err)
			}
			switch {
			case !want[env.ID]:
				t.Errorf("consumed %s: got an event nobody wrote", env.ID)
			case seen[env.ID]:
				t.Errorf("consumed %s: got it twice, want once", env.ID)
			}
			seen[env.ID] = true
		}
	}
	if len(seen) != len(want) {
		t.Errorf("consumed: got %d distinct events, want %d", len(seen), len(want))
	}
}

// countingHandler counts log records whose message contains substr.
type countingHandler struct {
	substr string
	n      atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestRelayBrokerErrorRetries(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	// No stream captures "late.>" yet: every publish fails.
	evts := make([]events.Outgoing, 10)
	for i := range evts {
		evts[i] = testEvent("late", i)
		evts[i].Subject = "late.happened." + strconv.Itoa(i)
	}
	if err := f.db.InTx(context.Background(), func(tx *sql.Tx) error { return f.ob.Add(context.Background(), tx, evts...) }); err != nil {
		t.Fatal(err)
	}
	failures := &countingHandler{substr: "publish failed"}
	runRelay(t, mustRelay(t, f,
		outbox.WithSweep(time.Hour),
		outbox.WithAckTimeout(2*time.Second),
		outbox.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		outbox.WithLogger(slog.New(failures))))

	waitFor(t, "the relay to fail and retry three times", func() bool { return failures.n.Load() >= 3 })
	if got := f.backlog(t); got != len(evts) {
		t.Fatalf("backlog while the broker refuses: got %d, want %d (no row lost)", got, len(evts))
	}

	mustStream(t, f.js, "LATE", "late.>")
	waitFor(t, "the rows to be published once the stream exists", func() bool { return f.backlog(t) == 0 })
	mustSeeEachOnce(t, f.js, "LATE", evts)
}

func TestRelaySurvivesNATSRestart(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	runRelay(t, mustRelay(t, f,
		outbox.WithBatch(8),
		outbox.WithAckTimeout(time.Second),
		outbox.WithBackoff(10*time.Millisecond, 200*time.Millisecond)))

	const batches, perBatch = 40, 5
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		evts []events.Outgoing
	)
	restartAt := make(chan struct{}) // the writer is half-way through
	wg.Go(func() {
		defer close(restartAt)
		for i := range batches {
			if i == batches/2 {
				restartAt <- struct{}{}
			}
			added := make([]events.Outgoing, perBatch)
			for j := range added {
				added[j] = testEvent("e", i*perBatch+j)
			}
			err := f.db.InTx(context.Background(), func(tx *sql.Tx) error {
				return f.ob.Add(context.Background(), tx, added...)
			})
			if err != nil {
				t.Errorf("outbox.Add: %v", err)
				return
			}
			f.ob.Notify()
			mu.Lock()
			evts = append(evts, added...)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // spread the writes over the restart
		}
	})
	<-restartAt
	f.srv.Restart(t)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	waitFor(t, "every row to be published after the restart", func() bool { return f.backlog(t) == 0 })
	if got, want := streamInfo(t, f.js, "TEST").State.Msgs, uint64(batches*perBatch); got != want {
		t.Errorf("stream messages: got %d, want %d", got, want)
	}
	mustSeeEachOnce(t, f.js, "TEST", evts)
}

func TestRelayRunReturnsOnCancel(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "sqlite", URL: sqltest.SQLiteURL})
	r := mustRelay(t, f, outbox.WithSweep(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	evts := f.mustAdd(t, "e", 0, 3)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: got %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
	// Whatever the final flush did not publish, the next relay does.
	if n, err := r.PublishPending(context.Background()); err != nil {
		t.Fatalf("PublishPending after Run: got (%d, %v), want no error", n, err)
	}
	mustSeeEachOnce(t, f.js, "TEST", evts)
}

// Extra headers travel with the event: here the Nats-Schedule pair that
// makes the server deliver a deadline later, onto its target subject.
func TestRelaySendsExtraHeadersSuchAsSchedules(t *testing.T) {
	f := mustFixture(t, sqltest.Backends()[0])
	ctx := events.ExtractTrace(context.Background(), nats.Header{events.HeaderTraceParent: {traceParent}})
	if _, err := f.js.CreateOrUpdateStream(ctx, streams.Config(streams.Spec{Name: "SCHED", Subjects: []string{"sched.>"}, Schedules: true}, streams.Options{})); err != nil {
		t.Fatal(err)
	}
	e := testEvent("deadline", 0)
	e.Subject = "sched.deadline_scheduled.o-1"
	e.Headers = map[string]string{
		"Nats-Schedule":        "@at " + time.Now().Add(time.Second).UTC().Format(time.RFC3339),
		"Nats-Schedule-Target": "sched.deadline.o-1",
	}
	if err := f.db.InTx(ctx, func(tx *sql.Tx) error { return f.ob.Add(ctx, tx, e) }); err != nil {
		t.Fatal(err)
	}
	runRelay(t, mustRelay(t, f))
	f.ob.Notify()
	// Ask for the target subject directly: the server purges the schedule
	// message once it fires, so reading the stream by sequence can race it.
	sched, err := f.js.Stream(ctx, "SCHED")
	if err != nil {
		t.Fatal(err)
	}
	var fired *jetstream.RawStreamMsg
	waitFor(t, "the scheduled event to fire", func() bool {
		fired, err = sched.GetLastMsgForSubject(ctx, "sched.deadline.o-1")
		return err == nil
	})
	if got := fired.Header.Get(events.HeaderTraceParent); got != traceParent {
		t.Errorf("fired traceparent: got %q, want %q", got, traceParent)
	}
	if env, err := events.Decode(fired.Data); err != nil || env.ID != e.ID {
		t.Errorf("fired body: %v, %v; want the event %s", env.ID, err, e.ID)
	}
}

// The periodic sweep is the only path for rows no wake-up announces: rows
// committed by another replica or process sharing the store, whose own
// relay may never run. Here a second Outbox on the same store (another
// process's, with its own wake-up) commits rows and never notifies: only
// the sweep of the running relay can find them. With the sweep disabled
// (an interval of an hour) the wait below gives up.
func TestRelaySweepPublishesRowsAnotherProcessCommitted(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := mustFixture(t, b)
			// A row left from before the start, published by the start-up
			// pass. No wake-up is ever sent and acked rows are deleted at
			// once (no delete timer to wake the loop): once the row is
			// gone the relay waits for a wake-up or the sweep, nothing else.
			own := f.mustAdd(t, "own", 0, 1)
			runRelay(t, mustRelay(t, f, outbox.WithSweep(20*time.Millisecond), outbox.WithDeleteDelay(0)))
			waitFor(t, "the start-up pass", func() bool { return f.backlog(t) == 0 })

			other := &fixture{db: f.db, ob: outbox.New(f.db)}
			theirs := other.mustAdd(t, "theirs", 0, 5)
			waitFor(t, "the sweep to publish the other process's rows", func() bool { return f.backlog(t) == 0 })
			mustSeeEachOnce(t, f.js, "TEST", append(own, theirs...))
		})
	}
}

// Rows are deleted only after the server's ack, and then always: rows
// whose publish the server refused (no stream captures their subject)
// stay, every one of them; once a stream takes them, they are published
// and deleted. Deleting on send, or never, fails one of the two checks.
func TestRelayDeletesOnlyAckedRows(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, b)
			evts := make([]events.Outgoing, 4)
			for i := range evts {
				evts[i] = testEvent("unacked", i)
				evts[i].Subject = "unrouted.happened." + strconv.Itoa(i)
			}
			if err := f.db.InTx(ctx, func(tx *sql.Tx) error { return f.ob.Add(ctx, tx, evts...) }); err != nil {
				t.Fatal(err)
			}
			r := mustRelay(t, f, outbox.WithAckTimeout(2*time.Second))
			if _, err := r.PublishPending(ctx); err == nil {
				t.Fatal("PublishPending with no stream for the subjects: got nil, want the publish error")
			}
			if got := f.backlog(t); got != len(evts) {
				t.Fatalf("backlog after refused publishes: got %d, want %d (a row deleted without an ack is lost)", got, len(evts))
			}
			mustStream(t, f.js, "UNROUTED", "unrouted.>")
			if n, err := r.PublishPending(ctx); err != nil || n != len(evts) {
				t.Fatalf("PublishPending once a stream exists: got (%d, %v), want (%d, nil)", n, err, len(evts))
			}
			if got := f.backlog(t); got != 0 {
				t.Errorf("backlog after the acks: got %d, want 0 (acked rows are deleted)", got)
			}
			mustSeeEachOnce(t, f.js, "UNROUTED", evts)
		})
	}
}
