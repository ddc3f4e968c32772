// Package notificationdb is the notifications service's store on SQLite
// or PostgreSQL: one implementation, dialect-aware, sharing the database
// with the service's outbox and inbox so that all three commit together.
package notificationdb

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/notifications"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates or upgrades the notifications table, the outbox and the
// inbox.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return inbox.MigrateService(ctx, db, "notifications", migrations)
}

// Store implements notifications.Store.
type Store struct {
	*aggregate.Store[notifications.Notification]
	db *sqldb.DB
}

var _ notifications.Store = (*Store)(nil)

// New returns the store of a migrated database.
func New(db *sqldb.DB) *Store {
	s := &Store{db: db}
	s.Store = aggregate.New(db, "notification", inbox.Aggregate[notifications.Notification]{Load: s.load, Insert: s.insert, Update: s.update},
		func(n *notifications.Notification) string { return n.ID })
	return s
}

// errCreateRace means another transaction recorded the same notification
// between our read and our insert (the same event delivered to two
// replicas); the whole unit of work is simply run again, and then finds
// the row and locks it.
var errCreateRace = fmt.Errorf("notificationdb: notification created concurrently: %w", inbox.ErrRetry)

const columns = `notification_id, order_id, status, customer_id, reason, currency, total_amount, items,
	state, channel, created_unix_ms, sent_unix_ms`

type scanner interface {
	Scan(dest ...any) error
}

// load returns the notification locked, or nil when there is none.
func (s *Store) load(ctx context.Context, tx *sql.Tx, id string) (*notifications.Notification, error) {
	query := `SELECT ` + columns + ` FROM notifications WHERE notification_id = ?` + s.db.Dialect.ForUpdate()
	n, err := scan(s.db.In(tx).QueryRow(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return n, err
}

func scan(row scanner) (*notifications.Notification, error) {
	var (
		n             notifications.Notification
		state, items  string
		created, sent int64
	)
	err := row.Scan(&n.ID, &n.OrderID, &n.Status, &n.CustomerID, &n.Reason, &n.Total.Currency, &n.Total.Amount,
		&items, &state, &n.Channel, &created, &sent)
	if err != nil {
		return nil, err
	}
	if err := jsonv2.Unmarshal([]byte(items), &n.Items); err != nil {
		return nil, fmt.Errorf("notification %s: corrupt items: %w", n.ID, err)
	}
	n.State = notifications.State(state)
	if !n.State.Valid() {
		return nil, fmt.Errorf("notification %s has unknown state %q", n.ID, state)
	}
	n.CreatedAt = time.UnixMilli(created).UTC()
	if sent != 0 {
		n.SentAt = time.UnixMilli(sent).UTC()
	}
	return &n, nil
}

func sentMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func (s *Store) insert(ctx context.Context, tx *sql.Tx, n *notifications.Notification) error {
	items, err := json.Marshal(n.Items)
	if err != nil {
		return fmt.Errorf("insert notification %s: %w", n.ID, err)
	}
	// DO NOTHING without a target covers both the id and the (order,
	// status) constraint.
	res, err := s.db.In(tx).Exec(ctx, `INSERT INTO notifications (`+columns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		n.ID, n.OrderID, n.Status, n.CustomerID, n.Reason, n.Total.Currency, n.Total.Amount, string(items),
		string(n.State), n.Channel, n.CreatedAt.UnixMilli(), sentMillis(n.SentAt))
	if err != nil {
		return fmt.Errorf("insert notification %s: %w", n.ID, err)
	}
	if affected, err := res.RowsAffected(); err == nil && affected == 0 {
		// Either the same notification was just recorded (retry and find
		// it), or the order and status are taken by another id, which the
		// derived ids rule out unless a caller chose its own.
		var exists int
		err := s.db.In(tx).QueryRow(ctx, `SELECT COUNT(*) FROM notifications WHERE notification_id = ?`, n.ID).Scan(&exists)
		if err != nil {
			return fmt.Errorf("insert notification %s: %w", n.ID, err)
		}
		if exists == 0 {
			return events.Conflict(fmt.Errorf("insert notification %s: order %s already has a %s notification under another id",
				n.ID, n.OrderID, n.Status))
		}
		return errCreateRace
	}
	return nil
}

// update writes what may change after creation: the delivery.
func (s *Store) update(ctx context.Context, tx *sql.Tx, n *notifications.Notification) error {
	_, err := s.db.In(tx).Exec(ctx,
		`UPDATE notifications SET state = ?, channel = ?, sent_unix_ms = ? WHERE notification_id = ?`,
		string(n.State), n.Channel, sentMillis(n.SentAt), n.ID)
	if err != nil {
		return fmt.Errorf("update notification %s: %w", n.ID, err)
	}
	return nil
}

// List implements notifications.Store.
func (s *Store) List(ctx context.Context, orderID string) ([]*notifications.Notification, error) {
	rows, err := s.db.In(nil).Query(ctx,
		`SELECT `+columns+` FROM notifications WHERE order_id = ? ORDER BY created_unix_ms, status`, orderID)
	if err != nil {
		return nil, fmt.Errorf("notificationdb: list %s: %w", orderID, err)
	}
	defer rows.Close()
	var out []*notifications.Notification
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("notificationdb: list %s: %w", orderID, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notificationdb: list %s: %w", orderID, err)
	}
	return out, nil
}

// Counts returns how many notifications are in each state, for tests and
// status reports: a PENDING count that does not fall means delivery is
// stuck.
func (s *Store) Counts(ctx context.Context) (map[notifications.State]int, error) {
	out, err := sqldb.CountGroups[notifications.State](ctx, s.db, `SELECT state, COUNT(*) FROM notifications GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("notificationdb: counts: %w", err)
	}
	return out, nil
}
