package notifications_test

import (
	"context"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/notifications"
)

// TestAnyDeliveryScheduleNotifiesOnce delivers an order's final event a
// random number of times, with random sender failures before or after
// delivery, redelivering every failed message later. Whatever the
// schedule: one notification, delivered once, one notifications.sent.
// Its input is one final event because the saga publishes one per order;
// the orders service's own property test covers which one.
func TestAnyDeliveryScheduleNotifiesOnce(t *testing.T) {
	b := sqltest.Backends()[0] // the store's concurrency is covered on both engines elsewhere
	h := newHarness(t, b)
	run := 0
	property := func(rt *rapid.T) {
		run++
		orderID := fmt.Sprintf("order-%04d", run)
		cancelled := rapid.Bool().Draw(rt, "cancelled")
		status, reason := catalog.StatusConfirmed, ""
		msg := func() *consumer.Message { return confirmedMsg(t, orderID) }
		if cancelled {
			status, reason = catalog.StatusCancelled, catalog.ReasonTimeout
			msg = func() *consumer.Message { return cancelledMsg(t, orderID, reason) }
		}
		var queue []*consumer.Message
		for range rapid.IntRange(1, 4).Draw(rt, "copies") {
			queue = append(queue, msg())
		}
		failuresLeft := rapid.IntRange(0, 3).Draw(rt, "sender failures")
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			if failuresLeft > 0 && rapid.Bool().Draw(rt, "fail next send") {
				failuresLeft--
				if rapid.Bool().Draw(rt, "after delivering") {
					h.faults.failNext(0, 1)
				} else {
					h.faults.failNext(1, 0)
				}
			}
			err := h.svc.Handle(context.Background(), m)
			h.faults.failNext(0, 0)
			if err != nil {
				queue = append(queue, m)
			}
		}
		list, err := h.svc.List(context.Background(), orderID)
		if err != nil || len(list) != 1 || list[0].State != notifications.Sent {
			rt.Fatalf("got %d notifications (err %v), want 1 SENT", len(list), err)
		}
		sent := sentEvents(t, h.db, orderID)
		if len(sent) != 1 || sent[0].Status != status || sent[0].Reason != reason {
			rt.Fatalf("notifications.sent: got %+v, want one for %s %q", sent, status, reason)
		}
	}
	// Two batches of rapid's 100 checks: at least 200 cases in plain
	// `go test`, each batch with its own seed.
	for i := range 2 {
		t.Run(fmt.Sprint("batch", i), func(t *testing.T) { rapid.Check(t, property) })
	}
	if run < 200 && !testing.Short() {
		t.Errorf("ran %d cases, want at least 200", run)
	}
	if n := h.logBuf.Lines(); n != run {
		t.Errorf("log records: got %d, want one per order (%d)", n, run)
	}
}
