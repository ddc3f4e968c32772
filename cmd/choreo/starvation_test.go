package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/natstest"
)

// No message can starve another: 1,500 cancels of orders that do not
// exist — each retried with back-off for half a minute before its dead
// letter, more than a consumer's 1,000 messages awaiting an ack — must
// not hold back placements. The test measures how long placements over
// NATS take to be placed (command published → orders.placed seen) before
// and during the flood, in one run, and compares the two: a ratio, never
// an absolute time. With one durable consumer for every command the flood
// filled its ack-pending limit and placements waited for the cancels'
// dead letters (about 25 s); each command kind has its own consumer now
// (catalog.ConsumerOf).
func TestAFloodOfRetriedCancelsDoesNotStarvePlacements(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	nc, js := natstest.Connect(t, c.natsURL)

	var (
		mu     sync.Mutex
		placed = map[string]chan struct{}{}
	)
	sub, err := nc.Subscribe("orders.placed.*", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if ch, ok := placed[events.SubjectKey(m.Subject)]; ok {
			close(ch)
			delete(placed, events.SubjectKey(m.Subject))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// place publishes n placements one after the other and returns how
	// long each took to be placed.
	place := func(n int) []time.Duration {
		t.Helper()
		var took []time.Duration
		for range n {
			id := events.NewID()
			done := make(chan struct{})
			mu.Lock()
			placed[id] = done
			mu.Unlock()
			body := fmt.Sprintf(`{"order_id":%q,"customer_id":"cust-1","currency":"EUR","items":[{"sku":"SKU-FLOOD","quantity":1,"unit_price":100}]}`, id)
			start := time.Now()
			if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, []byte(body)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
				took = append(took, time.Since(start))
			case <-ctx.Done():
				t.Fatalf("order %s never placed", id)
			}
		}
		return took
	}
	const n = 15
	place(3) // warm up: the first sagas pay for connections and statements
	quiet := mean(place(n))

	// The flood: cancels of orders that do not exist, each retried.
	acks := make([]jetstream.PubAckFuture, 0, 1500)
	for i := range 1500 {
		f, err := js.PublishAsync(catalog.SubjectCancelOrder, []byte(fmt.Sprintf(`{"command_id":"flood-%d","order_id":"no-such-order-%d"}`, i, i)))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("flood not published")
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
	// Wait until the cancels are being retried and fill the limit of
	// messages awaiting an ack: what starved placements before.
	cancels, err := js.Consumer(ctx, catalog.StreamCommands, cancelDurable(t))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the flood retried, filling its ack-pending limit", func() (bool, string) {
		info, err := cancels.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumAckPending >= 1000 && info.NumRedelivered > 0,
			fmt.Sprintf("ack pending %d, redelivered %d", info.NumAckPending, info.NumRedelivered)
	})
	// The mean, not the median: starved, the first placement waits for
	// the flood to drain and the others follow at once.
	flooded := mean(place(n))
	ratio := float64(flooded) / float64(quiet)
	t.Logf("placement: mean %s quiet, %s during the flood (%.1f×)", quiet, flooded, ratio)
	// Generous: the flood costs CPU on a shared 2-core machine, and the
	// cancels' failed transactions share the service's database; what
	// must not happen is a wait behind them (hundreds of times longer).
	if ratio > 50 {
		t.Errorf("placements during the flood took %.0f× as long as before it (mean %s vs %s), want at most 50×", ratio, flooded, quiet)
	}
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

// cancelDurable is the durable consumer through which orders takes its
// cancels, as its consumer configuration says.
func cancelDurable(t *testing.T) string {
	t.Helper()
	for _, src := range ordersConsumer(t).Sources {
		if src.Stream == catalog.StreamCommands && slices.ContainsFunc(src.FilterSubjects, func(f string) bool {
			return consumer.MatchSubject(f, catalog.SubjectCancelOrder)
		}) && !slices.Contains(src.Skip, catalog.SubjectCancelOrder) {
			return src.Durable
		}
	}
	t.Fatal("orders takes no cancels")
	return ""
}
