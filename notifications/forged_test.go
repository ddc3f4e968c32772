package notifications_test

import (
	"context"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// An order ends once: an orders.cancelled for an order whose customer was
// told it is confirmed (forged on a misconfigured server) is refused —
// Permanent, dead-lettered with the reason — and tells the customer
// nothing; the same holds the other way round.
func TestTheOtherEndOfAnOrderIsNotBelieved(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			h := newHarness(t, b)
			h.mustHandle(t, confirmedMsg(t, "order-1"))
			err := h.svc.Handle(context.Background(), cancelledMsg(t, "order-1", catalog.ReasonTimeout))
			if !events.IsPermanent(err) {
				t.Fatalf("forged cancel of a confirmed order: got %v, want a permanent error", err)
			}
			h.assertNotifiedOnce(t, "order-1", catalog.StatusConfirmed, "")

			h.mustHandle(t, cancelledMsg(t, "order-2", catalog.ReasonOutOfStock))
			if err := h.svc.Handle(context.Background(), confirmedMsg(t, "order-2")); !events.IsPermanent(err) {
				t.Fatalf("forged confirmation of a cancelled order: got %v, want a permanent error", err)
			}
			h.assertNotifiedOnce(t, "order-2", catalog.StatusCancelled, catalog.ReasonOutOfStock)
		})
	}
}
