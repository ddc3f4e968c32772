// Package notifications owns the customer notifications of final orders:
// one per order and final status (CONFIRMED, or CANCELLED with its
// reason), PENDING until the sender has delivered it, then SENT.
//
// It consumes orders.confirmed.<order> and orders.cancelled.<order>
// (ORDERS) through the durable consumer "notifications"; messages that can
// never be handled go to dlq.notifications.
//
// It publishes notifications.sent.<order> through its outbox once a
// notification is delivered.
//
// Invariants:
//   - exactly one notification per order and final status, however often
//     the order's event arrives: its id derives from the order id and the
//     status, and the table is unique on both;
//   - one final status per order: news that an order whose customer was
//     told it is confirmed is cancelled (or the other way round) is not
//     believed — a forgery on a misconfigured server, since orders ends an
//     order once — and is dead-lettered, telling the customer nothing;
//   - the sender is never called inside a database transaction, so a slow
//     mail server holds no locks. The notification commits as PENDING
//     first; delivery follows; SENT and notifications.sent commit in a
//     second transaction. A crash between them leaves it PENDING, and the
//     redelivered event, a duplicate for the inbox, delivers it;
//   - the notification id is the sender's idempotency key, so a delivery
//     retried after a failure that struck once the message was out is
//     recognised by a sender that keeps keys (the log sink does, per
//     process);
//   - notifications.sent is published once per notification, with an id
//     derived from the order id and the status.
package notifications
