package payments_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
)

// TestAnyArrivalOrderCapturesOnce feeds random permutations of an order's
// two events with random duplicates and random provider failures (before
// or after the charge), redelivering every failed message later, as the
// consumer does. Whatever the schedule, the order ends captured, charged
// once, with exactly one payments.captured of the same id.
func TestAnyArrivalOrderCapturesOnce(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// One database for all runs, a fresh order per run: the
			// property is per order, and a schema per run would make the
			// test slow without testing more.
			h := newHarness(t, b)
			run := 0
			rapid.Check(t, func(rt *rapid.T) {
				run++
				orderID := fmt.Sprintf("order-%04d", run)
				var queue []*consumer.Message
				for range rapid.IntRange(1, 3).Draw(rt, "placed copies") {
					queue = append(queue, placedMsg(t, orderID))
				}
				for range rapid.IntRange(1, 3).Draw(rt, "reserved copies") {
					queue = append(queue, reservedMsg(t, orderID))
				}
				queue = rapid.Permutation(queue).Draw(rt, "arrival order")
				failuresLeft := rapid.IntRange(0, 3).Draw(rt, "provider failures")

				for len(queue) > 0 {
					m := queue[0]
					queue = queue[1:]
					if failuresLeft > 0 && rapid.Bool().Draw(rt, "fail next capture") {
						failuresLeft--
						if rapid.Bool().Draw(rt, "after the charge") {
							h.faults.failNext(0, 1)
						} else {
							h.faults.failNext(1, 0)
						}
					}
					err := h.svc.Handle(context.Background(), m)
					h.faults.failNext(0, 0) // an unused fault must not leak into the next delivery
					if err != nil {
						// Redelivered after the others, as a nak'ed message is.
						queue = append(queue, m)
					}
				}

				p, err := h.svc.Get(context.Background(), orderID)
				if err != nil {
					rt.Fatalf("Get: %v", err)
				}
				res, _, charged := h.provider.Charged(orderID)
				if !charged || p.Status != payments.Captured || p.PaymentID != res.PaymentID {
					rt.Fatalf("got status %s payment id %q charged %v, want CAPTURED %q true", p.Status, p.PaymentID, charged, res.PaymentID)
				}
				var ids []string
				for _, e := range mustOutbox(t, h.db) {
					if e.Env.Subject == orderID {
						ids = append(ids, e.Env.ID)
					}
				}
				if want := []string{payments.CapturedEventID(orderID)}; !slices.Equal(ids, want) {
					rt.Fatalf("events of %s: got %v, want %v", orderID, ids, want)
				}
			})
			if n, want := h.provider.Charges(), run; n != want {
				t.Errorf("provider charges: got %d, want one per order (%d)", n, want)
			}
		})
	}
}
