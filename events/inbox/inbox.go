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
// outbox, the inbox, and the service's own tables from the directory
// "migrations" of fsys (one directory per engine in it, as sqldb.Migrate
// reads them: what `//go:embed migrations` embeds) under the name
// component.
func MigrateService(ctx context.Context, db *sqldb.DB, component string, fsys fs.FS) error {
	sub, err := fs.Sub(fsys, "migrations")
	if err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	if err := outbox.Migrate(ctx, db); err != nil {
		return err
	}
	if err := Migrate(ctx, db); err != nil {
		return err
	}
	return sqldb.Migrate(ctx, db, component, sub)
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
func Claim(ctx context.Context, tx *sql.Tx, db *sqldb.DB, consumer, eventID string) (bool, error) {
	return ClaimKey(ctx, tx, db, Key{Consumer: consumer, EventID: eventID})
}

// ErrKeyReused is wrapped by the Conflict error of a claim whose key was
// claimed before for a different body.
var ErrKeyReused = errors.New("idempotency key reused with a different body")

// ClaimKey is Claim for a key that may carry a hash of its body (see
// Key.Hash): when the key was claimed before with a different hash, it
// returns a Conflict error wrapping ErrKeyReused that names the earlier
// claim — the same key with another body is a client's mistake or a
// hijack, never a duplicate to drop in silence. A claim without a hash,
// or held without one (an event's, or one older than the hashes), is
// compared by key alone.
func ClaimKey(ctx context.Context, tx *sql.Tx, db *sqldb.DB, key Key) (bool, error) {
	consumer, eventID := key.Consumer, key.EventID
	if consumer == "" || eventID == "" {
		return false, events.Permanent(fmt.Errorf("inbox: claim needs a consumer and an event id (got %q, %q)", consumer, eventID))
	}
	q := db.In(tx)
	res, err := q.Exec(ctx,
		`INSERT INTO inbox (consumer, event_id, claimed_unix_ms, body_hash, ref) VALUES (?, ?, ?, ?, ?) ON CONFLICT (consumer, event_id) DO NOTHING`,
		consumer, eventID, time.Now().UnixMilli(), key.Hash, key.Ref)
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s/%s: %w", consumer, eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s/%s: %w", consumer, eventID, err)
	}
	if n == 1 || key.Hash == "" {
		return n == 1, nil
	}
	// Held already: only a duplicate pays for this read.
	var (
		hash, ref string
		claimed   int64
	)
	if err := q.QueryRow(ctx, `SELECT body_hash, ref, claimed_unix_ms FROM inbox WHERE consumer = ? AND event_id = ?`,
		consumer, eventID).Scan(&hash, &ref, &claimed); err != nil {
		return false, fmt.Errorf("inbox: claim %s/%s: read the earlier claim: %w", consumer, eventID, err)
	}
	if hash == "" || hash == key.Hash {
		return false, nil
	}
	earlier := "an earlier command"
	if ref != "" {
		earlier += " (" + ref + ")"
	}
	return false, events.Conflict(fmt.Errorf("%w: %q was used by %s at %s, whose body differs; send a new key for a new command",
		ErrKeyReused, eventID, earlier, time.UnixMilli(claimed).UTC().Format(time.RFC3339)))
}

// Key identifies one input to a consumer. An empty EventID skips the inbox:
// for changes that carry their own idempotency (an HTTP request keyed by
// the order id) or that are driven by the service itself.
type Key struct {
	Consumer string
	EventID  string
	// Hash, when set, is a digest of the input's body (a command's): the
	// key claimed again with another hash is a conflict (see ClaimKey),
	// not a duplicate. Empty: compared by key alone.
	Hash string
	// Ref says where the input came from ("COMMANDS:42"), for the
	// conflict error of a later claim of the same key. Optional.
	Ref string
}

// Fn is a unit of work's change inside its transaction: it reads and
// writes through tx only and returns the events to publish.
type Fn func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error)

// Apply runs one unit of work in one transaction: claim key in the inbox,
// run fn, add the events fn returns to ob, commit, and wake the relay.
//
// On a duplicate it commits nothing, does not call fn, and returns
// applied=false with a nil error. When fn or any step fails, everything is
// rolled back (the claim included, so a redelivery will try again) and the
// error is returned with its kind intact. If fn's error wraps ErrRetry,
// the whole unit of work runs again in a new transaction, a few times at
// most.
func Apply(ctx context.Context, ob *outbox.Outbox, key Key, fn Fn) (applied bool, err error) {
	for run := 1; ; run++ {
		var res []bool
		res, err = ApplyAll(ctx, ob, []Unit{{Key: key, Fn: fn}})
		if err == nil {
			return res[0], nil
		}
		if !errors.Is(err, ErrRetry) || run == maxRuns {
			return false, err
		}
	}
}

// Unit is one unit of work of a batch: an inbox claim and the change it
// guards. A nil Fn only takes the claim.
type Unit struct {
	Key Key
	Fn  Fn
	// Values, when set, is the context whose values (the trace, the
	// message being handled) the unit runs with, and its events are
	// created in; the batch's context still bounds it.
	Values context.Context
}

// valuesOf is a context with the deadline and cancellation of Context and
// the values of values.
type valuesOf struct {
	context.Context
	values context.Context
}

func (v valuesOf) Value(key any) any { return v.values.Value(key) }

// ApplyAll runs units in one transaction, in order: for each, claim its
// key and run its Fn, adding the events it returns to ob; then commit once
// and wake the relay. One commit for many units is what makes a batch of
// fetched messages cheap: a commit costs far more than the statements
// before it. applied[i] is false for a unit whose claim was held already
// (a duplicate: its Fn did not run), also when an earlier unit of the same
// batch took it.
//
// If any unit fails, nothing is committed and the error is returned; when
// there were several units it is a *UnitError naming the one that failed,
// so that the caller can apply the others again without it and that one
// alone: one bad unit cannot hold its neighbours back. ApplyAll itself
// never retries; an error wrapping ErrRetry means a rerun may succeed.
func ApplyAll(ctx context.Context, ob *outbox.Outbox, units []Unit) (applied []bool, err error) {
	db := ob.DB()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("inbox: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	applied = make([]bool, len(units))
	added := false
	for i, u := range units {
		uctx := ctx
		if u.Values != nil {
			uctx = valuesOf{Context: ctx, values: u.Values}
		}
		if u.Key.EventID != "" {
			first, err := ClaimKey(uctx, tx, db, u.Key)
			if err != nil {
				return nil, unitErr(len(units), i, err)
			}
			if !first {
				continue
			}
		}
		applied[i] = true
		if u.Fn == nil {
			continue
		}
		out, err := u.Fn(uctx, tx)
		if err != nil {
			return nil, unitErr(len(units), i, err)
		}
		if err := ob.Add(uctx, tx, out...); err != nil {
			return nil, unitErr(len(units), i, err)
		}
		added = added || len(out) > 0
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("inbox: commit: %w", err)
	}
	committed = true
	if added {
		ob.Notify()
	}
	return applied, nil
}

// UnitError is ApplyAll's error when one unit of a batch of several
// failed: it says which, so that a caller can apply the others together
// again and give the one that failed a transaction of its own.
type UnitError struct {
	Index int // the failing unit's position in the batch
	Units int // the batch's length
	Err   error
}

func (e *UnitError) Error() string {
	return fmt.Sprintf("inbox: unit %d of %d: %v", e.Index+1, e.Units, e.Err)
}

func (e *UnitError) Unwrap() error { return e.Err }

// unitErr names the failing unit of a batch; a batch of one is the unit.
func unitErr(n, i int, err error) error {
	if n == 1 {
		return err
	}
	return &UnitError{Index: i, Units: n, Err: err}
}

// Aggregate tells Apply how one store reads and writes one kind of row:
// the store's own SQL behind the skeleton every store shares.
type Aggregate[T any] struct {
	// Load returns the row with the given id inside tx, locked against
	// concurrent units of work until tx ends (FOR UPDATE on PostgreSQL;
	// SQLite transactions exclude each other), or nil and no error when
	// there is none.
	Load func(ctx context.Context, tx *sql.Tx, id string) (*T, error)
	// Insert writes a new row. When another transaction created the same
	// row first, it returns an error wrapping ErrRetry.
	Insert func(ctx context.Context, tx *sql.Tx, v *T) error
	// Update writes an existing row.
	Update func(ctx context.Context, tx *sql.Tx, v *T) error
}

// Apply is the load-lock-apply-save skeleton: it loads the row id locked
// (nil when absent), lets fn decide, and saves what fn returns (nil: no
// change), returning fn's events. Any error leaves the transaction for
// the caller to roll back.
func (a Aggregate[T]) Apply(ctx context.Context, tx *sql.Tx, id string, fn func(cur *T) (next *T, out []events.Outgoing, err error)) ([]events.Outgoing, error) {
	cur, err := a.Load(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	next, out, err := fn(cur)
	if err != nil || next == nil {
		return out, err
	}
	if cur == nil {
		return out, a.Insert(ctx, tx, next)
	}
	return out, a.Update(ctx, tx, next)
}

// Prune forgets the claims taken before before, oldest first, in
// transactions of at most batch rows (default 1000), so that it never
// holds up the units of work writing new claims for long. It returns how
// many claims it deleted; on error (or when ctx ends) the rest wait for
// the next call.
//
// A claim must be kept for as long as its message can come again — the
// stream's duplicate window, the longest redelivery, and the time a dead
// letter may wait to be retried — or that copy is applied a second time.
func Prune(ctx context.Context, db *sqldb.DB, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 1000
	}
	total := 0
	for {
		res, err := db.In(nil).Exec(ctx, `DELETE FROM inbox WHERE (consumer, event_id) IN
			(SELECT consumer, event_id FROM inbox WHERE claimed_unix_ms < ? ORDER BY claimed_unix_ms LIMIT ?)`,
			before.UnixMilli(), batch)
		if err != nil {
			return total, fmt.Errorf("inbox: prune claims before %s: %w", before.UTC().Format(time.RFC3339), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		total += int(n)
		if n < int64(batch) {
			return total, nil
		}
	}
}

// Oldest returns when the oldest claim was taken, or the zero time when
// there is none.
func Oldest(ctx context.Context, db *sqldb.DB) (time.Time, error) {
	var oldest sql.NullInt64
	if err := db.In(nil).QueryRow(ctx, `SELECT MIN(claimed_unix_ms) FROM inbox`).Scan(&oldest); err != nil {
		return time.Time{}, fmt.Errorf("inbox: oldest claim: %w", err)
	}
	if !oldest.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(oldest.Int64), nil
}
