// Package payments owns the payment of each order: what the customer owes,
// whether the order was placed, its stock reserved or the order cancelled,
// and the calls to the external payment provider that take the money and,
// for a cancelled order, give it back.
//
// A payment's status (see Status) goes
//
//	WAITING → CAPTURE_PENDING → CAPTURED | DECLINED
//	CAPTURE_PENDING | CAPTURED → CANCEL_PENDING → REFUNDED | VOIDED
//	WAITING → VOIDED
//
// It consumes, through the durable consumer "payments":
//   - orders.placed.<order> (ORDERS), which names the customer and the
//     amount;
//   - inventory.reserved.<order> (INVENTORY), which says the goods are held
//     — for an order not yet seen placed it is retried (Transient), and
//     dead-lettered if the order never comes;
//   - orders.confirmed.<order> (ORDERS), which makes the capture final:
//     refused unless it confirms the captured amount;
//   - orders.cancelled.<order> (ORDERS), whatever the reason — refused for
//     an order known to be confirmed.
//
// Events are checked, not just believed (a misconfigured NATS server lets
// anyone publish them): the source and subject checks of catalog.EventOf,
// then the ones above; a refused event is dead-lettered with its reason
// and changes nothing.
//
// Messages that can never be handled go to dlq.payments. The events come
// from different streams, so they arrive in any order, and any may come
// twice: the result is the same (see the property tests).
//
// It publishes through its outbox, each at most once per order with an id
// derived from the order id and the event name:
//   - payments.captured.<order> once the provider charged the total;
//   - payments.declined.<order> when the provider refused the charge;
//   - payments.refunded.<order> when a charged order was cancelled and
//     the charge refunded ("the capture arrives after the cancellation");
//   - payments.voided.<order> when an order was cancelled before any
//     charge: none will ever be made.
//
// Invariants:
//   - an order is captured only when it is placed, reserved and not
//     cancelled;
//   - a confirmed order is never refunded;
//   - an order is charged at most once and refunded at most once: every
//     provider call carries the order id as its idempotency key, so a
//     retried call returns the first answer;
//   - once quiet, money captured − refunded for an order is its total if
//     the payment is CAPTURED, else 0; a cancelled order ends REFUNDED,
//     VOIDED or DECLINED;
//   - an order never cancelled gets exactly one of payments.captured and
//     payments.declined; a cancelled one at most one of them, and exactly
//     one of payments.refunded and payments.voided unless it was declined
//     (a cancellation that overtakes the capture voids the payment with
//     no payments.captured at all, or refunds a charge whose answer never
//     came back);
//   - the provider is never called inside a database transaction: a slow
//     provider must not hold row locks or the SQLite write lock. The
//     decision (CAPTURE_PENDING or CANCEL_PENDING) commits first; the call
//     follows; its answer commits in a second transaction. A crash between
//     them leaves the payment pending, and the redelivered message, found
//     in the inbox as a duplicate, finishes the job.
//
// Cancellation needs care because a capture may be in flight on another
// replica when the cancellation commits. A payment still WAITING was
// never sent to the provider (that decision is made in the same row,
// under its lock), so it is voided on the spot without a provider call.
// Any later payment goes through CANCEL_PENDING and the provider's Cancel,
// which refunds the charge if the capture went through and otherwise
// voids the key, so that a capture still on its way is declined; the
// capture's own answer, arriving after the cancellation, is then ignored.
//
// While the provider is down (breaker open, bulkhead full — errors
// wrapping ErrProviderUnavailable —, timeouts, transport failures, 5xx),
// messages fail with events.Unavailable: they back off and are
// retried for as long as the outage lasts, and never go to the
// dead-letter queue. Each handler keeps its message in progress while it
// waits on the provider, so a slow call is not redelivered meanwhile.
package payments
