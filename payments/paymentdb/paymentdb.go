// Package paymentdb is the payments service's store on SQLite or
// PostgreSQL: one implementation, dialect-aware, sharing the database with
// the service's outbox and inbox so that all three commit together.
package paymentdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/payments"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates or upgrades the payments table, the outbox and the inbox.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return inbox.MigrateService(ctx, db, "payments", migrations)
}

// Store implements payments.Store.
type Store struct {
	*aggregate.Store[payments.Payment]
	db *sqldb.DB
}

var _ payments.Store = (*Store)(nil)

// New returns the store of a migrated database.
func New(db *sqldb.DB) *Store {
	s := &Store{db: db}
	s.Store = aggregate.New(db, "payment of order", inbox.Aggregate[payments.Payment]{Load: s.loadLocked, Insert: s.insert, Update: s.update},
		func(p *payments.Payment) string { return p.OrderID })
	return s
}

// errCreateRace means another transaction created the same payment between
// our read and our insert (the placed and reserved events of one order
// handled at once); the whole unit of work is simply run again, and then
// finds the row and locks it.
var errCreateRace = fmt.Errorf("paymentdb: payment created concurrently: %w", inbox.ErrRetry)

// Get implements payments.Store.
func (s *Store) Get(ctx context.Context, orderID string) (*payments.Payment, error) {
	p, err := s.load(ctx, s.db.In(nil), orderID, false)
	if err == nil && p == nil {
		err = events.NotFound(fmt.Errorf("order %s: %w", orderID, payments.ErrNotFound))
	}
	if err != nil {
		return nil, fmt.Errorf("paymentdb: get %s: %w", orderID, err)
	}
	return p, nil
}

const columns = `order_id, customer_id, currency, amount, placed, reserved, cancelled, confirmed, status, payment_id,
	decline_reason, captured_amount, refunded_amount, created_unix_ms, updated_unix_ms`

type scanner interface {
	Scan(dest ...any) error
}

func (s *Store) loadLocked(ctx context.Context, tx *sql.Tx, orderID string) (*payments.Payment, error) {
	return s.load(ctx, s.db.In(tx), orderID, true)
}

// load returns the payment of an order, or nil when there is none.
func (s *Store) load(ctx context.Context, q sqldb.Stmts, orderID string, lock bool) (*payments.Payment, error) {
	query := `SELECT ` + columns + ` FROM payments WHERE order_id = ?`
	if lock {
		query += s.db.Dialect.ForUpdate()
	}
	p, err := scan(q.QueryRow(ctx, query, orderID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return p, err
}

func scan(row scanner) (*payments.Payment, error) {
	var (
		p                payments.Payment
		status           string
		created, updated int64
	)
	err := row.Scan(&p.OrderID, &p.CustomerID, &p.Amount.Currency, &p.Amount.Amount, &p.Placed, &p.Reserved,
		&p.Cancelled, &p.Confirmed, &status, &p.PaymentID, &p.DeclineReason, &p.CapturedAmount, &p.RefundedAmount, &created, &updated)
	if err != nil {
		return nil, err
	}
	p.Status = payments.Status(status)
	if !p.Status.Valid() {
		// A newer release wrote a status this one does not know; acting
		// on it could charge twice or not at all.
		return nil, fmt.Errorf("payment of order %s has unknown status %q", p.OrderID, status)
	}
	p.CreatedAt = time.UnixMilli(created).UTC()
	p.UpdatedAt = time.UnixMilli(updated).UTC()
	return &p, nil
}

func (s *Store) insert(ctx context.Context, tx *sql.Tx, p *payments.Payment) error {
	res, err := s.db.In(tx).Exec(ctx, `INSERT INTO payments (`+columns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
		p.OrderID, p.CustomerID, p.Amount.Currency, p.Amount.Amount, p.Placed, p.Reserved, p.Cancelled, p.Confirmed,
		string(p.Status), p.PaymentID, p.DeclineReason, p.CapturedAmount, p.RefundedAmount,
		p.CreatedAt.UnixMilli(), p.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert payment of order %s: %w", p.OrderID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errCreateRace
	}
	return nil
}

func (s *Store) update(ctx context.Context, tx *sql.Tx, p *payments.Payment) error {
	_, err := s.db.In(tx).Exec(ctx, `UPDATE payments SET customer_id = ?, currency = ?, amount = ?,
		placed = ?, reserved = ?, cancelled = ?, confirmed = ?, status = ?, payment_id = ?, decline_reason = ?,
		captured_amount = ?, refunded_amount = ?, updated_unix_ms = ? WHERE order_id = ?`,
		p.CustomerID, p.Amount.Currency, p.Amount.Amount, p.Placed, p.Reserved, p.Cancelled, p.Confirmed, string(p.Status),
		p.PaymentID, p.DeclineReason, p.CapturedAmount, p.RefundedAmount, p.UpdatedAt.UnixMilli(), p.OrderID)
	if err != nil {
		return fmt.Errorf("update payment of order %s: %w", p.OrderID, err)
	}
	return nil
}

// List returns every payment ordered by order id, for tests and reports.
func (s *Store) List(ctx context.Context) ([]*payments.Payment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM payments ORDER BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("paymentdb: list: %w", err)
	}
	defer rows.Close()
	var out []*payments.Payment
	for rows.Next() {
		p, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("paymentdb: list: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("paymentdb: list: %w", err)
	}
	return out, nil
}

// OrderMoney is the money the provider took and gave back for one order,
// in minor units of Currency.
type OrderMoney struct {
	Currency string
	Captured int64
	Refunded int64
}

// Net returns Captured − Refunded: what the merchant keeps. Once the saga
// is quiet it is the order's total if the order was confirmed, else 0.
func (m OrderMoney) Net() int64 { return m.Captured - m.Refunded }

// Money returns the money of every order, by order id: the per-order side
// of the saga's "captured − refunded = total if confirmed, else 0"
// invariant. An order whose payment never took money has a zero entry.
func (s *Store) Money(ctx context.Context) (map[string]OrderMoney, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT order_id, currency, captured_amount, refunded_amount FROM payments`)
	if err != nil {
		return nil, fmt.Errorf("paymentdb: money: %w", err)
	}
	defer rows.Close()
	out := map[string]OrderMoney{}
	for rows.Next() {
		var (
			id string
			m  OrderMoney
		)
		if err := rows.Scan(&id, &m.Currency, &m.Captured, &m.Refunded); err != nil {
			return nil, fmt.Errorf("paymentdb: money: %w", err)
		}
		out[id] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("paymentdb: money: %w", err)
	}
	return out, nil
}

// CapturedTotals returns the money captured per currency, in minor units,
// including captures refunded since: subtract RefundedTotals for what the
// merchant keeps. Captures still pending are not counted.
func (s *Store) CapturedTotals(ctx context.Context) (map[string]int64, error) {
	return s.totals(ctx, "captured_amount")
}

// RefundedTotals returns the money refunded per currency, in minor units.
func (s *Store) RefundedTotals(ctx context.Context) (map[string]int64, error) {
	return s.totals(ctx, "refunded_amount")
}

// totals sums one of the amount columns per currency, leaving out
// currencies where it is zero.
func (s *Store) totals(ctx context.Context, column string) (map[string]int64, error) {
	// The cast keeps PostgreSQL from widening the sum to NUMERIC.
	rows, err := s.db.QueryContext(ctx, `SELECT currency, CAST(SUM(`+column+`) AS BIGINT) FROM payments
		WHERE `+column+` <> 0 GROUP BY currency`)
	if err != nil {
		return nil, fmt.Errorf("paymentdb: %s totals: %w", column, err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			currency string
			sum      int64
		)
		if err := rows.Scan(&currency, &sum); err != nil {
			return nil, fmt.Errorf("paymentdb: %s totals: %w", column, err)
		}
		out[currency] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("paymentdb: %s totals: %w", column, err)
	}
	return out, nil
}
