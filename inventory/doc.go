// Package inventory owns stock: per SKU how many units are available,
// reserved for pending orders and sold, and per order the reservation that
// holds (or failed to hold, or gave back) its lines.
//
// It consumes:
//   - cmd.inventory.restock (COMMANDS), and POST /inventory/{sku}/restock,
//     to add received stock;
//   - orders.placed.<order> (ORDERS), to reserve every line of the order or
//     none of them;
//   - orders.confirmed.<order> (ORDERS), to turn the reservation into sold
//     stock;
//   - orders.cancelled.<order> (ORDERS), whatever the reason, to give the
//     reserved stock back.
//
// It publishes inventory.restocked.<sku>, inventory.reserved.<order>,
// inventory.reservation_failed.<order>, inventory.committed.<order> and
// inventory.released.<order> through its outbox. Event ids derive from the
// input (the command key, the order id), so a replayed input yields the
// same ids.
//
// A reservation records which of its order's events were handled, so the
// outcome does not depend on the order they arrive in: a confirmation
// before the placement is remembered (AWAITING_PLACEMENT) and the placement
// then reserves and commits at once; a cancellation before the placement
// leaves a tombstone (CANCELLED) and the placement reserves nothing and
// publishes nothing. A repeated event changes nothing, whatever id it
// comes under. Inputs the saga never produces together (a cancellation of
// a confirmed order, a confirmation of an order whose reservation failed)
// are logged as errors and change no stock: what was sold stays sold.
//
// Invariants: per SKU, available + reserved + sold = everything received,
// and no count is ever negative, whatever the concurrency (the store locks
// the SKU rows of a unit of work and the schema checks the counts); an
// order is reserved all or nothing, and decided once: a second
// orders.placed for it changes nothing; only a RESERVED reservation holds
// reserved stock, so once every order is confirmed or cancelled nothing is
// left reserved.
package inventory
