// Package inbox makes consumption idempotent. A consumer claims the pair
// (consumer, event id) in the same transaction as the state change the
// event causes and the outbox rows it produces; a second delivery of the
// same event finds the claim, changes nothing, and is acknowledged.
package inbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates the inbox table in db if it does not exist yet.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	return sqldb.Migrate(ctx, db, "inbox", sub)
}

// MigrateService migrates everything a service's database holds: the
// outbox, the inbox, and the service's own tables from fsys (one directory
// per engine, as sqldb.Migrate reads them) under the name component.
func MigrateService(ctx context.Context, db *sqldb.DB, component string, fsys fs.FS) error {
	if err := outbox.Migrate(ctx, db); err != nil {
		return err
	}
	if err := Migrate(ctx, db); err != nil {
		return err
	}
	return sqldb.Migrate(ctx, db, component, fsys)
}

// ErrRetry, wrapped in the error a unit of work returns, asks Apply to run
// it again in a new transaction. A store returns it when another
// transaction created the row it was about to insert (both read "absent",
// one inserted first): the next run finds the row and locks it.
var ErrRetry = errors.New("inbox: run the unit of work again")

// maxRuns bounds how often Apply runs a unit of work that asks for a retry.
const maxRuns = 4

// Claim records that consumer has handled eventID, inside tx. It returns
// true the first time and false for a duplicate; on a duplicate the caller
// must not change any state. The claim only counts if tx commits.
func Claim(ctx context.Context, tx *sql.Tx, d sqldb.Dialect, consumer, eventID string) (bool, error) {
	if consumer == "" || eventID == "" {
		return false, events.Permanent(fmt.Errorf("inbox: claim needs a consumer and an event id (got %q, %q)", consumer, eventID))
	}
	res, err := tx.ExecContext(ctx, d.Rebind(
		`INSERT INTO inbox (consumer, event_id, claimed_unix_ms) VALUES (?, ?, ?) ON CONFLICT (consumer, event_id) DO NOTHING`),
		consumer, eventID, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s/%s: %w", consumer, eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s/%s: %w", consumer, eventID, err)
	}
	return n == 1, nil
}

// Key identifies one input to a consumer. An empty EventID skips the inbox:
// for changes that carry their own idempotency (an HTTP request keyed by
// the order id) or that are driven by the service itself.
type Key struct {
	Consumer string
	EventID  string
}

// Apply runs one unit of work in one transaction: claim key in the inbox,
// run fn, add the events fn returns to ob, commit, and wake the relay.
//
// On a duplicate it commits nothing, does not call fn, and returns
// applied=false with a nil error. When fn or any step fails, everything is
// rolled back (the claim included, so a redelivery will try again) and the
// error is returned with its kind intact. fn must do all its reads and
// writes through tx. If fn's error wraps ErrRetry, the whole unit of work
// runs again in a new transaction, a few times at most.
func Apply(ctx context.Context, ob *outbox.Outbox, key Key, fn func(tx *sql.Tx) ([]events.Outgoing, error)) (applied bool, err error) {
	for run := 1; ; run++ {
		applied, err = applyOnce(ctx, ob, key, fn)
		if !errors.Is(err, ErrRetry) || run == maxRuns {
			return applied, err
		}
	}
}

func applyOnce(ctx context.Context, ob *outbox.Outbox, key Key, fn func(tx *sql.Tx) ([]events.Outgoing, error)) (applied bool, err error) {
	db := ob.DB()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("inbox: begin: %w", err)
	}
	defer func() {
		if err != nil || !applied {
			_ = tx.Rollback()
		}
	}()
	if key.EventID != "" {
		first, err := Claim(ctx, tx, db.Dialect, key.Consumer, key.EventID)
		if err != nil {
			return false, err
		}
		if !first {
			return false, nil
		}
	}
	out, err := fn(tx)
	if err != nil {
		return false, err
	}
	if err := ob.Add(ctx, tx, out...); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("inbox: commit: %w", err)
	}
	if len(out) > 0 {
		ob.Notify()
	}
	return true, nil
}
