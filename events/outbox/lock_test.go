package outbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// countingJS counts the publishes a relay makes, by event id, before the
// stream's duplicate window hides the second copies; with down set it
// refuses them, as a broker this relay cannot reach would.
type countingJS struct {
	jetstream.JetStream
	down     atomic.Bool
	attempts atomic.Int64
	// paused, while open, holds every publish: the relay stops where it
	// is, as a process stopped with SIGSTOP does, its sessions still open.
	paused chan struct{}
	mu     sync.Mutex
	sent   map[string]int
}

func newCountingJS(js jetstream.JetStream) *countingJS {
	return &countingJS{JetStream: js, sent: map[string]int{}}
}

var errBrokerDown = errors.New("broker unreachable (test)")

func (c *countingJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	c.attempts.Add(1)
	if c.paused != nil {
		<-c.paused
	}
	if c.down.Load() {
		return nil, errBrokerDown
	}
	c.mu.Lock()
	c.sent[m.Header.Get(jetstream.MsgIDHeader)]++
	c.mu.Unlock()
	return c.JetStream.PublishMsgAsync(m, opts...)
}

// published returns how many times the event was published, and how many
// publishes there were in all.
func (c *countingJS) published(id string) (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for _, n := range c.sent {
		total += n
	}
	return c.sent[id], total
}

// replica is one relay on a shared store, as another process would run
// it: its own outbox (its own wake-ups) and its own publisher.
type replica struct {
	relay *outbox.Relay
	ob    *outbox.Outbox
	js    *countingJS
	stop  func()
}

// wantPublishedOnce checks that the relays of first and second together
// published each of evts once.
func wantPublishedOnce(t *testing.T, evts []events.Outgoing, first, second *replica) {
	t.Helper()
	for _, e := range evts {
		a, _ := first.js.published(e.ID)
		b, _ := second.js.published(e.ID)
		if a+b != 1 {
			t.Errorf("event %s: published %d times by the first relay and %d by the second, want once in all", e.ID, a, b)
		}
	}
}

// startReplica runs a relay on f's store until stop or the end of the
// test, sweeping (and, standing by, trying the lock) every 20ms.
func startReplica(t *testing.T, f *fixture, opts ...outbox.Option) *replica {
	t.Helper()
	rp := &replica{ob: outbox.New(f.db), js: newCountingJS(f.js)}
	var err error
	// The ack timeout is the test's bound: no publish is repeated for a
	// slow ack on a loaded machine, so every second copy is the lock's.
	opts = append([]outbox.Option{outbox.WithSweep(20 * time.Millisecond), outbox.WithAckTimeout(waitTimeout)}, opts...)
	rp.relay, err = outbox.NewRelay(rp.ob, rp.js, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rp.relay.Run(ctx) }()
	var once sync.Once
	rp.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: got %v, want nil after cancel", err)
			}
		})
	}
	t.Cleanup(rp.stop)
	return rp
}

// Two replicas of a service on one store: the relay holding the store's
// relay lock publishes every row once, the other publishes nothing, though
// both are woken for every commit and sweep every 20ms. Counted at the
// publishers: the stream's duplicate window would hide a second copy.
// With a lock that every relay gets, each row goes out twice.
func TestOneRelayPerStorePublishes(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := mustFixture(t, b)
			first := startReplica(t, f)
			waitFor(t, "the first relay to take the lock", first.relay.Active)
			second := startReplica(t, f)
			var evts []events.Outgoing
			for i := range 10 {
				evts = append(evts, f.mustAdd(t, "e", i*10, 10)...)
				first.ob.Notify()
				second.ob.Notify()
			}
			waitFor(t, "the backlog to drain", func() bool { return f.backlog(t) == 0 })
			wantPublishedOnce(t, evts, first, second)
			if _, n := second.js.published(""); n != 0 || second.relay.Active() {
				t.Errorf("standby: %d publishes, active %v; want none, false", n, second.relay.Active())
			}
			mustSeeEachOnce(t, f.js, "TEST", evts)
		})
	}
}

// The active relay goes away while rows wait (its broker unreachable, so
// none of them went out): the standby takes the lock at its next sweep and
// publishes every row. Until then it publishes nothing.
func TestStandbyTakesOverRowsTheActiveRelayLeft(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := mustFixture(t, b)
			active := startReplica(t, f)
			waitFor(t, "the first relay to take the lock", active.relay.Active)
			active.js.down.Store(true)
			standby := startReplica(t, f)
			evts := f.mustAdd(t, "e", 0, 20)
			active.ob.Notify()
			standby.ob.Notify()
			waitFor(t, "the active relay to try", func() bool { return active.js.attempts.Load() > 0 })
			if got := standby.js.attempts.Load(); got != 0 {
				t.Fatalf("standby published %d times while the active relay lived, want 0", got)
			}
			if got := f.backlog(t); got != len(evts) {
				t.Fatalf("backlog while the active relay's broker is down: got %d, want %d", got, len(evts))
			}

			active.stop()
			waitFor(t, "the standby to take over and drain the backlog", func() bool { return f.backlog(t) == 0 })
			if !standby.relay.Active() {
				t.Error("the relay that drained the backlog is not active")
			}
			mustSeeEachOnce(t, f.js, "TEST", evts)
		})
	}
}

// On PostgreSQL the lock lives as long as the active relay's session: here
// the server ends it, as it does when a kill -9'd relay's connection
// drops. Exactly one relay is active afterwards (the standby, or the old
// holder if it took the free lock again first), every row is published,
// and those committed after the hand-over are published once.
func TestRelayLockSessionEnds(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "postgres", URL: sqltest.PostgresURL})
	first := startReplica(t, f)
	waitFor(t, "the first relay to take the lock", first.relay.Active)
	second := startReplica(t, f)

	var ended int
	err := f.db.QueryRowContext(context.Background(), `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objid = 'outbox'::regclass::oid
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&ended)
	if err != nil || ended != 1 {
		t.Fatalf("ending the lock holder's session: got (%d, %v), want one session ended", ended, err)
	}
	before := f.mustAdd(t, "before", 0, 10)
	first.ob.Notify()
	second.ob.Notify()
	waitFor(t, "the rows to be published after the session ended", func() bool { return f.backlog(t) == 0 })
	waitFor(t, "exactly one active relay", func() bool { return first.relay.Active() != second.relay.Active() })

	after := f.mustAdd(t, "after", 0, 10)
	first.ob.Notify()
	second.ob.Notify()
	waitFor(t, "the backlog to drain", func() bool { return f.backlog(t) == 0 })
	wantPublishedOnce(t, after, first, second)
	mustSeeEachOnce(t, f.js, "TEST", append(before, after...))
}

// On PostgreSQL an active relay that is alive but stopped — SIGSTOP, a
// frozen VM — loses the lock once its session has been silent past the
// idle timeout its lock session carries: the standby takes over and
// publishes every row while the paused one still waits; woken, the old
// holder finds its session gone and stands by. Without the timeout the
// standby waits as long as the pause lasts.
func TestPausedRelayHandsOver(t *testing.T) {
	f := mustFixture(t, sqltest.Backend{Name: "postgres", URL: sqltest.PostgresURL})
	// A short ack timeout: the idle timeout outlasts an ack wait and a
	// back-off, and must end well within waitFor's patience.
	paused := startReplica(t, f, outbox.WithAckTimeout(time.Second))
	waitFor(t, "the first relay to take the lock", paused.relay.Active)
	// Set before the relay publishes: read by its goroutine only then.
	resume := make(chan struct{})
	paused.js.paused = resume
	var once sync.Once
	wake := func() { once.Do(func() { close(resume) }) }
	t.Cleanup(wake) // before the relay's own cleanup, which waits for it
	standby := startReplica(t, f)

	evts := f.mustAdd(t, "e", 0, 20)
	paused.ob.Notify()
	standby.ob.Notify()
	waitFor(t, "the active relay to stop in a publish", func() bool { return paused.js.attempts.Load() > 0 })
	waitFor(t, "the standby to take over from the paused relay and drain the backlog", func() bool { return f.backlog(t) == 0 })
	if !standby.relay.Active() {
		t.Error("the relay that drained the backlog is not active")
	}
	wake()
	waitFor(t, "the woken relay to stand by", func() bool { return !paused.relay.Active() })
	if !standby.relay.Active() {
		t.Error("after the paused relay woke: the standby is no longer active")
	}
	mustSeeEachOnce(t, f.js, "TEST", evts)
}
