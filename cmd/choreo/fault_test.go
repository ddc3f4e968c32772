package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
)

func placeBody(orderID, sku string, qty int64) []byte {
	b, _ := json.Marshal(catalog.PlaceOrder{
		OrderID: orderID, CustomerID: "cust-1", Currency: "EUR",
		Items: []catalog.LineItem{{SKU: sku, Quantity: qty, UnitPrice: 500}},
	})
	return b
}

// restock receives stock and waits until inventory has applied it. An
// order placed right after a restock reaches inventory through another
// stream (ORDERS, not COMMANDS) and may overtake it — legitimately out of
// stock — so tests that mean "there is stock" must wait. The
// inventory.restocked event leaves the outbox only after the restock
// committed.
func restock(t *testing.T, ctx context.Context, js jetstream.JetStream, sku string, qty int64) {
	t.Helper()
	subject := "inventory.restocked." + sku
	before, _ := countSubjects(ctx, js, catalog.StreamInventory, subject)
	body := fmt.Sprintf(`{"command_id":"restock-%s-%d","sku":%q,"quantity":%d}`, sku, qty, sku, qty)
	if _, err := js.Publish(ctx, catalog.SubjectRestock, []byte(body)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "restock of "+sku+" applied", func() (bool, string) {
		after, err := countSubjects(ctx, js, catalog.StreamInventory, subject)
		return err == nil && after[subject] > before[subject], fmt.Sprintf("%v", after)
	})
}

func waitConfirmed(t *testing.T, ctx context.Context, c *runningChoreo, ids ...string) {
	t.Helper()
	waitFor(t, ctx, "orders CONFIRMED", func() (bool, string) {
		for _, id := range ids {
			if o := getOrder(t, c, id); o.Status != catalog.StatusConfirmed {
				return false, fmt.Sprintf("order %s is %q", id, o.Status)
			}
		}
		return true, ""
	})
}

// A message that can never be handled goes to the DLQ with its reason, and
// the consumer goes on with the next one.
func TestPoisonMessagesGoToDLQAndTheNextIsProcessed(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := c.operator(t) // the poison includes an event
	restock(t, ctx, js, "SKU-P", 10)

	poison := []struct{ subject, body, reason string }{
		{catalog.SubjectPlaceOrder, `{"order_id": oops`, "malformed"},
		{catalog.SubjectPlaceOrder, `{"order_id":"p-1","customer_id":"c","currency":"EUR","items":[]}`, "items is empty"},
		{catalog.SubjectPlaceOrder, `{"order_id":"p-2","customer_id":"c","currency":"EURO","items":[{"sku":"A","quantity":1,"unit_price":1}]}`, "ISO 4217"},
		{catalog.SubjectPlaceOrder, `{"order_id":"p-3","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":-2,"unit_price":1}]}`, "quantity -2"},
		{catalog.SubjectPlaceOrder, `{"order_id":"p-4","customer_id":"c","currency":"EUR","colour":"red","items":[{"sku":"A","quantity":1,"unit_price":1}]}`, "unknown field"},
		{catalog.SubjectPlaceOrder, `{"order_id":"p-5","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price":1},{"sku":"A","quantity":2,"unit_price":1}]}`, "more than one line"},
		{catalog.SubjectRestock, `{"command_id":"bad","sku":"SKU-P","quantity":-5}`, "quantity -5"},
		{"cmd.orders.teleport", `{}`, "no handler"},
		{"orders.placed.zzz", `{"specversion":"1.0"}`, "invalid cloudevent"},
	}
	for _, p := range poison {
		if _, err := js.Publish(ctx, p.subject, []byte(p.body)); err != nil {
			t.Fatal(err)
		}
	}
	good := events.NewID()
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(good, "SKU-P", 1)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, good)

	dlqStream, err := js.Stream(ctx, catalog.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string][]string{} // original subject → reasons
	waitFor(t, ctx, "every poison message dead-lettered", func() (bool, string) {
		reasons = map[string][]string{}
		info, err := dlqStream.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := dlqStream.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			for _, h := range []string{dlq.HeaderOriginalStream, dlq.HeaderOriginalSeq, dlq.HeaderDeliveryCount} {
				if m.Header.Get(h) == "" {
					t.Errorf("dead letter %s has no %s header", m.Subject, h)
				}
			}
			orig := m.Header.Get(dlq.HeaderOriginalSubject)
			reasons[orig] = append(reasons[orig], m.Header.Get(dlq.HeaderReason)+" | "+string(m.Data))
		}
		n := 0
		for _, r := range reasons {
			n += len(r)
		}
		// The bad orders.placed event is dead-lettered by each of its
		// consumers (inventory and payments).
		return n >= len(poison)+1, fmt.Sprintf("%d dead letters: %v", n, reasons)
	})
	for _, p := range poison {
		found := false
		for _, r := range reasons[p.subject] {
			if strings.Contains(r, p.reason) && strings.Contains(r, p.body) {
				found = true
			}
		}
		if !found {
			t.Errorf("no dead letter for %s %s with reason containing %q; got %v", p.subject, p.body, p.reason, reasons[p.subject])
		}
	}
	// And nothing else changed: no order p-1…p-4, the bad restock ignored.
	for _, id := range []string{"p-1", "p-2", "p-3", "p-4", "p-5"} {
		if o := getOrder(t, c, id); o.Status != "HTTP 404" {
			t.Errorf("order %s: %s, want 404", id, o.Status)
		}
	}
	if s := getStock(t, c, "SKU-P"); s.Available+s.Reserved+s.Sold != 10 {
		t.Errorf("SKU-P: %+v, want 10 in total", s)
	}
}

// The same event or command delivered twice (as two stream messages, so
// JetStream's de-duplication cannot help) is applied once. The restock
// copy is what fails without the inbox: the saga's events would also be
// stopped by the order's state.
func TestDuplicateEventIsAppliedOnce(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := c.operator(t) // it publishes copies of events
	restock(t, ctx, js, "SKU-D", 10)
	id := events.NewID()
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(id, "SKU-D", 3)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, id)
	waitFor(t, ctx, "reservation committed", func() (bool, string) {
		s := getStock(t, c, "SKU-D")
		return s.Sold == 3, fmt.Sprintf("%+v", s)
	})

	// Re-publish every event of this saga under a fresh Nats-Msg-Id.
	for _, stream := range []string{catalog.StreamOrders, catalog.StreamInventory, catalog.StreamPayments} {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil || !strings.HasSuffix(m.Subject, "."+id) {
				continue
			}
			dup := nats.NewMsg(m.Subject)
			dup.Data = m.Data
			dup.Header.Set(jetstream.MsgIDHeader, "replayed-"+events.NewID())
			if _, err := js.PublishMsg(ctx, dup); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The restock command delivered again: the same body, keyed by its
	// command_id (no Nats-Msg-Id, so the stream keeps both copies). Unlike
	// the saga's events, whose transitions find the order already past
	// them, a restock changes stock every time it is applied: only the
	// inventory's inbox claim keeps this copy from adding 10 more.
	restockCopy := nats.NewMsg(catalog.SubjectRestock)
	restockCopy.Data = []byte(`{"command_id":"restock-SKU-D-10","sku":"SKU-D","quantity":10}`)
	copyAck, err := js.PublishMsg(ctx, restockCopy)
	if err != nil {
		t.Fatal(err)
	}
	// Restocks have a durable of their own, so the marker below does not
	// follow the copy: wait until that durable has acked it.
	waitFor(t, ctx, "the restock copy consumed", func() (bool, string) {
		cons, err := js.Consumer(ctx, catalog.StreamCommands, catalog.CommandDurable("inventory", "restock"))
		if err != nil {
			return false, err.Error()
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream >= copyAck.Sequence, fmt.Sprintf("ack floor %d, copy at %d", info.AckFloor.Stream, copyAck.Sequence)
	})
	// A marker order placed after the duplicates: once it is confirmed and
	// its stock committed, the duplicates ahead of it were consumed too.
	marker := events.NewID()
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(marker, "SKU-D", 1)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, marker)
	waitFor(t, ctx, "marker committed and notified", func() (bool, string) {
		s := getStock(t, c, "SKU-D")
		n, _ := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent."+marker)
		return s.Sold == 4 && len(n) == 1, fmt.Sprintf("%+v, notified %v", s, n)
	})
	if s := getStock(t, c, "SKU-D"); s.Available != 6 || s.Reserved != 0 || s.Sold != 4 {
		t.Errorf("SKU-D: %+v, want available 6, reserved 0, sold 4 (duplicates applied once)", s)
	}
	// Nothing new was emitted: the services' own outputs are the original
	// plus the copy we injected into their streams, and notifications,
	// whose stream we left alone, sent once.
	for _, f := range []struct {
		stream, filter string
		want           uint64
	}{
		{catalog.StreamPayments, "payments.captured." + id, 2},
		{catalog.StreamInventory, "inventory.reserved." + id, 2},
		{catalog.StreamInventory, "inventory.committed." + id, 2},
		{catalog.StreamOrders, "orders.confirmed." + id, 2},
		{catalog.StreamNotifications, "notifications.sent." + id, 1},
	} {
		n, err := countSubjects(ctx, js, f.stream, f.filter)
		if err != nil {
			t.Fatal(err)
		}
		if n[f.filter] != f.want {
			t.Errorf("%s: %d messages, want %d", f.filter, n[f.filter], f.want)
		}
	}
}

// An order committed to the orders database while no relay runs — the
// state a crash between commit and publish leaves — is published when
// choreo starts again, and the saga completes exactly once.
func TestCrashBetweenCommitAndPublish(t *testing.T) {
	srv := natstest.Start(t)
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()

	// First run: create streams and stock, then stop.
	c := startUp(t, "--nats-url", srv.URL, "--data", data)
	_, js := natstest.Connect(t, srv.URL)
	restock(t, ctx, js, "SKU-C", 5)
	waitFor(t, ctx, "restocked", func() (bool, string) {
		return getStock(t, c, "SKU-C").Available == 5, ""
	})
	c.stop()

	// The "crash": the order and its outbox row are committed, nothing is
	// published.
	id := events.NewID()
	db := sqltest.MustOpen(t, filepath.Join(data, "orders.db"))
	svc, err := orders.New(orders.Config{Store: orderdb.New(db)})
	if err != nil {
		t.Fatal(err)
	}
	var cmd catalog.PlaceOrder
	_ = json.Unmarshal(placeBody(id, "SKU-C", 2), &cmd)
	if _, _, err := svc.Place(ctx, inbox.Key{}, cmd); err != nil {
		t.Fatal(err)
	}
	n, _, err := orderdb.New(db).Outbox().Backlog(ctx)
	if err != nil || n != 1 {
		t.Fatalf("outbox backlog %d (err %v), want 1 unpublished row", n, err)
	}
	db.Close()
	if got, _ := countSubjects(ctx, js, catalog.StreamOrders, "orders.placed."+id); len(got) != 0 {
		t.Fatalf("orders.placed.%s already in the stream: %v", id, got)
	}

	// Restart: the relay's sweep finds the row.
	c = startUp(t, "--nats-url", srv.URL, "--data", data)
	waitConfirmed(t, ctx, c, id)
	waitFor(t, ctx, "stock committed", func() (bool, string) {
		s := getStock(t, c, "SKU-C")
		return s.Sold == 2 && s.Available == 3 && s.Reserved == 0, fmt.Sprintf("%+v", s)
	})
	if got, _ := countSubjects(ctx, js, catalog.StreamOrders, "orders.placed."+id); got["orders.placed."+id] != 1 {
		t.Errorf("orders.placed.%s: %v, want exactly one message", id, got)
	}
}

// The NATS server stops and starts again while orders are being placed:
// nothing is lost and nothing is applied twice.
func TestNATSRestartWhileOrdersArePlaced(t *testing.T) {
	srv := natstest.Start(t)
	c := startUp(t, "--nats-url", srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, srv.URL)
	restock(t, ctx, js, "SKU-R", 1000)
	waitFor(t, ctx, "restocked", func() (bool, string) { return getStock(t, c, "SKU-R").Available == 1000, "" })

	const n = 60
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		ids[i] = events.NewID()
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // spread over the restart
			body := placeBody(ids[i], "SKU-R", 1)
			for ctx.Err() == nil {
				// HTTP for half: the orders store and its outbox keep
				// working while NATS is down. NATS for the other half,
				// retried by the client until the server acks.
				if i%2 == 0 {
					resp, err := http.Post(c.httpURL+"/orders", "application/json", strings.NewReader(string(body)))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusAccepted {
							return
						}
					}
				} else {
					pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
					_, err := js.Publish(pctx, catalog.SubjectPlaceOrder, body, jetstream.WithMsgID("place-"+ids[i]))
					pcancel()
					if err == nil {
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	srv.Restart(t)
	wg.Wait()

	waitConfirmed(t, ctx, c, ids...)
	waitFor(t, ctx, "stock settled", func() (bool, string) {
		s := getStock(t, c, "SKU-R")
		return s.Sold == n && s.Reserved == 0 && s.Available == 1000-n, fmt.Sprintf("%+v", s)
	})
	waitFor(t, ctx, "one notification each", func() (bool, string) {
		got, err := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent.>")
		if err != nil {
			return false, err.Error()
		}
		return len(got) == n, fmt.Sprintf("%d notified", len(got))
	})
	for _, f := range []struct{ stream, filter string }{
		{catalog.StreamOrders, "orders.confirmed.>"},
		{catalog.StreamPayments, "payments.captured.>"},
		{catalog.StreamNotifications, "notifications.sent.>"},
	} {
		got, err := countSubjects(ctx, js, f.stream, f.filter)
		if err != nil {
			t.Fatal(err)
		}
		// One subject per order: a loop over an empty map alone would
		// pass with nothing published.
		if len(got) != n {
			t.Errorf("%s: %d subjects, want one per order (%d)", f.filter, len(got), n)
		}
		for subj, k := range got {
			if k != 1 {
				t.Errorf("%s: %d messages, want 1", subj, k)
			}
		}
	}
}

// A cancel for an order that does not exist is retried for a while (its
// place command may still be on the way) and then dead-lettered with a
// reason that says so; nothing else changes.
func TestCancelOfAnUnknownOrderIsDeadLettered(t *testing.T) {
	t.Parallel() // most of it is back-off
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	if _, err := js.Publish(ctx, catalog.SubjectCancelOrder, []byte(`{"command_id":"c-ghost","order_id":"ghost"}`)); err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetter(t, ctx, js, "dlq.orders.cmd.orders.cancel")
	reason := dl.Header.Get(dlq.HeaderReason)
	if !strings.Contains(reason, "ghost") || !strings.Contains(reason, "not found") || !strings.Contains(reason, "deliveries") {
		t.Errorf("reason %q: want it to name the order, say it was not found, and after how many deliveries", reason)
	}
	if n, _ := countSubjects(ctx, js, catalog.StreamOrders, "orders.>"); len(n) != 0 {
		t.Errorf("orders events %v, want none", n)
	}
}

func waitDeadLetter(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(ctx, catalog.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	waitFor(t, ctx, "a dead letter on "+subject, func() (bool, string) {
		m, err = s.GetLastMsgForSubject(ctx, subject)
		return err == nil, fmt.Sprint(err)
	})
	return m
}
