package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/natstest"
)

// TestForgedEventsAndHijackedKeys plays the attacks of issue 10 with only
// a NATS connection, against a server that lets anyone publish anything (a
// misconfigured one: per-service permissions are the first line, these
// checks the one behind it). Each forgery is dead-lettered with its reason
// and changes nothing: not the order's state, not the stock, not the money
// on the PAYMENTS stream or at the provider.
func TestForgedEventsAndHijackedKeys(t *testing.T) {
	srv := natstest.Start(t)
	// A short reorder wait: the reservation of an order never placed is
	// dead-lettered within the test, not after the default 5 minutes.
	c := startUp(t, "--nats-url", srv.URL, "--order-timeout", "1m", "--duplicate-window", "1s", "--reorder-wait", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-ATK", 10)

	// Two orders wait for a provider that is down.
	setProviderMode(t, c, "down", nil)
	paid, pending := events.NewID(), events.NewID()
	placeOrder(t, c, paid, "cust-1", "SKU-ATK", 1) // 10.00 EUR
	placeOrder(t, c, pending, "cust-1", "SKU-ATK", 1)
	for _, id := range []string{paid, pending} {
		waitFor(t, ctx, "order "+id+" reserved", func() (bool, string) {
			s := getStock(t, c, "SKU-ATK")
			return s.Reserved == 2, fmt.Sprintf("%+v", s)
		})
	}

	t.Run("DeadlineOfAPendingOrderCancelsNothing", func(t *testing.T) {
		forge(t, ctx, js, "orders.deadline."+pending, catalog.TypeOrderDeadline, catalog.Orders,
			catalog.OrderDeadline{OrderID: pending, Deadline: time.Now().UTC()})
		deadLetter(t, ctx, js, catalog.Orders, "orders.deadline."+pending, "not the order's deadline")
		wantOrder(t, getOrder(t, c, pending), catalog.StatusPending, "")
		if s := getStock(t, c, "SKU-ATK"); s.Reserved != 2 {
			t.Errorf("stock %+v: want both orders' units still reserved", s)
		}
	})
	t.Run("OneCentCaptureConfirmsNothing", func(t *testing.T) {
		forge(t, ctx, js, "payments.captured."+paid, catalog.TypePaymentCaptured, catalog.Payments,
			catalog.PaymentCaptured{OrderID: paid, PaymentID: "forged", Amount: catalog.Money{Amount: 1, Currency: "EUR"}})
		deadLetter(t, ctx, js, catalog.Orders, "payments.captured."+paid, "captured amount is not the order's total")
		wantOrder(t, getOrder(t, c, paid), catalog.StatusPending, "")
		// The real capture, once the provider is back, confirms it: the
		// total is captured once, nothing more.
		setProviderMode(t, c, "normal", nil)
		wantOrder(t, waitFinal(t, ctx, c, paid), catalog.StatusConfirmed, "")
		settled(t, ctx, c, js, paid, 1000)
	})
	t.Run("CancelOfAConfirmedOrderRefundsNothing", func(t *testing.T) {
		forge(t, ctx, js, "orders.cancelled."+paid, catalog.TypeOrderCancelled, catalog.Orders,
			catalog.OrderCancelled{OrderID: paid, CustomerID: "cust-1", Reason: catalog.ReasonTimeout,
				Items: []catalog.LineItem{{SKU: "SKU-ATK", Quantity: 1, UnitPrice: 1000}}, Total: catalog.Money{Amount: 1000, Currency: "EUR"}})
		deadLetter(t, ctx, js, catalog.Payments, "orders.cancelled."+paid, "order is confirmed")
		wantOrder(t, getOrder(t, c, paid), catalog.StatusConfirmed, "")
		settled(t, ctx, c, js, paid, 1000) // captured 10.00, refunded nothing, at the provider and on PAYMENTS
		// Inventory did not release the sold unit either (the other
		// order may be confirmed by now too).
		if s := getStock(t, c, "SKU-ATK"); s.Sold < 1 || s.Available+s.Reserved+s.Sold != 10 {
			t.Errorf("stock %+v: want the confirmed order's unit sold, 10 in all", s)
		}
	})
	t.Run("ReservedForAnUnknownOrderChargesNobody", func(t *testing.T) {
		ghost := events.NewID()
		forge(t, ctx, js, "inventory.reserved."+ghost, catalog.TypeStockReserved, catalog.Inventory,
			catalog.StockReserved{OrderID: ghost, Items: []catalog.StockLine{{SKU: "SKU-ATK", Quantity: 1}}})
		// Retried while the order may still come, then dead-lettered.
		deadLetter(t, ctx, js, catalog.Payments, "inventory.reserved."+ghost, "order not seen placed")
		if n, _ := countSubjects(ctx, js, catalog.StreamPayments, "payments.*."+ghost); len(n) != 0 {
			t.Errorf("PAYMENTS for the unknown order: %v, want nothing", n)
		}
		if cap, ref := providerMoney(t, c, ghost); cap != 0 || ref != 0 {
			t.Errorf("provider: captured %d refunded %d for the unknown order, want nothing", cap, ref)
		}
		if code := getJSON(t, c.httpURL+"/payments/"+ghost, &struct{}{}); code != http.StatusNotFound {
			t.Errorf("GET /payments/%s: %d, want 404 (no payment kept)", ghost, code)
		}
	})
	t.Run("JunkRestockCannotSwallowTheRealOne", func(t *testing.T) {
		publish := func(body string) *jetstream.PubAck {
			t.Helper()
			m := nats.NewMsg(catalog.SubjectRestock)
			m.Header.Set(jetstream.MsgIDHeader, "restock-hijacked")
			m.Data = []byte(body)
			ack, err := js.PublishMsg(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			return ack
		}
		junk := publish(`{"sku":"SKU-HJ","quantity":1}`)
		// Within the duplicate window the stream drops the real command,
		// and says so to its publisher.
		if ack := publish(`{"sku":"SKU-HJ","quantity":100}`); !ack.Duplicate || ack.Sequence != junk.Sequence {
			t.Errorf("real restock within the window: ack %+v, want a duplicate of sequence %d", ack, junk.Sequence)
		}
		time.Sleep(1500 * time.Millisecond) // past the 1s window
		publish(`{"sku":"SKU-HJ","quantity":100}`)
		deadLetter(t, ctx, js, catalog.Inventory, catalog.SubjectRestock,
			fmt.Sprintf("was used by an earlier command (COMMANDS:%d)", junk.Sequence))
		wantStock(t, ctx, c, "SKU-HJ", 1, 0, 0)
	})
	t.Run("RestockReusingACommandIDIsAConflict", func(t *testing.T) {
		for _, sku := range []string{"SKU-R1", "SKU-R2"} {
			if _, err := js.Publish(ctx, catalog.SubjectRestock, []byte(`{"command_id":"restock-reused","sku":"`+sku+`","quantity":5}`)); err != nil {
				t.Fatal(err)
			}
		}
		deadLetter(t, ctx, js, catalog.Inventory, catalog.SubjectRestock, `"cmd.inventory.restock:restock-reused" was used by an earlier command`)
		wantStock(t, ctx, c, "SKU-R1", 5, 0, 0)
		wantStock(t, ctx, c, "SKU-R2", 0, 0, 0)
	})
}

// forge publishes a CloudEvent on subject claiming to come from service,
// as anyone on an unrestricted server can.
func forge(t *testing.T, ctx context.Context, js jetstream.JetStream, subject, typ, service string, data any) {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	body, err := events.Encode(events.Envelope{SpecVersion: events.SpecVersion, ID: events.NewID(), Source: catalog.Source(service),
		Type: typ, Subject: events.SubjectKey(subject), Time: time.Now(), Data: raw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, body); err != nil {
		t.Fatal(err)
	}
}

// deadLetter waits for service's dead letter of a message on subject whose
// reason says want.
func deadLetter(t *testing.T, ctx context.Context, js jetstream.JetStream, service, subject, want string) {
	t.Helper()
	s, err := js.Stream(ctx, catalog.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "dead letter of "+subject+" saying "+want, func() (bool, string) {
		m, err := s.GetLastMsgForSubject(ctx, catalog.DLQSubject(service)+"."+subject)
		if err != nil {
			return false, err.Error()
		}
		reason := m.Header.Get(dlq.HeaderReason)
		return strings.Contains(reason, want), reason
	})
}
