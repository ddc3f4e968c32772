package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/inventory"
)

// TestHandle drives the service through Handle with encoded messages, on
// every engine.
func TestHandle(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			tests := []struct {
				name string
				run  func(t *testing.T, h *harness)
			}{
				{"RestockCommandAppliedOnce", testRestockCommand},
				{"RestockKeyPrefersNatsMsgID", testRestockNatsMsgID},
				{"RestockInCloudEvent", testRestockCloudEvent},
				{"RestockKeyReusedWithAnotherBodyIsAConflict", testRestockKeyReused},
				{"PlacedReservesEveryLineOnce", testPlacedReserves},
				{"PlacedShortReservesNothing", testPlacedShort},
				{"PlacedAgainForDecidedOrderChangesNothing", testPlacedAgain},
				{"ConfirmedCommitsOnce", testConfirmedCommits},
				{"ConfirmedBeforePlacedCommitsOnPlacement", testConfirmedEarly},
				{"ConfirmedBeforePlacedWithoutStockFails", testConfirmedEarlyShort},
				{"ConfirmedForFailedReservationIsNoop", testConfirmedFailed},
				{"CancelledReleasesOnce", testCancelledReleases},
				{"CancelledBeforePlacedReservesNothing", testCancelledEarly},
				{"CancelledOutOfStockIsNoop", testCancelledFailed},
				{"CancelledAfterConfirmedIsLoggedAndChangesNothing", testCancelledCommitted},
				{"RepublishedInputsChangeNothing", testRepublished},
				{"TraceParentFollowsTheSaga", testTraceParent},
				{"BadInputIsPermanentAndChangesNothing", testBadInput},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, newHarness(t, b.Open(t))) })
			}
		})
	}
}

func handle(t *testing.T, h *harness, msgs ...*consumer.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := h.svc.Handle(context.Background(), m); err != nil {
			t.Fatalf("handle %s: %v", m.Subject, err)
		}
	}
}

func wantStock(t *testing.T, h *harness, want ...inventory.Stock) {
	t.Helper()
	for _, w := range want {
		got, err := h.svc.Get(context.Background(), w.SKU)
		if err != nil {
			t.Fatalf("get %s: %v", w.SKU, err)
		}
		if got != w {
			t.Errorf("stock = %+v, want %+v", got, w)
		}
	}
}

func wantReservation(t *testing.T, h *harness, orderID string, want inventory.ReservationStatus) {
	t.Helper()
	res, err := h.store.Reservation(context.Background(), orderID)
	if err != nil {
		t.Fatalf("reservation %s: %v", orderID, err)
	}
	if res.Status != want {
		t.Errorf("reservation %s is %s, want %s", orderID, res.Status, want)
	}
}

// lastEvent returns the last event in the outbox after checking its type.
func lastEvent(t *testing.T, h *harness, wantType string) published {
	t.Helper()
	out := outbox(t, h.db)
	if len(out) == 0 {
		t.Fatalf("outbox is empty, want a %s", wantType)
	}
	e := out[len(out)-1]
	if e.Type != wantType {
		t.Fatalf("last event is %s, want %s", e.Type, wantType)
	}
	return e
}

func decode[T any](t *testing.T, e published) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("decode %s: %v", e.Type, err)
	}
	return v
}

func testRestockCommand(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5))
	// The same command published again (a new stream message) is a duplicate.
	handle(t, h, restockCmd(t, "r-1", "A", 5))
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 5})

	out := outbox(t, h.db)
	if len(out) != 1 {
		t.Fatalf("outbox has %d events, want 1", len(out))
	}
	e := out[0]
	if e.ID != events.DerivedID("cmd.inventory.restock:r-1", "inventory.restocked") ||
		e.Subject != "A" || e.Type != catalog.TypeStockRestocked || e.Source != "/choreo/inventory" {
		t.Errorf("event = %+v", e.Envelope)
	}
	if got, want := decode[catalog.StockRestocked](t, e), (catalog.StockRestocked{SKU: "A", Quantity: 5, Available: 5}); got != want {
		t.Errorf("data = %+v, want %+v", got, want)
	}

	// A new command id is a new restock.
	handle(t, h, restockCmd(t, "r-2", "A", 2))
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 7})
	if got := decode[catalog.StockRestocked](t, lastEvent(t, h, catalog.TypeStockRestocked)); got.Available != 7 {
		t.Errorf("restocked available = %d, want 7", got.Available)
	}
}

func testRestockNatsMsgID(t *testing.T, h *harness) {
	a := restockCmd(t, "", "A", 1)
	a.Header.Set(jetstream.MsgIDHeader, "m-1")
	b := restockCmd(t, "", "A", 1)
	b.Header.Set(jetstream.MsgIDHeader, "m-1")
	c := restockCmd(t, "", "A", 1) // no id at all: its stream position is its key
	handle(t, h, a, b, c, c)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 2})
}

func testRestockCloudEvent(t *testing.T, h *harness) {
	m := eventMessage(t, catalog.StreamCommands, events.Outgoing{
		ID: "ce-1", Subject: catalog.SubjectRestock, Type: "choreo.inventory.restock.v1", Source: "/warehouse", Time: t0,
		Data: catalog.Restock{SKU: "A", Quantity: 4},
	})
	dup := message(m.Stream, m.Subject, m.Data)
	handle(t, h, m, dup)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 4})
}

func testPlacedReserves(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5), restockCmd(t, "r-2", "B", 1))
	m := placed(t, "o-1", line("A", 2), line("B", 1))
	handle(t, h, m, m)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 3, Reserved: 2}, inventory.Stock{SKU: "B", Reserved: 1})
	wantReservation(t, h, "o-1", inventory.Reserved)

	e := lastEvent(t, h, catalog.TypeStockReserved)
	if e.ID != events.DerivedID("o-1", "inventory.reserved") || e.Subject != "o-1" {
		t.Errorf("event = %+v", e.Envelope)
	}
	want := catalog.StockReserved{OrderID: "o-1", Items: []catalog.StockLine{line("A", 2), line("B", 1)}}
	if got := decode[catalog.StockReserved](t, e); !reflect.DeepEqual(got, want) {
		t.Errorf("data = %+v, want %+v", got, want)
	}
	if n := len(outbox(t, h.db)); n != 3 {
		t.Errorf("outbox has %d events, want 3 (2 restocked, 1 reserved)", n)
	}
}

func testPlacedShort(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5), restockCmd(t, "r-2", "B", 1))
	handle(t, h, placed(t, "o-1", line("A", 2), line("B", 2), line("NEVER", 1)))
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 5}, inventory.Stock{SKU: "B", Available: 1}, inventory.Stock{SKU: "NEVER"})
	wantReservation(t, h, "o-1", inventory.Failed)

	e := lastEvent(t, h, catalog.TypeStockReservationFailed)
	if e.ID != events.DerivedID("o-1", "inventory.reservation_failed") {
		t.Errorf("event id = %s", e.ID)
	}
	want := catalog.StockReservationFailed{OrderID: "o-1", Reason: catalog.ReasonOutOfStock, Shortages: []catalog.Shortage{
		{SKU: "B", Requested: 2, Available: 1}, {SKU: "NEVER", Requested: 1, Available: 0},
	}}
	if got := decode[catalog.StockReservationFailed](t, e); !reflect.DeepEqual(got, want) {
		t.Errorf("data = %+v, want %+v", got, want)
	}
}

func testPlacedAgain(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 1))
	handle(t, h, placed(t, "o-1", line("A", 5))) // fails
	handle(t, h, restockCmd(t, "r-2", "A", 9))
	before := outboxIDs(t, h.db)

	// The same order placed again under another event id (re-published by
	// an operator, say) must not reserve now that stock arrived.
	again := placed(t, "o-1", line("A", 5))
	var env events.Envelope
	if err := json.Unmarshal(again.Data, &env); err != nil {
		t.Fatal(err)
	}
	env.ID = "another-id"
	body, err := events.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	handle(t, h, message(again.Stream, again.Subject, body))
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 10})
	wantReservation(t, h, "o-1", inventory.Failed)
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}
}

func testConfirmedCommits(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5))
	handle(t, h, placed(t, "o-1", line("A", 2)))
	c := confirmed(t, "o-1", line("A", 2))
	handle(t, h, c, c)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 3, Sold: 2})
	wantReservation(t, h, "o-1", inventory.Committed)
	e := lastEvent(t, h, catalog.TypeReservationCommitted)
	if e.ID != events.DerivedID("o-1", "inventory.committed") {
		t.Errorf("event id = %s", e.ID)
	}
	want := catalog.ReservationCommitted{OrderID: "o-1", Items: []catalog.StockLine{line("A", 2)}}
	if got := decode[catalog.ReservationCommitted](t, e); !reflect.DeepEqual(got, want) {
		t.Errorf("data = %+v, want %+v", got, want)
	}
	if n := len(outbox(t, h.db)); n != 3 {
		t.Errorf("outbox has %d events, want 3", n)
	}
}

func testConfirmedEarly(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5))
	before := outboxIDs(t, h.db)
	c := confirmed(t, "o-1", line("A", 2))
	// Not an error to retry any more: the confirmation is remembered.
	handle(t, h, c, c)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 5})
	wantReservation(t, h, "o-1", inventory.AwaitingPlacement)
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}

	p := placed(t, "o-1", line("A", 2))
	handle(t, h, p, p, c)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 3, Sold: 2})
	wantReservation(t, h, "o-1", inventory.Committed)
	want := append(slices.Clone(before), events.DerivedID("o-1", "inventory.reserved"), events.DerivedID("o-1", "inventory.committed"))
	slices.Sort(want)
	if got := outboxIDs(t, h.db); !slices.Equal(got, want) {
		t.Errorf("outbox = %v, want %v", got, want)
	}
	lastEvent(t, h, catalog.TypeReservationCommitted)
	if errs := h.logs.lines(slog.LevelWarn); len(errs) != 0 {
		t.Errorf("logged %v, want nothing: an early confirmation is no anomaly", errs)
	}
}

func testConfirmedEarlyShort(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 1))
	handle(t, h, confirmed(t, "o-1", line("A", 2)), placed(t, "o-1", line("A", 2)))
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 1})
	wantReservation(t, h, "o-1", inventory.Failed)
	lastEvent(t, h, catalog.TypeStockReservationFailed)
	if errs := h.logs.lines(slog.LevelError); len(errs) != 1 || !strings.Contains(errs[0], `"order_id":"o-1"`) {
		t.Errorf("error log = %v, want one line about o-1", errs)
	}
}

func testConfirmedFailed(t *testing.T, h *harness) {
	handle(t, h, placed(t, "o-1", line("A", 2)))
	before := outboxIDs(t, h.db)
	handle(t, h, confirmed(t, "o-1", line("A", 2)))
	wantReservation(t, h, "o-1", inventory.Failed)
	wantStock(t, h, inventory.Stock{SKU: "A"})
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}
}

func testCancelledReleases(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5), restockCmd(t, "r-2", "B", 1))
	handle(t, h, placed(t, "o-1", line("A", 2), line("B", 1)))
	x := cancelled(t, "o-1", catalog.ReasonPaymentDeclined, line("A", 2), line("B", 1))
	handle(t, h, x, x)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 5}, inventory.Stock{SKU: "B", Available: 1})
	wantReservation(t, h, "o-1", inventory.Released)

	e := lastEvent(t, h, catalog.TypeReservationReleased)
	if e.ID != events.DerivedID("o-1", "inventory.released") || e.Subject != "o-1" || e.Source != "/choreo/inventory" {
		t.Errorf("event = %+v", e.Envelope)
	}
	want := catalog.ReservationReleased{OrderID: "o-1", Items: []catalog.StockLine{line("A", 2), line("B", 1)}}
	if got := decode[catalog.ReservationReleased](t, e); !reflect.DeepEqual(got, want) {
		t.Errorf("data = %+v, want %+v", got, want)
	}
	if n := len(outbox(t, h.db)); n != 4 {
		t.Errorf("outbox has %d events, want 4 (2 restocked, reserved, released)", n)
	}
	// The released units serve the next order.
	handle(t, h, placed(t, "o-2", line("A", 5), line("B", 1)))
	wantStock(t, h, inventory.Stock{SKU: "A", Reserved: 5}, inventory.Stock{SKU: "B", Reserved: 1})
	wantReservation(t, h, "o-2", inventory.Reserved)
}

func testCancelledEarly(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 2))
	before := outboxIDs(t, h.db)
	x := cancelled(t, "o-1", catalog.ReasonCustomerCancelled, line("A", 2))
	p := placed(t, "o-1", line("A", 2))
	handle(t, h, x)
	wantReservation(t, h, "o-1", inventory.Cancelled)
	handle(t, h, p, x, p)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 2})
	wantReservation(t, h, "o-1", inventory.Cancelled)
	res, err := h.store.Reservation(context.Background(), "o-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (inventory.Inputs{Placed: true, Cancelled: true}); res.Seen != want || !reflect.DeepEqual(res.Lines, []catalog.StockLine{line("A", 2)}) {
		t.Errorf("tombstone = %+v, want seen %+v and the placed lines", res, want)
	}
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v: nothing reserved, nothing to announce", got, before)
	}
	// The stock the tombstone did not take is there for others.
	handle(t, h, placed(t, "o-2", line("A", 2)))
	wantReservation(t, h, "o-2", inventory.Reserved)
	if errs := h.logs.lines(slog.LevelWarn); len(errs) != 0 {
		t.Errorf("logged %v, want nothing: an early cancellation is no anomaly", errs)
	}
}

func testCancelledFailed(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 1))
	handle(t, h, placed(t, "o-1", line("A", 2)))
	before := outboxIDs(t, h.db)
	x := cancelled(t, "o-1", catalog.ReasonOutOfStock, line("A", 2))
	handle(t, h, x, x)
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 1})
	wantReservation(t, h, "o-1", inventory.Failed)
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}
}

func testCancelledCommitted(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5))
	handle(t, h, placed(t, "o-1", line("A", 2)), confirmed(t, "o-1", line("A", 2)))
	before := outboxIDs(t, h.db)
	x := cancelled(t, "o-1", catalog.ReasonTimeout, line("A", 2))
	handle(t, h, x, x, republished(t, x, "another-id"))
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 3, Sold: 2})
	wantReservation(t, h, "o-1", inventory.Committed)
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}
	errs := h.logs.lines(slog.LevelError)
	if len(errs) != 1 || !strings.Contains(errs[0], `"order_id":"o-1"`) || !strings.Contains(errs[0], "confirmed and cancelled") {
		t.Errorf("error log = %v, want one line about o-1: logged once, not per duplicate", errs)
	}
}

// testRepublished feeds each input of two sagas again as new messages
// under new event ids: the inbox lets them through, the domain ignores them.
func testRepublished(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 4))
	msgs := []*consumer.Message{
		placed(t, "o-1", line("A", 2)), confirmed(t, "o-1", line("A", 2)),
		placed(t, "o-2", line("A", 2)), cancelled(t, "o-2", catalog.ReasonPaymentDeclined, line("A", 2)),
		cancelled(t, "o-3", catalog.ReasonCustomerCancelled, line("A", 1)), placed(t, "o-3", line("A", 1)),
		confirmed(t, "o-4", line("A", 1)),
	}
	handle(t, h, msgs...)
	before := outboxIDs(t, h.db)
	for i, m := range msgs {
		handle(t, h, republished(t, m, fmt.Sprintf("again-%d", i)))
	}
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 2, Sold: 2})
	wantReservation(t, h, "o-1", inventory.Committed)
	wantReservation(t, h, "o-2", inventory.Released)
	wantReservation(t, h, "o-3", inventory.Cancelled)
	wantReservation(t, h, "o-4", inventory.AwaitingPlacement)
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}
}

func testTraceParent(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-1", "A", 5))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := events.ExtractTrace(context.Background(), nats.Header{events.HeaderTraceParent: {parent}})
	if err := h.svc.Handle(ctx, placed(t, "o-1", line("A", 1))); err != nil {
		t.Fatal(err)
	}
	e := lastEvent(t, h, catalog.TypeStockReserved)
	got, ok := events.TraceID(e.TraceParent)
	want, _ := events.TraceID(parent)
	if !ok || got != want {
		t.Errorf("traceparent = %q, want one in the trace of %q", e.TraceParent, parent)
	}
}

func testBadInput(t *testing.T, h *harness) {
	handle(t, h, restockCmd(t, "r-0", "A", 5))
	before := outboxIDs(t, h.db)
	cmd := func(body string) *consumer.Message {
		return message(catalog.StreamCommands, catalog.SubjectRestock, []byte(body))
	}
	evt := func(subject, body string) *consumer.Message {
		return message(catalog.StreamOrders, subject, []byte(body))
	}
	wrongType := placed(t, "o-9", line("A", 1))
	var env events.Envelope
	if err := json.Unmarshal(wrongType.Data, &env); err != nil {
		t.Fatal(err)
	}
	env.Type = catalog.TypeOrderConfirmed
	wrongTypeBody, _ := events.Encode(env)
	env.Type = catalog.TypeOrderPlaced
	env.Data = json.RawMessage(`{"order_id":"o-9","customer_id":"c-1","items":[],"total":{"amount":0,"currency":"EUR"}}`)
	noItemsBody, _ := events.Encode(env)

	tests := []struct {
		name string
		msg  *consumer.Message
	}{
		{"MalformedJSON", cmd(`{"command_id":"r-1","sku":"A","quantity":`)},
		{"MissingSKU", cmd(`{"command_id":"r-1","quantity":1}`)},
		{"NegativeQuantity", cmd(`{"command_id":"r-1","sku":"A","quantity":-1}`)},
		{"ZeroQuantity", cmd(`{"command_id":"r-1","sku":"A","quantity":0}`)},
		{"UnknownField", cmd(`{"command_id":"r-1","sku":"A","qty":1}`)},
		{"BadSKU", cmd(`{"command_id":"r-1","sku":"A.B","quantity":1}`)},
		{"NotJSONEvent", evt("orders.placed.o-9", `not json`)},
		{"InvalidCloudEvent", evt("orders.placed.o-9", `{"specversion":"1.0","id":"x"}`)},
		{"WrongEventType", evt("orders.placed.o-9", string(wrongTypeBody))},
		{"PlacedWithoutItems", evt("orders.placed.o-9", string(noItemsBody))},
		{"CancelledWrongType", evt("orders.cancelled.o-9", string(wrongTypeBody))},
		{"CancelledUnknownReason", cancelled(t, "o-9", "bored", line("A", 1))},
		{"CancelledNoOrderID", cancelled(t, "", catalog.ReasonTimeout, line("A", 1))},
		{"UnknownCommand", message(catalog.StreamCommands, "cmd.inventory.teleport", []byte(`{}`))},
		{"UnknownSubject", evt("orders.shipped.o-9", `{}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.svc.Handle(context.Background(), tt.msg)
			if !events.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent error", err)
			}
		})
	}
	if err := h.svc.Handle(context.Background(), message(catalog.StreamCommands, "cmd.inventory.teleport", []byte(`{}`))); !errors.Is(err, catalog.ErrUnknownSubject) {
		t.Errorf("unknown subject: err = %v, want ErrUnknownSubject", err)
	}
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 5})
	if got := allStock(t, h.store); len(got) != 1 {
		t.Errorf("stock rows = %+v, want only A", got)
	}
	if got := outboxIDs(t, h.db); !slices.Equal(got, before) {
		t.Errorf("outbox = %v, want unchanged %v", got, before)
	}
	var claims int
	if err := h.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM inbox`).Scan(&claims); err != nil {
		t.Fatal(err)
	}
	if claims != 1 {
		t.Errorf("inbox has %d claims, want 1: rejected input must not be claimed", claims)
	}
}

func TestConsumer(t *testing.T) {
	h := newHarness(t, sqltest.MustOpen(t, sqltest.SQLiteURL(t)))
	c := h.svc.Consumer()
	type want struct {
		stream, durable string
		filters, skip   []string
	}
	// Restocks have a durable consumer of their own (a flood of them
	// retried cannot hold back another command); "inventory" takes every
	// other command to inventory, to dead-letter it.
	wants := []want{
		{catalog.StreamOrders, "inventory", []string{"orders.placed.*", "orders.confirmed.*", "orders.cancelled.*"}, nil},
		{catalog.StreamCommands, "inventory", []string{"cmd.inventory.>"}, []string{"cmd.inventory.restock"}},
		{catalog.StreamCommands, "inventory-restock", []string{"cmd.inventory.restock"}, nil},
	}
	if len(c.Sources) != len(wants) {
		t.Fatalf("%d sources, want %d", len(c.Sources), len(wants))
	}
	for i, w := range wants {
		s := c.Sources[i]
		if s.Stream != w.stream || s.Durable != w.durable || !slices.Equal(s.FilterSubjects, w.filters) || !slices.Equal(s.Skip, w.skip) {
			t.Errorf("source %d = %+v, want stream %s, durable %s, filters %v, skipping %v", i, s, w.stream, w.durable, w.filters, w.skip)
		}
	}
	if c.DLQSubject != "dlq.inventory" || c.Handler == nil {
		t.Errorf("consumer: DLQ subject %q, handler set %v; want dlq.inventory and a handler", c.DLQSubject, c.Handler != nil)
	}
}

func TestNewNeedsAStore(t *testing.T) {
	if _, err := inventory.New(inventory.Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
}

// A restock key arriving again with another SKU or quantity is a conflict
// naming the earlier command — dead-lettered over NATS, 409 over HTTP —
// never taken for a duplicate (a restock of 100 must not become 1 because
// a junk restock of 1 claimed its key first); the same body under the
// same key, over NATS or HTTP, bare or in a CloudEvent, is a duplicate.
func testRestockKeyReused(t *testing.T, h *harness) {
	junk := restockCmd(t, "", "A", 1)
	junk.Header.Set(jetstream.MsgIDHeader, "r-100")
	handle(t, h, junk)
	for _, tc := range []struct {
		name string
		m    *consumer.Message
	}{
		{"AnotherQuantity", restockCmd(t, "r-100", "A", 100)},
		{"AnotherSKU", restockCmd(t, "r-100", "B", 1)},
	} {
		err := h.svc.Handle(context.Background(), tc.m)
		if events.KindOf(err) != events.KindConflict || !errors.Is(err, inbox.ErrKeyReused) {
			t.Fatalf("%s: got %v, want a conflict (a dead letter) wrapping inbox.ErrKeyReused", tc.name, err)
		}
		if want := fmt.Sprintf("earlier command (%s:%d)", junk.Stream, junk.Sequence); !strings.Contains(err.Error(), want) {
			t.Errorf("%s: reason %q does not name the earlier command, %s", tc.name, err, want)
		}
	}
	// The same body again, its id now in command_id: a duplicate.
	handle(t, h, restockCmd(t, "r-100", "A", 1))
	// Over HTTP, the same key: the same body is a duplicate, another a
	// conflict.
	if _, err := h.svc.Restock(context.Background(), inventory.RestockKey("r-100"), catalog.Restock{SKU: "A", Quantity: 1}); err != nil {
		t.Errorf("same restock over HTTP: got %v, want a duplicate", err)
	}
	if _, err := h.svc.Restock(context.Background(), inventory.RestockKey("r-100"), catalog.Restock{SKU: "A", Quantity: 100}); events.KindOf(err) != events.KindConflict {
		t.Errorf("another restock over HTTP under the key: got %v, want a conflict (409)", err)
	}
	wantStock(t, h, inventory.Stock{SKU: "A", Available: 1}, inventory.Stock{SKU: "B"})
	if n := len(outbox(t, h.db)); n != 1 {
		t.Errorf("outbox: got %d events, want 1 (the first restock)", n)
	}
}
