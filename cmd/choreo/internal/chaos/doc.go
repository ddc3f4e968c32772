// Package chaos holds the chaos test of choreo: every service a separate
// `choreo serve` process (two replicas each on PostgreSQL, one each on
// SQLite) against a standalone nats-server, orders, cancels and restocks
// over NATS and HTTP while processes are killed with SIGKILL and
// restarted, the NATS server restarted, a process paused past the ack
// wait, and the payment provider taken down; then it heals, waits for
// quiet and checks PRODUCT.md's invariants with the checker the
// in-process tests use (cmd/choreo/internal/sagacheck).
//
// It lives in a package of its own so that it runs beside the cmd/choreo
// tests. Run the long run with `go tool task chaos` (see the README).
package chaos
