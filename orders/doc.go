// Package orders owns customer orders: their lines, total and status
// (PENDING → CONFIRMED or CANCELLED, with a reason).
//
// It consumes:
//   - cmd.orders.place (COMMANDS), and POST /orders, to create an order;
//   - inventory.reserved.<order> and inventory.reservation_failed.<order>
//     (INVENTORY);
//   - payments.captured.<order> (PAYMENTS).
//
// It publishes orders.placed, orders.confirmed and orders.cancelled, keyed
// by the order id, through its outbox.
//
// Invariants: an order is created once per order id whatever the number of
// place requests; a final order never changes status again; every final
// order is published once with its reason. Every handler gives the same
// result for any arrival order and duplication of its inputs.
package orders
