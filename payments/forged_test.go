package payments_test

import (
	"context"
	"errors"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
)

// Payments checks events, not just believes them: each forgery below is
// refused with the reason a dead letter carries, and moves no money.
func TestForgedEvents(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// A forged orders.cancelled for a confirmed order must not
			// refund it: the goods are sold.
			t.Run("CancelOfAConfirmedOrderRefundsNothing", func(t *testing.T) {
				h := newHarness(t, b)
				h.deliver(t, placedMsg(t, "order-1"), reservedMsg(t, "order-1"), confirmedMsg(t, "order-1"))
				err := h.svc.Handle(context.Background(), cancelledMsg(t, "order-1", catalog.ReasonTimeout))
				if !events.IsPermanent(err) || !errors.Is(err, payments.ErrConfirmed) {
					t.Fatalf("forged cancel: got %v, want a permanent error wrapping ErrConfirmed", err)
				}
				h.assertOutcome(t, "order-1", payments.Captured, capturedOnly, money{1200, 0})
				if p := h.mustGet(t, "order-1"); !p.Confirmed || p.Cancelled {
					t.Errorf("payment: confirmed %v cancelled %v, want true false", p.Confirmed, p.Cancelled)
				}
				if n := h.faults.CancelCalls(); n != 0 {
					t.Errorf("provider cancel calls: got %d, want 0", n)
				}
			})
			// A forged inventory.reserved for an order payments never saw
			// placed charges nobody and leaves no row: it waits (Transient)
			// and is dead-lettered once its deliveries run out.
			t.Run("ReservedForAnUnknownOrderCapturesNothing", func(t *testing.T) {
				h := newHarness(t, b)
				err := h.svc.Handle(context.Background(), reservedMsg(t, "ghost"))
				if events.KindOf(err) != events.KindEarly || !errors.Is(err, payments.ErrNotPlaced) {
					t.Fatalf("forged reserved: got %v (kind %s), want an early error wrapping ErrNotPlaced", err, events.KindOf(err))
				}
				if _, err := h.svc.Get(context.Background(), "ghost"); !errors.Is(err, payments.ErrNotFound) {
					t.Errorf("payment of the unknown order: got %v, want none", err)
				}
				if n := h.faults.Calls(); n != 0 {
					t.Errorf("provider calls: got %d, want 0", n)
				}
				if n := len(mustOutbox(t, h.db)); n != 0 {
					t.Errorf("outbox: got %d events, want none", n)
				}
			})
			// A forged orders.confirmed before the capture would shield a
			// later cancellation from its refund: it is refused, and the
			// real cancellation still voids the payment.
			t.Run("ConfirmationOfAnUncapturedPaymentIsRefused", func(t *testing.T) {
				h := newHarness(t, b)
				h.mustHandle(t, placedMsg(t, "order-1"))
				err := h.svc.Handle(context.Background(), confirmedMsg(t, "order-1"))
				if !events.IsPermanent(err) || !errors.Is(err, payments.ErrNotCaptured) {
					t.Fatalf("forged confirmed: got %v, want a permanent error wrapping ErrNotCaptured", err)
				}
				h.mustHandle(t, cancelledMsg(t, "order-1", catalog.ReasonOutOfStock))
				h.assertOutcome(t, "order-1", payments.Voided, voidedOnly, money{})
			})
		})
	}
}
