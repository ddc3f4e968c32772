package notifications_test

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
	"github.com/choreo-dev/choreo/notifications"
)

func TestHandle(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("ConfirmedNotifiesOnce", func(t *testing.T) { testConfirmed(t, b) })
			t.Run("CancelledNotifiesWithReason", func(t *testing.T) { testCancelled(t, b) })
			t.Run("ConfirmedTwiceSendsOnce", func(t *testing.T) { testDuplicate(t, b) })
			t.Run("SenderFailsThenSucceeds", func(t *testing.T) { testSenderFails(t, b) })
			t.Run("DeliveredButAnswerLost", func(t *testing.T) { testAnswerLost(t, b) })
			t.Run("OnePerFinalState", func(t *testing.T) { testOnePerFinalState(t, b) })
			t.Run("ConcurrentDuplicates", func(t *testing.T) { testConcurrent(t, b) })
			t.Run("BadInputIsPermanentAndChangesNothing", func(t *testing.T) { testBadInput(t, b) })
		})
	}
}

func testConfirmed(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, confirmedMsg(t, "order-1"))
	h.assertNotifiedOnce(t, "order-1", catalog.StatusConfirmed, "")
	id := notifications.NotificationID("order-1", catalog.StatusConfirmed)
	if n := h.sender.Calls(id); n != 1 {
		t.Errorf("sender calls: got %d, want 1", n)
	}
	if n := h.logBuf.Lines(); n != 1 {
		t.Errorf("log records: got %d, want 1", n)
	}
	if n := outboxCount(t, h.db); n != 1 {
		t.Errorf("outbox: got %d events, want only notifications.sent", n)
	}
}

func testCancelled(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, cancelledMsg(t, "order-1", catalog.ReasonPaymentDeclined))
	h.assertNotifiedOnce(t, "order-1", catalog.StatusCancelled, catalog.ReasonPaymentDeclined)
}

func testDuplicate(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	m := confirmedMsg(t, "order-1")
	h.mustHandle(t, m)
	h.mustHandle(t, m)
	// The same final state published again under another id (a replay
	// by hand, say) is still the same notification.
	other := confirmedMsg(t, "order-1")
	env, _ := events.Decode(other.Data)
	env.ID = "replayed-copy"
	other.Data, _ = events.Encode(env)
	h.mustHandle(t, other)

	h.assertNotifiedOnce(t, "order-1", catalog.StatusConfirmed, "")
	if n := h.faults.Calls(); n != 1 {
		t.Errorf("sender calls: got %d, want 1 (duplicates find it sent)", n)
	}
}

func testSenderFails(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.faults.failNext(2, 0)
	m := confirmedMsg(t, "order-1")
	for i := range 2 {
		err := h.svc.Handle(context.Background(), m)
		if err == nil || events.IsPermanent(err) || !errors.Is(err, errSMTPDown) {
			t.Fatalf("delivery %d: got %v, want a transient error wrapping the sender's", i+1, err)
		}
		list, _ := h.svc.List(context.Background(), "order-1")
		if len(list) != 1 || list[0].State != notifications.Pending {
			t.Fatalf("delivery %d: got %d notifications, want 1 PENDING (step 1 committed)", i+1, len(list))
		}
		if n := len(sentEvents(t, h.db, "order-1")); n != 0 {
			t.Errorf("delivery %d: got %d notifications.sent, want 0", i+1, n)
		}
	}
	h.mustHandle(t, m) // the redelivery, a duplicate for the inbox
	h.assertNotifiedOnce(t, "order-1", catalog.StatusConfirmed, "")
	id := notifications.NotificationID("order-1", catalog.StatusConfirmed)
	if n := h.sender.Calls(id); n != 1 {
		t.Errorf("deliveries that reached the sink: got %d, want 1", n)
	}
	if n := h.logBuf.Lines(); n != 1 {
		t.Errorf("log records: got %d, want 1", n)
	}
}

// testAnswerLost: the sink delivered but the service never heard back. The
// retry carries the same id, so the sink does not deliver twice.
func testAnswerLost(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.faults.failNext(0, 1)
	m := cancelledMsg(t, "order-1", catalog.ReasonTimeout)
	if err := h.svc.Handle(context.Background(), m); err == nil {
		t.Fatal("first delivery: got nil, want the sender's error")
	}
	h.mustHandle(t, m)
	h.assertNotifiedOnce(t, "order-1", catalog.StatusCancelled, catalog.ReasonTimeout)
	if n, logged := h.sender.Calls(notifications.NotificationID("order-1", catalog.StatusCancelled)), h.logBuf.Lines(); n != 2 || logged != 1 {
		t.Errorf("sink: got %d calls and %d log records, want 2 calls and 1 record", n, logged)
	}
}

// testOnePerFinalState: an order has one final state, so once its
// customer was told one, news of the other is refused (a forgery, see
// TestTheOtherEndOfAnOrderIsNotBelieved) and the first stays the only
// notification; its redelivery changes nothing.
func testOnePerFinalState(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	h.mustHandle(t, confirmedMsg(t, "order-1"))
	if err := h.svc.Handle(context.Background(), cancelledMsg(t, "order-1", catalog.ReasonCustomerCancelled)); !events.IsPermanent(err) {
		t.Errorf("cancelled after confirmed: got %v, want a permanent error", err)
	}
	h.mustHandle(t, confirmedMsg(t, "order-1"))
	h.assertNotifiedOnce(t, "order-1", catalog.StatusConfirmed, "")
	if n := h.sender.Sent(); n != 1 {
		t.Errorf("sent: got %d, want 1", n)
	}
}

// testConcurrent delivers each event several times at once, as two
// replicas do after a redelivery.
func testConcurrent(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	const orders, copies = 8, 3
	var wg sync.WaitGroup
	errs := make(chan error, orders*copies)
	for i := range orders {
		id := fmt.Sprintf("order-%02d", i)
		for range copies {
			m := confirmedMsg(t, id)
			wg.Go(func() {
				if err := h.svc.Handle(context.Background(), m); err != nil {
					errs <- err
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
		h.assertNotifiedOnce(t, fmt.Sprintf("order-%02d", i), catalog.StatusConfirmed, "")
	}
	if n := h.logBuf.Lines(); n != orders {
		t.Errorf("log records: got %d, want %d", n, orders)
	}
}

func testBadInput(t *testing.T, b sqltest.Backend) {
	h := newHarness(t, b)
	good := cancelledMsg(t, "order-1", catalog.ReasonOutOfStock)
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
	replace := func(old, new string) []byte {
		return reencode(func(e *events.Envelope) { e.Data = []byte(strings.Replace(string(e.Data), old, new, 1)) })
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
		{"MissingOrderID", good.Subject, replace(`"order_id":"order-1"`, `"order_id":""`), nil},
		{"MissingCustomer", good.Subject, replace(`"customer_id":"cust-1"`, `"customer_id":""`), nil},
		{"UnknownReason", good.Subject, replace(`"reason":"out_of_stock"`, `"reason":"bored"`), nil},
		{"ConfirmedWithoutOrder", "orders.confirmed.order-1", reencode(func(e *events.Envelope) {
			e.Type = catalog.TypeOrderConfirmed
			e.Data = []byte(`{"customer_id":"cust-1"}`)
		}), nil},
		{"UnknownSubject", "orders.placed.order-1", good.Data, catalog.ErrUnknownSubject},
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
	if list, err := h.svc.List(context.Background(), "order-1"); err != nil || len(list) != 0 {
		t.Errorf("List after bad input: got %d notifications, err %v; want none", len(list), err)
	}
	if n := outboxCount(t, h.db); n != 0 {
		t.Errorf("outbox after bad input: got %d events, want 0", n)
	}
	if n := h.faults.Calls(); n != 0 {
		t.Errorf("sender calls after bad input: got %d, want 0", n)
	}
}

func TestNewRequiresStoreAndSender(t *testing.T) {
	if _, err := notifications.New(notifications.Config{}); err == nil {
		t.Error("New without a store: got nil error, want one")
	}
	h := newHarness(t, sqltest.Backends()[0])
	if _, err := notifications.New(notifications.Config{Store: h.store}); err == nil {
		t.Error("New without a sender: got nil error, want one")
	}
}

func TestConsumer(t *testing.T) {
	h := newHarness(t, sqltest.Backends()[0])
	c := h.svc.Consumer()
	if len(c.Sources) != 1 {
		t.Fatalf("sources: got %d, want 1", len(c.Sources))
	}
	src := c.Sources[0]
	if src.Stream != catalog.StreamOrders || src.Durable != catalog.Notifications ||
		c.DLQSubject != catalog.DLQSubject(catalog.Notifications) || c.Handler == nil {
		t.Errorf("consumer: got %+v (DLQ %q), want ORDERS/notifications with dlq.notifications and a handler", src, c.DLQSubject)
	}
	if got, want := fmt.Sprint(src.FilterSubjects), "[orders.confirmed.* orders.cancelled.*]"; got != want {
		t.Errorf("filters: got %s, want %s", got, want)
	}
}
