package payments_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
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
		})
	}
}

func testInOrder(t *testing.T, b sqltest.Backend, placedFirst bool) {
	h := newHarness(t, b)
	first, second := placedMsg(t, "order-1"), reservedMsg(t, "order-1")
	if !placedFirst {
		first, second = second, first
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
		if err == nil || events.IsPermanent(err) || !errors.Is(err, errProviderDown) {
			t.Fatalf("delivery %d: got %v, want a transient error wrapping the provider's", i+1, err)
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
	h.mustHandle(t, reservedMsg(t, "order-1"))
	h.faults.failNext(1, 0)
	placed := placedMsg(t, "order-1")
	if err := h.svc.Handle(context.Background(), placed); err == nil {
		t.Fatal("first delivery: got nil, want the provider's error")
	}
	if p := h.mustGet(t, "order-1"); p.Status != payments.CapturePending || !p.Placed {
		t.Fatalf("after the failed delivery: got status %s placed %v, want CAPTURE_PENDING true (step 1 committed)", p.Status, p.Placed)
	}
	h.mustHandle(t, placed) // the redelivery
	h.assertCapturedOnce(t, "order-1")
	// A later duplicate of the other event finds nothing left to do.
	h.mustHandle(t, reservedMsg(t, "order-1"))
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
				if err := h.svc.Handle(context.Background(), m); err != nil {
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

func TestSubscriptions(t *testing.T) {
	h := newHarness(t, sqltest.Backends()[0])
	subs := h.svc.Subscriptions()
	got := map[string][]string{}
	for _, s := range subs {
		if s.Config.Durable != catalog.Payments || s.Config.DLQSubject != catalog.DLQSubject(catalog.Payments) || s.Handler == nil {
			t.Errorf("subscription %s: got durable %q dlq %q, want %q %q and a handler",
				s.Config.Stream, s.Config.Durable, s.Config.DLQSubject, catalog.Payments, catalog.DLQSubject(catalog.Payments))
		}
		got[s.Config.Stream] = s.Config.FilterSubjects
	}
	want := map[string][]string{
		catalog.StreamOrders:    {"orders.placed.*"},
		catalog.StreamInventory: {"inventory.reserved.*"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("subscriptions: got %v, want %v", got, want)
	}
}
