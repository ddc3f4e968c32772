// Package inventory owns stock: per SKU how many units are available,
// reserved for pending orders and sold, and per order the reservation that
// holds (or failed to hold) its lines.
//
// It consumes:
//   - cmd.inventory.restock (COMMANDS), and POST /inventory/{sku}/restock,
//     to add received stock;
//   - orders.placed.<order> (ORDERS), to reserve every line of the order or
//     none of them;
//   - orders.confirmed.<order> (ORDERS), to turn the reservation into sold
//     stock.
//
// It publishes inventory.restocked.<sku>, inventory.reserved.<order>,
// inventory.reservation_failed.<order> and inventory.committed.<order>
// through its outbox. Event ids derive from the input (the command key, the
// order id), so a replayed input yields the same ids.
//
// Invariants: per SKU, available + reserved + sold = everything received,
// and no count is ever negative, whatever the concurrency (the store locks
// the SKU rows of a unit of work and the schema checks the counts); an
// order is reserved all or nothing, and decided once: a second
// orders.placed for it changes nothing. Every handler gives the same result
// for any duplication of its inputs, and a confirmation that arrives before
// its order's placement is retried until the placement has been handled.
package inventory
