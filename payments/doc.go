// Package payments owns the payment of each order: what the customer owes,
// whether the order was placed and its stock reserved, and the capture at
// the external payment provider (WAITING → CAPTURE_PENDING → CAPTURED).
//
// It consumes:
//   - orders.placed.<order> (ORDERS), which names the customer and the
//     amount;
//   - inventory.reserved.<order> (INVENTORY), which says the goods are held.
//
// Both arrive through the durable consumer "payments"; messages that can
// never be handled go to dlq.payments. The two events come from different
// streams, so they arrive in either order, and either may come twice.
//
// It publishes payments.captured.<order> through its outbox once the
// provider has charged the order's total.
//
// Invariants:
//   - an order is captured only when it is both placed and reserved;
//   - an order is charged at most once: the provider call carries the order
//     id as its idempotency key, so a retried call returns the first
//     charge;
//   - payments.captured is published exactly once per order, with an id
//     derived from the order id;
//   - the provider is never called inside a database transaction: a slow
//     provider must not hold row locks or the SQLite write lock. The
//     decision to capture (CAPTURE_PENDING) commits first; the call
//     follows; its result commits in a second transaction. A crash between
//     them leaves the payment CAPTURE_PENDING, and the redelivered message,
//     found in the inbox as a duplicate, finishes the capture.
package payments
