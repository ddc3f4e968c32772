package outbox_test

import (
	"context"
	"database/sql"
	"strconv"
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
)

// BenchmarkRelay compares the relay with the raw limit of the same machine:
// asynchronous JetStream publishes with Nats-Msg-Id to the same embedded
// server and stream, waiting for every ack. It reports both rates and their
// ratio (relay/raw); ns/op is the relay's time per event.
//
// The b.N events are sent in a few rounds, each a raw burst followed by a
// relay burst, so that both see the same background load on a shared
// machine.
//
//	go test -run '^$' -bench Relay -benchtime 20000x ./events/outbox
func BenchmarkRelay(b *testing.B) {
	b.StopTimer()
	srv := natstest.Start(b)
	nc, js := natstest.Connect(b, srv.URL)
	mustStream(b, js, "BENCH", "bench.>")
	ctx := context.Background()
	// Count what reaches the server with a plain subscription: cheaper
	// than asking the stream or the outbox while the relay works.
	var seen atomic.Uint64
	sub, err := nc.Subscribe("bench.relay.>", func(*nats.Msg) { seen.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	// A typical event: the relay publishes exactly these bytes.
	env, err := benchEvent("raw", 0).Envelope()
	if err != nil {
		b.Fatal(err)
	}
	payload, err := events.Encode(env)
	if err != nil {
		b.Fatal(err)
	}

	db := sqltest.MustOpen(b, sqltest.SQLiteURL(b))
	if err := outbox.Migrate(ctx, db); err != nil {
		b.Fatal(err)
	}
	ob := outbox.New(db)
	r, err := outbox.NewRelay(ob, js, outbox.WithSweep(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	var raw, relay time.Duration
	const rounds = 4
	for round := range rounds {
		from, to := b.N*round/rounds, b.N*(round+1)/rounds
		if from == to {
			continue
		}

		// (a) The raw limit.
		start := time.Now()
		for i := from; i < to; i++ {
			msg := nats.NewMsg("bench.raw." + strconv.Itoa(i))
			msg.Data = payload
			msg.Header.Set(events.HeaderTraceParent, traceParent)
			msg.Header.Set(jetstream.MsgIDHeader, "raw-"+strconv.Itoa(i))
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatalf("raw publish %d: %v", i, err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("raw publish: acks never completed")
		}
		raw += time.Since(start)

		// (b) The relay: committed rows on a SQLite file (not timed),
		// then the time until all are published and deleted.
		mustInsertBench(b, db, ob, from, to)
		b.StartTimer()
		start = time.Now()
		ob.Notify()
		waitRelayed(b, &seen, ob, uint64(to))
		relay += time.Since(start)
		b.StopTimer()
	}

	rawRate := float64(b.N) / raw.Seconds()
	relayRate := float64(b.N) / relay.Seconds()
	b.ReportMetric(rawRate, "raw_msgs/s")
	b.ReportMetric(relayRate, "relay_msgs/s")
	b.ReportMetric(relayRate/rawRate, "ratio")
}

func mustInsertBench(b *testing.B, db *sqldb.DB, ob *outbox.Outbox, from, to int) {
	b.Helper()
	ctx := context.Background()
	for lo := from; lo < to; lo += 500 {
		evts := make([]events.Outgoing, 0, 500)
		for i := lo; i < min(lo+500, to); i++ {
			evts = append(evts, benchEvent("relay", i))
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error { return ob.Add(ctx, tx, evts...) }); err != nil {
			b.Fatal(err)
		}
	}
}

// waitRelayed waits until want relay messages went through the server and
// the outbox is empty. It polls the outbox only at the end: polling it all
// along would compete with the relay for SQLite's single connection and
// slow down what it measures.
func waitRelayed(b *testing.B, seen *atomic.Uint64, ob *outbox.Outbox, want uint64) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for seen.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("relay: %d of %d messages published after 2m", seen.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
	for {
		n, _, err := ob.Backlog(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("relay: %d rows still pending after 2m", n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func benchEvent(prefix string, i int) events.Outgoing {
	return events.Outgoing{
		ID:      prefix + "-" + strconv.Itoa(i),
		Subject: "bench." + prefix + "." + strconv.Itoa(i),
		Type:    "choreo.orders.placed.v1",
		Source:  "choreo/orders",
		Time:    time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Data: map[string]any{
			"order_id":    "0193a5c2-7c1e-7000-8000-" + strconv.Itoa(100000000000+i),
			"customer_id": "cust-1",
			"currency":    "EUR",
			"total":       2598,
			"items":       []map[string]any{{"sku": "SKU-1", "quantity": 2, "unit_price": 1299}},
		},
	}
}
