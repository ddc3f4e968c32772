package payments_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/provider"
)

func TestHandle(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("PlacedThenReservedCapturesOnce", func(t *testing.T) { testInOrder(t, b, true) })
			t.Run("ReservedThenPlacedCapturesOnce", func(t *testing.T) { testInOrder(t, b, false) })
			t.Run("DuplicatesCaptureOnce", func(t *testing.T) { testDuplicates(t, b) })
			t.Run("ProviderFailsTwiceThenCaptures", func(t *testing.T) { testProviderFailsTwice(t, b) })
			t.Run("CrashBetweenDecisionAndCapture", func(t *testing.T) { testCrashBeforeRecording(t, b) })
			t.Run("ChargeWhoseResponseIsLost", func(t *testing.T) { testLostResponse(t, b) })
			t.Run("BadInputIsPermanentAndChangesNothing", func(t *testing.T) { testBadInput(t, b) })
			t.Run("ConcurrentPlacedAndReserved", func(t *testing.T) { testConcurrentHandle(t, b) })
			t.Run("DeclinePublishesDeclined", func(t *testing.T) { testDecline(t, b) })
			t.Run("CancelAfterDeclineDoesNothing", func(t *testing.T) { testCancelAfterDecline(t, b) })
			t.Run("CancelAfterCaptureRefundsOnce", func(t *testing.T) { testCancelAfterCapture(t, b) })
			t.Run("CancelBeforeCaptureVoidsWithoutProvider", func(t *testing.T) { testCancelBeforeCapture(t, b) })
			t.Run("CancelWhileCapturePendingVoids", func(t *testing.T) { testCancelWhilePendingUncharged(t, b) })
			t.Run("CancelWhileCapturePendingAfterChargeRefunds", func(t *testing.T) { testCancelWhilePendingCharged(t, b) })
			t.Run("CancelOvertakesCaptureInFlight", func(t *testing.T) { testCancelOvertakesCapture(t, b, false) })
			t.Run("CancelOvertakesAnswerInFlight", func(t *testing.T) { testCancelOvertakesCapture(t, b, true) })
			t.Run("CancelProviderFailsThenRefunds", func(t *testing.T) { testCancelProviderFails(t, b) })
			t.Run("ProviderErrorKinds", func(t *testing.T) { testProviderErrorKinds(t, b) })
			t.Run("ConcurrentCancellations", func(t *testing.T) { testConcurrentCancel(t, b) })
		})
	}
}

func testInOrder(t *testing.T, b sqltest.Backend, placedFirst bool) {
	h := newHarness(t, b)
	first, second := placedMsg(t, "order-1"), reservedMsg(t, "order-1")
	if !placedFirst {
		// A reservation of an order payments has not seen placed waits:
		// refused as Transient, redelivered once the order is placed.
		err := h.svc.Handle(context.Background(), second)
		if !errors.Is(err, payments.ErrNotPlaced) || events.KindOf(err) != events.KindEarly {
			t.Fatalf("reserved before placed: got %v (kind %s), want an early error wrapping ErrNotPlaced", err, events.KindOf(err))
		}
		if _, err := h.svc.Get(context.Background(), "order-1"); !errors.Is(err, payments.ErrNotFound) {
			t.Fatalf("after the refused reservation: got %v, want no payment", err)
		}
	}
	h.mustHandle(t, first)
	if p := h.mustGet(t, "order-1"); p.Status != payments.Waiting {
		t.Errorf("after the first event: got status %s, want WAITING", p.Status)
	}
	if n := h.faults.Calls(); n != 0 {
		t.Errorf("provider calls after the first event: got %d, want 0", n)
	}
	h.mustHandle(t, second)
	h.assertCapturedOnce(t, "order-1")
	if n := h.provider.Calls("order-1"); n != 1 {
		t.Errorf("provider calls: got %d, want 1", n)
	}
	if n := len(mustOutbox(t, h.db)); n != 1 {
		t.Errorf("outbox: got %d events, want only payments.captured", n)
	}
}

func testDuplicates(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	for _, m := range []*consumer.Message{
		placedMsg(t, "order-1"), placedMsg(t, "order-1"), reservedMsg(t, "order-1"),
		reservedMsg(t, "order-1"), placedMsg(t, "order-1"),
	} {
		h.mustHandle(t, m)
	}
	h.assertCapturedOnce(t, "order-1")
	if n := h.provider.Charges(); n != 1 {
		t.Errorf("provider charges: got %d, want 1", n)
	}
	if n := h.provider.Calls("order-1"); n != 1 {
		t.Errorf("provider calls: got %d, want 1 (duplicates after the capture find it recorded)", n)
	}
}

func testProviderFailsTwice(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.faults.failNext(2, 0)
	reserved := reservedMsg(t, "order-1")
	for i := range 2 {
		err := h.svc.Handle(context.Background(), reserved)
		if events.KindOf(err) != events.KindUnavailable || events.IsPermanent(err) || !errors.Is(err, errProviderDown) {
			t.Fatalf("delivery %d: got %v (kind %s), want an unavailable error wrapping the provider's", i+1, err, events.KindOf(err))
		}
		if p := h.mustGet(t, "order-1"); p.Status != payments.CapturePending {
			t.Errorf("delivery %d: got status %s, want CAPTURE_PENDING", i+1, p.Status)
		}
		if n := len(capturedEvents(t, h.db, "order-1")); n != 0 {
			t.Errorf("delivery %d: got %d payments.captured, want 0", i+1, n)
		}
	}
	h.mustHandle(t, reserved)
	h.assertCapturedOnce(t, "order-1")
	if n := h.faults.Calls(); n != 3 {
		t.Errorf("provider calls: got %d, want 3 (two failures, one success)", n)
	}
}

// testCrashBeforeRecording: step 1 commits CAPTURE_PENDING, then the
// capture fails, as if the process died before the provider call. The
// redelivered message is a duplicate for the inbox; the duplicate path is
// what captures.
func testCrashBeforeRecording(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.faults.failNext(1, 0)
	reserved := reservedMsg(t, "order-1")
	if err := h.svc.Handle(context.Background(), reserved); err == nil {
		t.Fatal("first delivery: got nil, want the provider's error")
	}
	if p := h.mustGet(t, "order-1"); p.Status != payments.CapturePending || !p.Reserved {
		t.Fatalf("after the failed delivery: got status %s reserved %v, want CAPTURE_PENDING true (step 1 committed)", p.Status, p.Reserved)
	}
	h.mustHandle(t, reserved) // the redelivery
	h.assertCapturedOnce(t, "order-1")
	// A later duplicate of the other event finds nothing left to do.
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.assertCapturedOnce(t, "order-1")
	if n := h.provider.Calls("order-1"); n != 1 {
		t.Errorf("provider calls that reached it: got %d, want 1", n)
	}
}

// testLostResponse: the provider charged but its answer never arrived.
// The retry with the same idempotency key finds the charge.
func testLostResponse(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.faults.failNext(0, 1)
	reserved := reservedMsg(t, "order-1")
	if err := h.svc.Handle(context.Background(), reserved); err == nil {
		t.Fatal("first delivery: got nil, want the provider's error")
	}
	h.mustHandle(t, reserved)
	h.assertCapturedOnce(t, "order-1")
	if n, c := h.provider.Calls("order-1"), h.provider.Charges(); n != 2 || c != 1 {
		t.Errorf("provider: got %d calls and %d charges, want 2 calls and 1 charge", n, c)
	}
}

func testBadInput(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	good := placedMsg(t, "order-1")
	env, err := events.Decode(good.Data)
	if err != nil {
		t.Fatal(err)
	}
	reencode := func(mut func(e *events.Envelope)) []byte {
		e := env
		mut(&e)
		b, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		subject string
		data    []byte
		wantIs  error
	}{
		{"MalformedJSON", good.Subject, []byte(`{"specversion":`), nil},
		{"NotACloudEvent", good.Subject, []byte(`{"order_id":"order-1"}`), nil},
		{"WrongType", good.Subject, reencode(func(e *events.Envelope) { e.Type = catalog.TypeOrderConfirmed }), nil},
		{"MissingOrderID", good.Subject, reencode(func(e *events.Envelope) {
			e.Data = []byte(strings.Replace(string(e.Data), `"order_id":"order-1"`, `"order_id":""`, 1))
		}), nil},
		{"MissingCurrency", good.Subject, reencode(func(e *events.Envelope) {
			e.Data = []byte(strings.Replace(string(e.Data), `"currency":"EUR"`, `"currency":""`, 1))
		}), nil},
		{"ReservedWithoutOrder", "inventory.reserved.order-1", reencode(func(e *events.Envelope) {
			e.Type = catalog.TypeStockReserved
			e.Data = []byte(`{"items":[]}`)
		}), nil},
		{"CancelledWithUnknownReason", "orders.cancelled.order-1", reencode(func(e *events.Envelope) {
			e.Type = catalog.TypeOrderCancelled
			e.Data = []byte(`{"order_id":"order-1","customer_id":"cust-1","reason":"bored","items":[],"total":{"amount":1200,"currency":"EUR"}}`)
		}), nil},
		{"CancelledWithWrongType", "orders.cancelled.order-1", good.Data, nil},
		{"UnknownSubject", "orders.shipped.order-1", good.Data, catalog.ErrUnknownSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.svc.Handle(context.Background(), &consumer.Message{Subject: tt.subject, Data: tt.data})
			if !events.IsPermanent(err) {
				t.Errorf("got %v, want a permanent error", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want it to wrap %v", err, tt.wantIs)
			}
		})
	}
	if _, err := h.svc.Get(context.Background(), "order-1"); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Get after bad input: got %v, want ErrNotFound", err)
	}
	if n := len(mustOutbox(t, h.db)); n != 0 {
		t.Errorf("outbox after bad input: got %d events, want 0", n)
	}
	var claims int
	if err := h.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM inbox`).Scan(&claims); err != nil {
		t.Fatal(err)
	}
	if claims != 0 {
		t.Errorf("inbox after bad input: got %d claims, want 0", claims)
	}
}

// testConcurrentHandle delivers the two events of many orders at once, as
// two consumers on two streams do; each order must be captured exactly
// once whichever transaction creates its row.
func testConcurrentHandle(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	const orders = 10
	var wg sync.WaitGroup
	errs := make(chan error, 4*orders)
	for i := range orders {
		id := fmt.Sprintf("order-%02d", i)
		for _, m := range []*consumer.Message{placedMsg(t, id), reservedMsg(t, id), placedMsg(t, id), reservedMsg(t, id)} {
			wg.Go(func() {
				if err := h.handleUntilPlaced(m); err != nil {
					errs <- fmt.Errorf("%s: %w", m.Subject, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range orders {
		h.assertCapturedOnce(t, fmt.Sprintf("order-%02d", i))
	}
	if n := h.provider.Charges(); n != orders {
		t.Errorf("provider charges: got %d, want %d", n, orders)
	}
}

func TestNewRequiresStoreAndProvider(t *testing.T) {
	if _, err := payments.New(payments.Config{}); err == nil {
		t.Error("New without a store: got nil error, want one")
	}
	h := newHarness(t, sqltest.Backends()[0])
	if _, err := payments.New(payments.Config{Store: h.store}); err == nil {
		t.Error("New without a provider: got nil error, want one")
	}
}

func TestConsumer(t *testing.T) {
	h := newHarness(t, sqltest.Backends()[0])
	c := h.svc.Consumer()
	if c.DLQSubject != catalog.DLQSubject(catalog.Payments) || c.Handler == nil {
		t.Errorf("consumer: DLQ subject %q, handler set %v; want %q and a handler", c.DLQSubject, c.Handler != nil, catalog.DLQSubject(catalog.Payments))
	}
	got := map[string][]string{}
	for _, s := range c.Sources {
		if s.Durable != catalog.Payments {
			t.Errorf("source %s: got durable %q, want %q", s.Stream, s.Durable, catalog.Payments)
		}
		got[s.Stream] = s.FilterSubjects
	}
	want := map[string][]string{
		catalog.StreamOrders:    {"orders.placed.*", "orders.confirmed.*", "orders.cancelled.*"},
		catalog.StreamInventory: {"inventory.reserved.*"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sources: got %v, want %v", got, want)
	}
}

var (
	capturedOnly = []string{catalog.EventCaptured}
	refundedOnly = []string{catalog.EventRefunded}
	voidedOnly   = []string{catalog.EventVoided}
	declinedOnly = []string{catalog.EventDeclined}
	capturedThen = []string{catalog.EventCaptured, catalog.EventRefunded} // sorted
)

func testDecline(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.faults.decline("order-1", "card_declined")
	for _, m := range []*consumer.Message{placedMsg(t, "order-1"), reservedMsg(t, "order-1"), reservedMsg(t, "order-1")} {
		h.mustHandle(t, m)
	}
	h.assertOutcome(t, "order-1", payments.Declined, declinedOnly, money{})
	got := eventData[catalog.PaymentDeclined](t, h.db, "order-1", catalog.EventDeclined)
	if want := (catalog.PaymentDeclined{OrderID: "order-1", Reason: "card_declined"}); got != want {
		t.Errorf("payments.declined: got %+v, want %+v", got, want)
	}
	if p := h.mustGet(t, "order-1"); p.DeclineReason != "card_declined" {
		t.Errorf("decline reason: got %q, want card_declined", p.DeclineReason)
	}
	if n := h.faults.Calls(); n != 1 {
		t.Errorf("capture calls: got %d, want 1 (a duplicate finds the decline recorded)", n)
	}
}

// testCancelAfterDecline: orders answers payments.declined by cancelling
// the order (payment_declined). No money moved, so there is nothing to
// undo and the provider is not called.
func testCancelAfterDecline(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.faults.decline("order-1", "card_declined")
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.mustHandle(t, reservedMsg(t, "order-1"))
	cancelled := cancelledMsg(t, "order-1", catalog.ReasonPaymentDeclined)
	h.mustHandle(t, cancelled)
	h.mustHandle(t, cancelled)
	h.assertOutcome(t, "order-1", payments.Declined, declinedOnly, money{})
	if p := h.mustGet(t, "order-1"); !p.Cancelled {
		t.Error("cancelled: got false, want true")
	}
	if n := h.faults.CancelCalls(); n != 0 {
		t.Errorf("cancel calls: got %d, want 0", n)
	}
}

func testCancelAfterCapture(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.mustHandle(t, reservedMsg(t, "order-1"))
	h.assertCapturedOnce(t, "order-1")
	cancelled := cancelledMsg(t, "order-1", catalog.ReasonCustomerCancelled)
	for _, m := range []*consumer.Message{cancelled, cancelled, placedMsg(t, "order-1"), reservedMsg(t, "order-1")} {
		h.mustHandle(t, m)
	}
	h.assertOutcome(t, "order-1", payments.Refunded, capturedThen, money{1200, 1200})
	captured := eventData[catalog.PaymentCaptured](t, h.db, "order-1", catalog.EventCaptured)
	got := eventData[catalog.PaymentRefunded](t, h.db, "order-1", catalog.EventRefunded)
	if want := (catalog.PaymentRefunded{OrderID: "order-1", PaymentID: captured.PaymentID, Amount: eur1200}); got != want {
		t.Errorf("payments.refunded: got %+v, want %+v", got, want)
	}
	if n, r := h.provider.CancelCalls("order-1"), h.provider.Refunds(); n != 1 || r != 1 {
		t.Errorf("provider: got %d cancel calls and %d refunds, want 1 and 1", n, r)
	}
	if n := h.provider.Calls("order-1"); n != 1 {
		t.Errorf("capture calls: got %d, want 1", n)
	}
}

// testCancelBeforeCapture: the cancellation arrives while the payment
// waits for its other input. No capture was ever requested, so the
// payment is voided on the spot, the provider is never called, and the
// late input changes nothing.
func testCancelBeforeCapture(t *testing.T, b sqltest.Backend) {
	for _, tt := range []struct {
		name   string
		inputs func(id string) []*consumer.Message
	}{
		{"PlacedCancelledReserved", func(id string) []*consumer.Message {
			return []*consumer.Message{placedMsg(t, id), cancelledMsg(t, id, catalog.ReasonCustomerCancelled), reservedMsg(t, id)}
		}},
		{"ReservedCancelledPlaced", func(id string) []*consumer.Message {
			return []*consumer.Message{reservedMsg(t, id), cancelledMsg(t, id, catalog.ReasonTimeout), placedMsg(t, id)}
		}},
		{"CancelledFirst", func(id string) []*consumer.Message {
			return []*consumer.Message{cancelledMsg(t, id, catalog.ReasonOutOfStock), placedMsg(t, id), reservedMsg(t, id)}
		}},
		{"CancelledOnly", func(id string) []*consumer.Message {
			return []*consumer.Message{cancelledMsg(t, id, catalog.ReasonOutOfStock)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, b)
			in := tt.inputs("order-1")
			h.deliver(t, append(in, in...)...) // and every input again
			h.assertOutcome(t, "order-1", payments.Voided, voidedOnly, money{})
			if got := eventData[catalog.PaymentVoided](t, h.db, "order-1", catalog.EventVoided); got.OrderID != "order-1" {
				t.Errorf("payments.voided: got %+v", got)
			}
			if c, x := h.faults.Calls(), h.faults.CancelCalls(); c != 0 || x != 0 {
				t.Errorf("provider calls: got %d captures and %d cancels, want none", c, x)
			}
		})
	}
}

// testCancelWhilePendingUncharged: the capture is decided but failed
// before reaching the provider; then the order is cancelled. The
// cancellation voids the key, so the capture is never made: neither by
// the redelivered message, nor by a capture still in flight on another
// replica, which the provider refuses.
func testCancelWhilePendingUncharged(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.faults.failNext(1, 0)
	reserved := reservedMsg(t, "order-1")
	if err := h.svc.Handle(context.Background(), reserved); err == nil {
		t.Fatal("reserved: got nil, want the provider's error")
	}
	if p := h.mustGet(t, "order-1"); p.Status != payments.CapturePending {
		t.Fatalf("after the failed capture: got %s, want CAPTURE_PENDING", p.Status)
	}
	h.mustHandle(t, cancelledMsg(t, "order-1", catalog.ReasonTimeout))
	h.mustHandle(t, reserved) // the redelivery of the failed message
	h.assertOutcome(t, "order-1", payments.Voided, voidedOnly, money{})
	if n := h.provider.Calls("order-1"); n != 0 {
		t.Errorf("captures that reached the provider: got %d, want 0", n)
	}
	// The capture a replica may still have in flight is declined.
	late, err := h.provider.Capture(context.Background(), payments.CaptureRequest{IdempotencyKey: "order-1",
		OrderID: "order-1", CustomerID: "cust-1", Amount: eur1200})
	if err != nil || !late.Declined || late.DeclineReason != payments.DeclineVoided {
		t.Errorf("late capture: got %+v %v, want declined %q", late, err, payments.DeclineVoided)
	}
	if n := h.provider.Charges(); n != 0 {
		t.Errorf("charges: got %d, want 0", n)
	}
}

// testCancelWhilePendingCharged: the provider charged but its answer was
// lost, so the payment is still CAPTURE_PENDING when the order is
// cancelled. The cancellation refunds the charge the service never
// recorded; payments.captured is never published.
func testCancelWhilePendingCharged(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.faults.failNext(0, 1)
	reserved := reservedMsg(t, "order-1")
	if err := h.svc.Handle(context.Background(), reserved); err == nil {
		t.Fatal("reserved: got nil, want the provider's error")
	}
	cancelled := cancelledMsg(t, "order-1", catalog.ReasonTimeout)
	for _, m := range []*consumer.Message{cancelled, reserved, cancelled} {
		h.mustHandle(t, m)
	}
	// The refund is the first the service hears of the charge: it
	// publishes the capture too, with the payment id the refund named.
	h.assertOutcome(t, "order-1", payments.Refunded, capturedThen, money{1200, 1200})
	got := eventData[catalog.PaymentRefunded](t, h.db, "order-1", catalog.EventRefunded)
	if got.OrderID != "order-1" || got.Amount != eur1200 || got.PaymentID == "" {
		t.Errorf("payments.refunded: got %+v, want order-1, %v and the charge's payment id", got, eur1200)
	}
	if n := h.provider.Calls("order-1"); n != 1 {
		t.Errorf("captures that reached the provider: got %d, want 1", n)
	}
}

// gatedProvider holds Capture calls until released: before they reach
// the provider, or (afterEffect) after the provider charged and before
// the answer gets back. Cancel is not held.
type gatedProvider struct {
	payments.Provider
	afterEffect bool
	entered     chan struct{}
	release     chan struct{}
}

func (g *gatedProvider) Capture(ctx context.Context, req payments.CaptureRequest) (payments.CaptureResult, error) {
	if g.afterEffect {
		res, err := g.Provider.Capture(ctx, req)
		g.entered <- struct{}{}
		<-g.release
		return res, err
	}
	g.entered <- struct{}{}
	<-g.release
	return g.Provider.Capture(ctx, req)
}

// testCancelOvertakesCapture: a capture is in flight when the order is
// cancelled by another handler (another replica). The cancellation does
// not wait for it: Cancel voids the key, and the capture, reaching the
// provider later, is declined; or, if the capture already charged, Cancel
// refunds it. Either way the capture's answer, arriving after the
// cancellation, is ignored.
func testCancelOvertakesCapture(t *testing.T, b sqltest.Backend, afterEffect bool) {
	h := newHarness(t, b)
	gate := &gatedProvider{Provider: h.provider, afterEffect: afterEffect,
		entered: make(chan struct{}), release: make(chan struct{})}
	svc, err := payments.New(payments.Config{Store: h.store, Provider: gate, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle(context.Background(), placedMsg(t, "order-1")); err != nil {
		t.Fatal(err)
	}
	captureDone := make(chan error, 1)
	go func() { captureDone <- svc.Handle(context.Background(), reservedMsg(t, "order-1")) }()
	<-gate.entered
	if err := svc.Handle(context.Background(), cancelledMsg(t, "order-1", catalog.ReasonCustomerCancelled)); err != nil {
		t.Fatalf("cancelled: %v", err)
	}
	close(gate.release)
	if err := <-captureDone; err != nil {
		t.Fatalf("reserved, whose capture was overtaken: got %v, want nil", err)
	}
	if afterEffect {
		h.assertOutcome(t, "order-1", payments.Refunded, capturedThen, money{1200, 1200})
	} else {
		h.assertOutcome(t, "order-1", payments.Voided, voidedOnly, money{})
		if n := h.provider.Charges(); n != 0 {
			t.Errorf("charges: got %d, want 0", n)
		}
	}
}

func testCancelProviderFails(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, placedMsg(t, "order-1"))
	h.mustHandle(t, reservedMsg(t, "order-1"))
	cancelled := cancelledMsg(t, "order-1", catalog.ReasonCustomerCancelled)
	h.faults.failNext(1, 1) // down, then refunded with the answer lost
	for i := range 2 {
		err := h.svc.Handle(context.Background(), cancelled)
		if events.KindOf(err) != events.KindUnavailable {
			t.Fatalf("delivery %d: got %v (kind %s), want kind unavailable", i+1, err, events.KindOf(err))
		}
		if p := h.mustGet(t, "order-1"); p.Status != payments.CancelPending {
			t.Errorf("delivery %d: got status %s, want CANCEL_PENDING", i+1, p.Status)
		}
	}
	h.mustHandle(t, cancelled)
	h.assertOutcome(t, "order-1", payments.Refunded, capturedThen, money{1200, 1200})
	if n, r := h.faults.CancelCalls(), h.provider.Refunds(); n != 3 || r != 1 {
		t.Errorf("provider: got %d cancel calls and %d refunds, want 3 and 1", n, r)
	}
}

// testProviderErrorKinds: an outage is events.Unavailable (retried
// without bound, never dead-lettered), anything else events.Transient;
// never permanent, since the outcome of the call is unknown.
func testProviderErrorKinds(t *testing.T, b sqltest.Backend) {
	tests := []struct {
		name string
		err  error
		want events.Kind
	}{
		{"ErrProviderUnavailable", errProviderDown, events.KindUnavailable},
		{"Timeout", fmt.Errorf("capture: %w", context.DeadlineExceeded), events.KindUnavailable},
		{"ConnectionRefused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, events.KindUnavailable},
		{"ProviderAnswered503", fmt.Errorf("capture: %w", &provider.StatusError{StatusCode: 503}), events.KindUnavailable},
		{"ProviderRefused400", fmt.Errorf("capture: %w", &provider.StatusError{StatusCode: 400}), events.KindTransient},
		{"PermanentBelow", events.Permanent(errProviderBroken), events.KindTransient},
		{"Other", errProviderBroken, events.KindTransient},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, b)
			id := fmt.Sprintf("order-%d", i)
			h.mustHandle(t, placedMsg(t, id))
			h.faults.failNextWith(1, 0, tt.err)
			reserved := reservedMsg(t, id)
			err := h.svc.Handle(context.Background(), reserved)
			if events.KindOf(err) != tt.want || events.IsPermanent(err) || !errors.Is(err, tt.err) {
				t.Errorf("capture: got %v (kind %s), want kind %s wrapping the provider's error", err, events.KindOf(err), tt.want)
			}
			h.mustHandle(t, reserved)
			h.faults.failNextWith(1, 0, tt.err)
			cancelled := cancelledMsg(t, id, catalog.ReasonCustomerCancelled)
			err = h.svc.Handle(context.Background(), cancelled)
			if events.KindOf(err) != tt.want || events.IsPermanent(err) || !errors.Is(err, tt.err) {
				t.Errorf("cancel: got %v (kind %s), want kind %s wrapping the provider's error", err, events.KindOf(err), tt.want)
			}
			h.mustHandle(t, cancelled)
			h.assertOutcome(t, id, payments.Refunded, capturedThen, money{1200, 1200})
		})
	}
}

// testConcurrentCancel delivers every input of many cancelled orders at
// once, twice each, as consumers on two streams and several replicas do.
// Whether the cancellation beats the capture is a race; the money is not:
// each order ends refunded or voided, with nothing kept.
func testConcurrentCancel(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	const orders = 8
	var wg sync.WaitGroup
	errs := make(chan error, 6*orders)
	for i := range orders {
		id := fmt.Sprintf("order-%02d", i)
		// Each delivery is a message of its own, as the consumer makes it.
		cancelled := func() *consumer.Message { return cancelledMsg(t, id, catalog.ReasonCustomerCancelled) }
		for _, m := range []*consumer.Message{placedMsg(t, id), reservedMsg(t, id), cancelled(), placedMsg(t, id), reservedMsg(t, id), cancelled()} {
			wg.Go(func() {
				if err := h.handleUntilPlaced(m); err != nil {
					errs <- fmt.Errorf("%s: %w", m.Subject, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range orders {
		id := fmt.Sprintf("order-%02d", i)
		p := h.mustGet(t, id)
		names := eventNames(t, h.db, id)
		switch {
		case p.Status == payments.Voided && slices.Equal(names, voidedOnly):
		case p.Status == payments.Refunded && (slices.Equal(names, refundedOnly) || slices.Equal(names, capturedThen)):
		default:
			t.Errorf("%s: got status %s events %v, want VOIDED [voided] or REFUNDED with refunded", id, p.Status, names)
		}
		if m := h.mustMoney(t, id); m.captured != m.refunded {
			t.Errorf("%s: got money %+v, want nothing kept", id, m)
		}
	}
}
