// Package stockdb is the inventory service's store on SQLite or PostgreSQL:
// one implementation, dialect-aware, sharing the database with the
// service's outbox and inbox so that all three commit together.
//
// Overselling is prevented by locking, not by retrying: a unit of work
// locks every stock row it reads (FOR UPDATE on PostgreSQL; SQLite
// transactions begin IMMEDIATE and so already exclude each other) before
// the domain decides, and locks them in SKU order so that two units of
// work wanting the same SKUs queue instead of deadlocking. A CHECK on the
// counts backs this up.
package stockdb

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/inventory"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates or upgrades the inventory tables, the outbox, the inbox
// and the HTTP API's stored responses (see idempotency).
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := inbox.MigrateService(ctx, db, catalog.Inventory, migrations); err != nil {
		return err
	}
	return idempotency.Migrate(ctx, db)
}

// Store implements inventory.Store.
type Store struct {
	db *sqldb.DB
	ob *outbox.Outbox
}

var _ inventory.Store = (*Store)(nil)

// New returns the store of a migrated database.
func New(db *sqldb.DB) *Store {
	return &Store{db: db, ob: outbox.New(db)}
}

// Outbox returns the store's outbox, for the relay.
func (s *Store) Outbox() *outbox.Outbox { return s.ob }

// errCreateRace means another transaction created the same reservation
// between our read and our insert (PostgreSQL cannot lock a row that does
// not exist yet); the whole unit of work is simply run again, and then
// finds the reservation.
var errCreateRace = fmt.Errorf("stockdb: reservation created concurrently: %w", inbox.ErrRetry)

// ApplySKU implements inventory.Store.
func (s *Store) ApplySKU(ctx context.Context, key inbox.Key, sku string, fn func(st *inventory.Stock) ([]events.Outgoing, error)) (bool, error) {
	return inbox.Apply(ctx, s.ob, key, s.skuFn(sku, fn))
}

// SKUWork implements inventory.Store.
func (s *Store) SKUWork(key inbox.Key, sku string, fn func(st *inventory.Stock) ([]events.Outgoing, error)) consumer.Work {
	return consumer.Work{Key: key, Apply: s.skuFn(sku, fn)}
}

func (s *Store) skuFn(sku string, fn func(st *inventory.Stock) ([]events.Outgoing, error)) inbox.Fn {
	return func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		out, err := s.applySKU(ctx, tx, sku, fn)
		if err != nil {
			return nil, fmt.Errorf("stockdb: apply to sku %s: %w", sku, err)
		}
		return out, nil
	}
}

func (s *Store) applySKU(ctx context.Context, tx *sql.Tx, sku string, fn func(st *inventory.Stock) ([]events.Outgoing, error)) ([]events.Outgoing, error) {
	stock, err := s.lockStock(ctx, tx, []string{sku})
	if err != nil {
		return nil, err
	}
	before := snapshot(stock)
	out, err := fn(stock[sku])
	if err != nil {
		return nil, err
	}
	return out, s.saveStock(ctx, tx, before, stock)
}

// ApplyOrder implements inventory.Store. It locks the reservation row
// first and the stock rows after it, in SKU order.
func (s *Store) ApplyOrder(ctx context.Context, key inbox.Key, orderID string, skus []string, fn inventory.OrderTransition) (bool, error) {
	return inbox.Apply(ctx, s.ob, key, s.orderFn(orderID, skus, fn))
}

// OrderWork implements inventory.Store.
func (s *Store) OrderWork(key inbox.Key, orderID string, skus []string, fn inventory.OrderTransition) consumer.Work {
	return consumer.Work{Key: key, Apply: s.orderFn(orderID, skus, fn)}
}

func (s *Store) orderFn(orderID string, skus []string, fn inventory.OrderTransition) inbox.Fn {
	return func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		out, err := s.applyOrder(ctx, tx, orderID, skus, fn)
		if err != nil {
			return nil, fmt.Errorf("stockdb: apply to order %s: %w", orderID, err)
		}
		return out, nil
	}
}

func (s *Store) applyOrder(ctx context.Context, tx *sql.Tx, orderID string, skus []string, fn inventory.OrderTransition) ([]events.Outgoing, error) {
	current, err := s.loadReservation(ctx, s.db.In(tx), orderID, true)
	if err != nil && !errors.Is(err, inventory.ErrReservationNotFound) {
		return nil, err
	}
	lock := slices.Clone(skus)
	if current != nil {
		lock = append(lock, inventory.SKUs(current.Lines)...)
	}
	stock, err := s.lockStock(ctx, tx, lock)
	if err != nil {
		return nil, err
	}
	before := snapshot(stock)
	next, out, err := fn(current, stock)
	if err != nil {
		return nil, err
	}
	if err := s.saveStock(ctx, tx, before, stock); err != nil {
		return nil, err
	}
	switch {
	case next == nil:
	case next.OrderID != orderID:
		return nil, fmt.Errorf("reservation of order %s returned for order %s", next.OrderID, orderID)
	case next.Validate() != nil:
		// A state no transition produces: refuse it rather than store a
		// reservation the next input cannot make sense of.
		return nil, events.Permanent(next.Validate())
	case current == nil:
		err = s.insertReservation(ctx, tx, next)
	default:
		err = s.updateReservation(ctx, tx, next)
	}
	return out, err
}

// lockStock returns the stock rows of skus, locked until tx ends, creating
// the absent ones with zero counts: PostgreSQL can only lock a row that
// exists, and a SKU never restocked is a SKU with nothing available. Rows
// are taken one at a time in sorted order (the insert of an absent row
// waits on a concurrent creator just as the SELECT waits on a holder),
// which is what keeps concurrent units of work free of deadlocks.
func (s *Store) lockStock(ctx context.Context, tx *sql.Tx, skus []string) (map[string]*inventory.Stock, error) {
	sorted := slices.Sorted(slices.Values(skus))
	sorted = slices.Compact(sorted)
	q := s.db.In(tx)
	sel := `SELECT available, reserved, sold FROM stock WHERE sku = ?` + s.db.Dialect.ForUpdate()
	now := time.Now().UnixMilli()
	stock := make(map[string]*inventory.Stock, len(sorted))
	for _, sku := range sorted {
		if err := inventory.ValidateSKU(sku); err != nil {
			return nil, err
		}
		st := &inventory.Stock{SKU: sku}
		err := q.QueryRow(ctx, sel, sku).Scan(&st.Available, &st.Reserved, &st.Sold)
		if errors.Is(err, sql.ErrNoRows) {
			// The first unit of work to touch this SKU creates its row
			// (waiting, like the SELECT, on a concurrent creator), then
			// locks it.
			if _, err := q.Exec(ctx, `INSERT INTO stock (sku, available, reserved, sold, updated_unix_ms)
				VALUES (?, 0, 0, 0, ?) ON CONFLICT (sku) DO NOTHING`, sku, now); err != nil {
				return nil, fmt.Errorf("create stock row %s: %w", sku, err)
			}
			err = q.QueryRow(ctx, sel, sku).Scan(&st.Available, &st.Reserved, &st.Sold)
		}
		if err != nil {
			return nil, fmt.Errorf("lock stock row %s: %w", sku, err)
		}
		stock[sku] = st
	}
	return stock, nil
}

func snapshot(stock map[string]*inventory.Stock) map[string]inventory.Stock {
	before := make(map[string]inventory.Stock, len(stock))
	for sku, st := range stock {
		before[sku] = *st
	}
	return before
}

// saveStock writes the rows fn changed. Counts are written as they are,
// negative or not: the schema's CHECK is what refuses a negative one, so
// that the last line of defence is the one that is exercised.
func (s *Store) saveStock(ctx context.Context, tx *sql.Tx, before map[string]inventory.Stock, stock map[string]*inventory.Stock) error {
	q := s.db.In(tx)
	now := time.Now().UnixMilli()
	for _, sku := range slices.Sorted(maps.Keys(stock)) {
		st := stock[sku]
		old, locked := before[sku]
		if !locked || st == nil || st.SKU != sku {
			// Writing a row this unit of work did not lock could oversell it.
			return fmt.Errorf("stock of sku %s changed without being locked", sku)
		}
		if *st == old {
			continue
		}
		if _, err := q.Exec(ctx, `UPDATE stock SET available = ?, reserved = ?, sold = ?, updated_unix_ms = ? WHERE sku = ?`,
			st.Available, st.Reserved, st.Sold, now, sku); err != nil {
			return fmt.Errorf("update stock %s to available %d, reserved %d, sold %d: %w", sku, st.Available, st.Reserved, st.Sold, err)
		}
	}
	return nil
}

// reservationColumns are the columns scanReservation reads, in its order.
const reservationColumns = `order_id, status, placed, confirmed, cancelled, lines, shortages, created_unix_ms, updated_unix_ms`

type scanner interface{ Scan(dest ...any) error }

func scanReservation(row scanner) (*inventory.Reservation, error) {
	var (
		r                = inventory.Reservation{}
		status           string
		lines, shortages string
		created, updated int64
	)
	if err := row.Scan(&r.OrderID, &status, &r.Seen.Placed, &r.Seen.Confirmed, &r.Seen.Cancelled,
		&lines, &shortages, &created, &updated); err != nil {
		return nil, err
	}
	if err := jsonv2.Unmarshal([]byte(lines), &r.Lines); err != nil {
		return nil, fmt.Errorf("reservation %s: corrupt lines: %w", r.OrderID, err)
	}
	if err := jsonv2.Unmarshal([]byte(shortages), &r.Shortages); err != nil {
		return nil, fmt.Errorf("reservation %s: corrupt shortages: %w", r.OrderID, err)
	}
	// The columns hold [] for none; the domain's value for none is nil.
	if len(r.Lines) == 0 {
		r.Lines = nil
	}
	if len(r.Shortages) == 0 {
		r.Shortages = nil
	}
	r.Status = inventory.ReservationStatus(status)
	// A row written by a version before 0002 (a replica not yet upgraded,
	// during a rolling deploy) records only its status; what the status
	// implies was seen is seen.
	switch r.Status {
	case inventory.Reserved, inventory.Failed:
		r.Seen.Placed = true
	case inventory.Committed:
		r.Seen.Placed, r.Seen.Confirmed = true, true
	case inventory.Released:
		r.Seen.Placed, r.Seen.Cancelled = true, true
	}
	r.CreatedAt = time.UnixMilli(created).UTC()
	r.UpdatedAt = time.UnixMilli(updated).UTC()
	return &r, nil
}

func (s *Store) loadReservation(ctx context.Context, q sqldb.Stmts, orderID string, lock bool) (*inventory.Reservation, error) {
	query := `SELECT ` + reservationColumns + ` FROM reservations WHERE order_id = ?`
	if lock {
		query += s.db.Dialect.ForUpdate()
	}
	r, err := scanReservation(q.QueryRow(ctx, query, orderID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, events.NotFound(fmt.Errorf("order %s: %w", orderID, inventory.ErrReservationNotFound))
	}
	if err != nil {
		return nil, fmt.Errorf("load reservation %s: %w", orderID, err)
	}
	return r, nil
}

func marshalReservation(r *inventory.Reservation) (lines, shortages string, err error) {
	// Empty, not null: the columns always hold a JSON array.
	l, err := json.Marshal(nonNil(r.Lines))
	if err != nil {
		return "", "", fmt.Errorf("reservation %s: marshal lines: %w", r.OrderID, err)
	}
	sh, err := json.Marshal(nonNil(r.Shortages))
	if err != nil {
		return "", "", fmt.Errorf("reservation %s: marshal shortages: %w", r.OrderID, err)
	}
	return string(l), string(sh), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Store) insertReservation(ctx context.Context, tx *sql.Tx, r *inventory.Reservation) error {
	lines, shortages, err := marshalReservation(r)
	if err != nil {
		return err
	}
	res, err := s.db.In(tx).Exec(ctx, `INSERT INTO reservations (`+reservationColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
		r.OrderID, string(r.Status), r.Seen.Placed, r.Seen.Confirmed, r.Seen.Cancelled,
		lines, shortages, r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert reservation %s: %w", r.OrderID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errCreateRace
	}
	return nil
}

func (s *Store) updateReservation(ctx context.Context, tx *sql.Tx, r *inventory.Reservation) error {
	lines, shortages, err := marshalReservation(r)
	if err != nil {
		return err
	}
	_, err = s.db.In(tx).Exec(ctx, `UPDATE reservations
		SET status = ?, placed = ?, confirmed = ?, cancelled = ?, lines = ?, shortages = ?, updated_unix_ms = ?
		WHERE order_id = ?`,
		string(r.Status), r.Seen.Placed, r.Seen.Confirmed, r.Seen.Cancelled, lines, shortages, r.UpdatedAt.UnixMilli(), r.OrderID)
	if err != nil {
		return fmt.Errorf("update reservation %s: %w", r.OrderID, err)
	}
	return nil
}

// Get implements inventory.Store: a SKU without a row has never been
// stocked, so its stock is zeros rather than an error.
func (s *Store) Get(ctx context.Context, sku string) (inventory.Stock, error) {
	st := inventory.Stock{SKU: sku}
	err := s.db.In(nil).QueryRow(ctx, `SELECT available, reserved, sold FROM stock WHERE sku = ?`, sku).
		Scan(&st.Available, &st.Reserved, &st.Sold)
	if errors.Is(err, sql.ErrNoRows) {
		return inventory.Stock{SKU: sku}, nil
	}
	if err != nil {
		return inventory.Stock{}, fmt.Errorf("stockdb: get %s: %w", sku, err)
	}
	return st, nil
}

// Reservation returns the reservation of orderID, or an error wrapping
// inventory.ErrReservationNotFound (NotFound).
func (s *Store) Reservation(ctx context.Context, orderID string) (*inventory.Reservation, error) {
	r, err := s.loadReservation(ctx, s.db.In(nil), orderID, false)
	if err != nil {
		return nil, fmt.Errorf("stockdb: get reservation: %w", err)
	}
	return r, nil
}

// Reservations returns every reservation, sorted by order id, for tests
// and status reports.
func (s *Store) Reservations(ctx context.Context) ([]*inventory.Reservation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+reservationColumns+` FROM reservations ORDER BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("stockdb: reservations: %w", err)
	}
	defer rows.Close()
	var out []*inventory.Reservation
	for rows.Next() {
		r, err := scanReservation(rows)
		if err != nil {
			return nil, fmt.Errorf("stockdb: reservations: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stockdb: reservations: %w", err)
	}
	return out, nil
}

// All returns the stock of every SKU with a row, sorted by SKU, for tests
// and status reports.
func (s *Store) All(ctx context.Context) ([]inventory.Stock, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sku, available, reserved, sold FROM stock ORDER BY sku`)
	if err != nil {
		return nil, fmt.Errorf("stockdb: all: %w", err)
	}
	defer rows.Close()
	var out []inventory.Stock
	for rows.Next() {
		var st inventory.Stock
		if err := rows.Scan(&st.SKU, &st.Available, &st.Reserved, &st.Sold); err != nil {
			return nil, fmt.Errorf("stockdb: all: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stockdb: all: %w", err)
	}
	return out, nil
}

// ReservationCounts returns how many reservations have each status, for
// tests and status reports.
func (s *Store) ReservationCounts(ctx context.Context) (map[inventory.ReservationStatus]int, error) {
	out, err := sqldb.CountGroups[inventory.ReservationStatus](ctx, s.db, `SELECT status, COUNT(*) FROM reservations GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("stockdb: reservation counts: %w", err)
	}
	return out, nil
}
