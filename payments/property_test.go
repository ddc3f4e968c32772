package payments_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
)

// Property test size. rapid runs its -rapid.checks cases (100 unless the
// flag or RAPID_CHECKS says otherwise; a fifth of that with -short) per
// batch, and each backend runs propertyBatches batches: in CI, where both
// SQLite and PostgreSQL are required, 2 × 2 × 100 = 400 cases.
const (
	propertyBatches = 2
	// minPropertyCases is the least a full (not -short) run must have
	// checked per backend, so that a change of rapid's default cannot
	// quietly shrink the test.
	minPropertyCases = 200
)

// sagaScenario is one outcome of the saga as payments sees it: the inputs
// it gets, whether the provider declines the order, and what the run with
// the inputs in the listed order, once each and without failures, ends
// with.
type sagaScenario struct {
	name     string
	inputs   []string // "placed", "reserved", "cancelled"
	declines bool
	// outage: every provider call fails (before or after it acted) until
	// the cancellation is delivered, so that the cancellation often finds
	// a capture decided and not recorded: the race this is about.
	outage bool
	reason string // of the cancellation
	// inOrderPre is the payment's status just before the in-order run's
	// cancellation (unused without a cancellation), inOrder the events of
	// the in-order run.
	inOrderPre payments.Status
	inOrder    []string
}

var sagaScenarios = []sagaScenario{
	{name: "Confirmed", inputs: []string{"placed", "reserved"}, inOrder: capturedOnly},
	{name: "Declined", inputs: []string{"placed", "reserved"}, declines: true, inOrder: declinedOnly},
	// The customer (or the deadline) cancels after the stock was
	// reserved: in order, the capture comes first and is refunded.
	{name: "CancelledAfterReservation", inputs: []string{"placed", "reserved", "cancelled"},
		reason: catalog.ReasonCustomerCancelled, inOrderPre: payments.Captured, inOrder: capturedThen},
	// The provider is down, and the deadline cancels the order. Whether
	// the capture that failed took money depends on the failure, so there
	// is no in-order run to compare with (no inOrderPre); the money and
	// the derived events are checked all the same.
	{name: "CancelledDuringOutage", inputs: []string{"placed", "reserved", "cancelled"}, outage: true,
		reason: catalog.ReasonTimeout},
	// orders answers payments.declined with a cancellation.
	{name: "DeclinedThenCancelled", inputs: []string{"placed", "reserved", "cancelled"}, declines: true,
		reason: catalog.ReasonPaymentDeclined, inOrderPre: payments.Declined, inOrder: declinedOnly},
	// Out of stock: payments never sees inventory.reserved.
	{name: "CancelledOutOfStock", inputs: []string{"placed", "cancelled"},
		reason: catalog.ReasonOutOfStock, inOrderPre: payments.Waiting, inOrder: voidedOnly},
	// Cancelled (timeout) before payments heard of orders.placed.
	{name: "CancelledBeforePlaced", inputs: []string{"reserved", "cancelled"},
		reason: catalog.ReasonTimeout, inOrderPre: payments.Waiting, inOrder: voidedOnly},
}

// TestSagaAnyArrivalOrder feeds, for every saga outcome, a random
// permutation of the order's inputs with random duplicates and random
// provider failures (an outage or another error, before or after the
// provider acted), redelivering every failed message later, as the
// consumer does. Whatever the schedule:
//   - every failure is retryable, of kind unavailable for an outage;
//   - the payment ends settled (no provider call owed);
//   - money captured − refunded is the total for a confirmed order, 0 for
//     a declined or cancelled one, and the provider's books agree;
//   - exactly one of payments.captured and payments.declined is published
//     for an order not cancelled, at most one of each pair for a cancelled
//     one, and one of payments.refunded and payments.voided unless the
//     order was declined;
//   - the events are those of the in-order run, except where the outcome
//     depends on a race the schedule decides: a cancellation that beats the
//     capture voids the payment instead of refunding it. The test then
//     derives what must have happened from the payment's status when the
//     cancellation committed, and checks the events exactly against that.
func TestSagaAnyArrivalOrder(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// One database for all cases, a fresh order per case: the
			// property is per order, and a schema per case would make the
			// test slow without testing more.
			h := newHarness(t, b)
			cases := 0
			paths := map[string]int{} // how the cases went, for the log
			property := func(rt *rapid.T) {
				cases++
				sc := rapid.SampledFrom(sagaScenarios).Draw(rt, "scenario")
				paths[runSagaCase(t, rt, h, sc, fmt.Sprintf("order-%s-%05d", strings.ToLower(sc.name), cases))]++
			}
			for i := range propertyBatches {
				t.Run(fmt.Sprint("Batch", i), func(t *testing.T) { rapid.Check(t, property) })
			}
			if !testing.Short() && cases < minPropertyCases {
				t.Errorf("property cases: got %d, want at least %d", cases, minPropertyCases)
			}
			t.Logf("%d property cases; paths: %v", cases, paths)
		})
	}
}

// injected is a provider failure armed for the next delivery.
type injected struct {
	err  error
	kind events.Kind
}

// runSagaCase runs one case and returns the path it took: the scenario,
// and for a cancellation the status it found (and whether the provider
// held a charge then).
func runSagaCase(t *testing.T, rt *rapid.T, h *harness, sc sagaScenario, id string) (path string) {
	if sc.declines {
		h.faults.decline(id, "card_declined")
	}
	msgs := map[string]func() *consumer.Message{
		"placed":    func() *consumer.Message { return placedMsg(t, id) },
		"reserved":  func() *consumer.Message { return reservedMsg(t, id) },
		"cancelled": func() *consumer.Message { return cancelledMsg(t, id, sc.reason) },
	}
	var queue []*consumer.Message
	for _, in := range sc.inputs {
		for range rapid.IntRange(1, 3).Draw(rt, "copies of "+in) {
			queue = append(queue, msgs[in]())
		}
	}
	queue = rapid.Permutation(queue).Draw(rt, "arrival order")
	failuresLeft := rapid.IntRange(0, 4).Draw(rt, "provider failures")

	cancelling := slices.Contains(sc.inputs, "cancelled")
	var (
		cancelSeen     bool            // the cancellation has committed
		cancelPre      payments.Status // the status just before it did
		chargedAtCalls bool            // the provider held a charge then
	)
	for deliveries := 0; len(queue) > 0; deliveries++ {
		if deliveries > 100 {
			rt.Fatalf("still %d messages to deliver after %d deliveries", len(queue), deliveries)
		}
		m := queue[0]
		queue = queue[1:]
		var armed *injected
		if (sc.outage && !cancelSeen) || (failuresLeft > 0 && rapid.Bool().Draw(rt, "fail the next provider call")) {
			if !sc.outage || cancelSeen {
				failuresLeft--
			}
			armed = &injected{err: errProviderDown, kind: events.KindUnavailable}
			if rapid.Bool().Draw(rt, "not an outage") {
				armed = &injected{err: errProviderBroken, kind: events.KindTransient}
			}
			if rapid.Bool().Draw(rt, "after the provider acted") {
				h.faults.failNextWith(0, 1, armed.err)
			} else {
				h.faults.failNextWith(1, 0, armed.err)
			}
		}
		isCancel := strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventCancelled+".")
		var pre payments.Status
		var charged bool
		if isCancel && !cancelSeen {
			pre, charged = statusOf(rt, h, id), h.books(id).captured != 0
		}
		err := h.svc.Handle(context.Background(), m)
		h.faults.failNextWith(0, 0, nil) // an unused fault must not leak into the next delivery
		if isCancel && !cancelSeen {
			cancelSeen, cancelPre, chargedAtCalls = true, pre, charged
		}
		if errors.Is(err, payments.ErrNotPlaced) && events.KindOf(err) == events.KindEarly {
			// A reservation ahead of its order waits for it: nothing
			// changed, and it comes again after the others.
			queue = append(queue, m)
			continue
		}
		if err != nil {
			switch {
			case armed == nil:
				rt.Fatalf("%s: got %v with no failure injected", m.Subject, err)
			case events.IsPermanent(err) || events.KindOf(err) != armed.kind || !errors.Is(err, armed.err):
				rt.Fatalf("%s: got %v (kind %s), want kind %s wrapping %v", m.Subject, err, events.KindOf(err), armed.kind, armed.err)
			}
			queue = append(queue, m) // redelivered after the others, as a nak'ed message is
		}
	}

	// What must have happened.
	var (
		wantStatus payments.Status
		wantEvents []string
		wantMoney  money
	)
	switch {
	case !cancelling && !sc.declines:
		wantStatus, wantEvents, wantMoney = payments.Captured, capturedOnly, money{1200, 0}
	case !cancelling:
		wantStatus, wantEvents = payments.Declined, declinedOnly
	case cancelPre == payments.Waiting:
		wantStatus, wantEvents = payments.Voided, voidedOnly
	case cancelPre == payments.Captured:
		wantStatus, wantEvents, wantMoney = payments.Refunded, capturedThen, money{1200, 1200}
	case cancelPre == payments.Declined:
		wantStatus, wantEvents = payments.Declined, declinedOnly
	case cancelPre == payments.CapturePending && chargedAtCalls:
		// The charge was made, its answer lost; the refund is the first
		// the service hears of it, and it publishes both.
		wantStatus, wantEvents, wantMoney = payments.Refunded, capturedThen, money{1200, 1200}
	case cancelPre == payments.CapturePending:
		wantStatus, wantEvents = payments.Voided, voidedOnly
	default:
		rt.Fatalf("the cancellation committed in status %s", cancelPre)
	}
	if (!cancelling || cancelPre == sc.inOrderPre) && !slices.Equal(wantEvents, sc.inOrder) {
		rt.Fatalf("test bug: expected events %v, the in-order run publishes %v", wantEvents, sc.inOrder)
	}

	p, err := h.svc.Get(context.Background(), id)
	if err != nil {
		rt.Fatalf("Get: %v", err)
	}
	if p.Status != wantStatus || p.Status.Pending() {
		rt.Fatalf("status: got %s, want %s (cancellation in status %s)", p.Status, wantStatus, cancelPre)
	}
	names := eventNames(t, h.db, id)
	if !slices.Equal(names, wantEvents) {
		rt.Fatalf("events: got %v, want %v (cancellation in status %s)", names, wantEvents, cancelPre)
	}
	var finals, compensations int
	for _, n := range names {
		switch n {
		case catalog.EventCaptured, catalog.EventDeclined:
			finals++
		case catalog.EventRefunded, catalog.EventVoided:
			compensations++
		}
	}
	if finals > 1 || compensations > 1 || (!cancelling && finals != 1) || (cancelling && !sc.declines && compensations != 1) {
		rt.Fatalf("events: got %v, want one of captured|declined and at most one of refunded|voided", names)
	}
	all, err := h.store.Money(context.Background())
	if err != nil {
		rt.Fatalf("Money: %v", err)
	}
	got := money{all[id].Captured, all[id].Refunded}
	if got != wantMoney || h.books(id) != wantMoney {
		rt.Fatalf("money: store got %+v, provider's books %+v, want %+v", got, h.books(id), wantMoney)
	}
	wantNet := int64(0)
	if !cancelling && !sc.declines {
		wantNet = eur1200.Amount
	}
	if all[id].Net() != wantNet {
		rt.Fatalf("captured − refunded: got %d, want %d", all[id].Net(), wantNet)
	}
	if cancelling && cancelPre == payments.Waiting && h.faults.KeyCalls(id) != 0 {
		rt.Fatalf("provider calls for an order cancelled before its capture was decided: got %d, want 0", h.faults.KeyCalls(id))
	}
	// Once confirmed, a captured order is never refunded: orders.confirmed
	// (delivered once or more) then a forged orders.cancelled, which is
	// refused and moves no money.
	if !cancelling && !sc.declines {
		for range rapid.IntRange(1, 2).Draw(rt, "copies of confirmed") {
			if err := h.svc.Handle(context.Background(), confirmedMsg(t, id)); err != nil {
				rt.Fatalf("orders.confirmed: %v", err)
			}
		}
		err := h.svc.Handle(context.Background(), cancelledMsg(t, id, catalog.ReasonTimeout))
		if !events.IsPermanent(err) || !errors.Is(err, payments.ErrConfirmed) {
			rt.Fatalf("orders.cancelled of a confirmed order: got %v, want a permanent error wrapping ErrConfirmed", err)
		}
		if p, err := h.svc.Get(context.Background(), id); err != nil || p.Status != payments.Captured || h.books(id) != wantMoney {
			rt.Fatalf("after the forged cancel: payment %+v (%v), provider's books %+v; want CAPTURED and %+v", p, err, h.books(id), wantMoney)
		}
	}
	path = sc.name
	if cancelling {
		path += "/cancel-in-" + string(cancelPre)
		if cancelPre == payments.CapturePending && chargedAtCalls {
			path += "-charged"
		}
	}
	return path
}

// statusOf returns the status of the payment of id, WAITING when it has
// none yet.
func statusOf(rt *rapid.T, h *harness, id string) payments.Status {
	p, err := h.svc.Get(context.Background(), id)
	if errors.Is(err, payments.ErrNotFound) {
		return payments.Waiting
	}
	if err != nil {
		rt.Fatalf("Get: %v", err)
	}
	return p.Status
}
