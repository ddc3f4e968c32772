// Package orderdb is the orders service's store on SQLite or PostgreSQL:
// one implementation, dialect-aware, sharing the database with the
// service's outbox and inbox so that all three commit together.
package orderdb

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/orders"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates or upgrades the orders tables, the outbox, the inbox and
// the HTTP API's stored responses (see idempotency).
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := inbox.MigrateService(ctx, db, "orders", migrations); err != nil {
		return err
	}
	return idempotency.Migrate(ctx, db)
}

// Store implements orders.Store.
type Store struct {
	*aggregate.Store[orders.Order]
	db *sqldb.DB
}

var _ orders.Store = (*Store)(nil)

// New returns the store of a migrated database.
func New(db *sqldb.DB) *Store {
	s := &Store{db: db}
	s.Store = aggregate.New(db, "order", inbox.Aggregate[orders.Order]{Load: s.loadLocked, Insert: s.insert, Update: s.update},
		func(o *orders.Order) string { return o.ID })
	return s
}

// errCreateRace means another transaction created the same order between
// our read and our insert; the whole unit of work is simply run again.
var errCreateRace = fmt.Errorf("orderdb: order created concurrently: %w", inbox.ErrRetry)

// Get implements orders.Store.
func (s *Store) Get(ctx context.Context, orderID string) (*orders.Order, error) {
	o, err := s.load(ctx, s.db.In(nil), orderID, false)
	if err == nil && o == nil {
		err = events.NotFound(fmt.Errorf("order %s: %w", orderID, orders.ErrNotFound))
	}
	if err != nil {
		return nil, fmt.Errorf("orderdb: get %s: %w", orderID, err)
	}
	return o, nil
}

func (s *Store) loadLocked(ctx context.Context, tx *sql.Tx, orderID string) (*orders.Order, error) {
	return s.load(ctx, s.db.In(tx), orderID, true)
}

// orderColumns are the columns scanOrder reads.
const orderColumns = `order_id, customer_id, status, reason, currency, total_amount, items,
	stock_reserved, payment_id, placed_unix_ms, updated_unix_ms`

// selectOrder reads one order; with the dialect's ForUpdate it holds its
// row until the transaction ends.
const selectOrder = `SELECT ` + orderColumns + ` FROM orders WHERE order_id = ?`

// load returns the order, or nil when there is none.
func (s *Store) load(ctx context.Context, q sqldb.Stmts, orderID string, lock bool) (*orders.Order, error) {
	query := selectOrder
	if lock {
		query = selectOrder + s.db.Dialect.ForUpdate()
	}
	o, err := scanOrder(q.QueryRow(ctx, query, orderID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return o, err
}

// scanOrder reads the columns of selectOrder.
func scanOrder(row interface{ Scan(dest ...any) error }) (*orders.Order, error) {
	var (
		o               orders.Order
		status          string
		items           string
		placed, updated int64
	)
	err := row.Scan(
		&o.ID, &o.CustomerID, &status, &o.Reason, &o.Total.Currency, &o.Total.Amount, &items,
		&o.StockReserved, &o.PaymentID, &placed, &updated)
	if err != nil {
		return nil, err
	}
	if err := jsonv2.Unmarshal([]byte(items), &o.Items); err != nil {
		return nil, fmt.Errorf("order %s: corrupt items: %w", o.ID, err)
	}
	o.Status = orders.Status(status)
	o.PlacedAt = time.UnixMilli(placed).UTC()
	o.UpdatedAt = time.UnixMilli(updated).UTC()
	return &o, nil
}

func (s *Store) insert(ctx context.Context, tx *sql.Tx, o *orders.Order) error {
	items, err := json.Marshal(o.Items)
	if err != nil {
		return err
	}
	res, err := s.db.In(tx).Exec(ctx, `INSERT INTO orders (order_id, customer_id, status, reason,
		currency, total_amount, items, stock_reserved, payment_id, placed_unix_ms, updated_unix_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
		o.ID, o.CustomerID, string(o.Status), o.Reason, o.Total.Currency, o.Total.Amount, string(items),
		o.StockReserved, o.PaymentID, o.PlacedAt.UnixMilli(), o.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errCreateRace
	}
	return nil
}

func (s *Store) update(ctx context.Context, tx *sql.Tx, o *orders.Order) error {
	_, err := s.db.In(tx).Exec(ctx, `UPDATE orders SET status = ?, reason = ?, stock_reserved = ?,
		payment_id = ?, updated_unix_ms = ? WHERE order_id = ?`,
		string(o.Status), o.Reason, o.StockReserved, o.PaymentID, o.UpdatedAt.UnixMilli(), o.ID)
	if err != nil {
		return fmt.Errorf("update order %s: %w", o.ID, err)
	}
	return nil
}

// List implements orders.Store. It reads one row more than the page
// holds, to know whether another page follows.
func (s *Store) List(ctx context.Context, q orders.ListQuery) (orders.Page, error) {
	limit, after, err := q.Validate()
	if err != nil {
		return orders.Page{}, events.Permanent(fmt.Errorf("orderdb: list: %w", err))
	}
	query, args := listSQL(q.ListFilter, after, limit+1)
	rows, err := s.db.In(nil).Query(ctx, query, args...)
	if err != nil {
		return orders.Page{}, fmt.Errorf("orderdb: list: %w", err)
	}
	defer rows.Close()
	page := orders.Page{Orders: make([]*orders.Order, 0, limit)}
	more := false
	for rows.Next() {
		if len(page.Orders) == limit {
			more = true
			break
		}
		o, err := scanOrder(rows)
		if err != nil {
			return orders.Page{}, fmt.Errorf("orderdb: list: %w", err)
		}
		page.Orders = append(page.Orders, o)
	}
	if err := rows.Err(); err != nil {
		return orders.Page{}, fmt.Errorf("orderdb: list: %w", err)
	}
	if more {
		page.NextCursor = q.NextCursor(page.Orders[limit-1])
	}
	return page, nil
}

// listSQL builds the statement of one page: each filter adds a fixed
// condition, so there are at most 16 texts, each prepared once. The
// conditions are equalities on the leading columns of one of the list
// indexes (see migration 0002) and ranges on its trailing (placed_unix_ms,
// order_id), so the index hands the rows over in the page's order and the
// scan stops after limit rows: no sort, whatever the filters. The row
// comparison is the keyset condition (see orders.ListQuery); both engines
// turn it into an index range.
func listSQL(f orders.ListFilter, after *orders.Position, limit int) (string, []any) {
	var (
		where []string
		args  []any
	)
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(f.Status))
	}
	if f.CustomerID != "" {
		where = append(where, "customer_id = ?")
		args = append(args, f.CustomerID)
	}
	if since := f.SinceMillis(); since != 0 {
		where = append(where, "placed_unix_ms >= ?")
		args = append(args, since)
	}
	if after != nil {
		where = append(where, "(placed_unix_ms, order_id) < (?, ?)")
		args = append(args, after.PlacedMillis, after.OrderID)
	}
	query := `SELECT ` + orderColumns + ` FROM orders`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY placed_unix_ms DESC, order_id DESC LIMIT ?`
	return query, append(args, limit)
}

// Overdue implements orders.Store.
func (s *Store) Overdue(ctx context.Context, placedBefore time.Time, limit int) ([]string, error) {
	rows, err := s.db.In(nil).Query(ctx, `SELECT order_id FROM orders WHERE status = 'PENDING' AND placed_unix_ms < ?
		ORDER BY placed_unix_ms LIMIT ?`, placedBefore.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("orderdb: overdue: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("orderdb: overdue: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("orderdb: overdue: %w", err)
	}
	return ids, nil
}

// Counts returns how many orders have each status, for tests and status
// reports.
func (s *Store) Counts(ctx context.Context) (map[orders.Status]int, error) {
	out, err := sqldb.CountGroups[orders.Status](ctx, s.db, `SELECT status, COUNT(*) FROM orders GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("orderdb: counts: %w", err)
	}
	return out, nil
}
