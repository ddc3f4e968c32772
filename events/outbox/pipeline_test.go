package outbox

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// A drain that has published all it found goes on with rows committed
// while its acks are on their way, but only on SQLite, only while some are
// unsettled, and only for the delete delay and until maxAcked rows wait to
// be deleted; when the acks come first, it ends.
func TestMoreWhileUnsettled(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			ob := New(db)
			r := &Relay{ob: ob, deleteDelay: time.Hour}
			ctx := context.Background()
			now := time.Now()
			var unsettled atomic.Int64
			idle := make(chan struct{}, 1)

			if r.moreWhileUnsettled(ctx, &unsettled, idle, now) {
				t.Error("nothing unsettled: want the drain to end")
			}
			unsettled.Store(1)
			ob.Notify()
			want := db.Dialect.Engine == sqldb.SQLite
			if got := r.moreWhileUnsettled(ctx, &unsettled, idle, now); got != want {
				t.Errorf("rows committed while a batch is unsettled, on %s: go on = %v, want %v", db.Dialect.Engine, got, want)
			}
			if !want {
				return
			}
			idle <- struct{}{}
			if r.moreWhileUnsettled(ctx, &unsettled, idle, now) {
				t.Error("the acks came before any new row: want the drain to end")
			}
			ob.Notify()
			if r.moreWhileUnsettled(ctx, &unsettled, idle, now.Add(-2*time.Hour)) {
				t.Error("draining for longer than the delete delay: want the drain to end, so that the acked rows are deleted")
			}
			r.acked = map[int64]struct{}{}
			for id := range int64(maxAcked) {
				r.acked[id] = struct{}{}
			}
			if r.moreWhileUnsettled(ctx, &unsettled, idle, now) {
				t.Errorf("%d acked rows waiting: want the drain to end, so that they are deleted", maxAcked)
			}
		})
	}
}

// heldAcks is a JetStream whose publishes are acked only when the test
// says so; it has nothing but PublishMsgAsync.
type heldAcks struct {
	jetstream.JetStream
	published chan string // the subject of each publish
	release   chan struct{}
}

type heldAck struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
}

func (f heldAck) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f heldAck) Err() <-chan error            { return nil }
func (f heldAck) Msg() *nats.Msg               { return f.msg }

func (h *heldAcks) PublishMsgAsync(msg *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f := heldAck{msg: msg, ok: make(chan *jetstream.PubAck, 1)}
	go func() {
		<-h.release
		f.ok <- &jetstream.PubAck{Stream: "TEST"}
	}()
	h.published <- msg.Subject
	return f, nil
}

// A row committed while the acks of the rows before it are on their way
// is published in the same drain, before those acks come.
func TestDrainGoesOnWithRowsCommittedWhileAcksArePending(t *testing.T) {
	ctx := context.Background()
	db := sqltest.MustOpen(t, sqltest.SQLiteURL(t))
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	ob := New(db)
	js := &heldAcks{published: make(chan string, 10), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(js.release) })
	defer release()
	r, err := NewRelay(ob, js, WithDeleteDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	add := func(id string) {
		t.Helper()
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			return ob.Add(ctx, tx, events.Outgoing{ID: id, Subject: "test.happened." + id, Type: "t", Source: "s", Data: 1})
		})
		if err != nil {
			t.Fatal(err)
		}
		ob.Notify()
	}
	// Bounds the waits, so that a drain that does not go on fails the
	// test instead of hanging it.
	next := func() string {
		t.Helper()
		select {
		case subject := <-js.published:
			return subject
		case <-time.After(10 * time.Second):
			return ""
		}
	}

	add("e-1")
	<-ob.wake // taken by the drain below, as Run would
	done := make(chan int, 1)
	go func() {
		n, _ := r.drain(ctx, r.start())
		done <- n
	}()
	if got := next(); got != "test.happened.e-1" {
		t.Fatalf("first publish: got %q, want test.happened.e-1", got)
	}
	add("e-2")
	if got := next(); got != "test.happened.e-2" {
		t.Errorf("publish of a row committed while e-1's ack was pending: got %q, want test.happened.e-2 before that ack", got)
	}
	release()
	if n := <-done; n != 2 {
		t.Errorf("drain published %d rows, want 2", n)
	}
}
