// Package aggregate is the skeleton every service store shares: one kind
// of aggregate (an order, a payment), each identified by an id, changed
// only by transitions, each in one database transaction together with the
// inbox claim of the message that asked for it and the outbox rows of the
// events it publishes. A store keeps its own SQL (how a row is read
// locked, inserted and updated: inbox.Aggregate) and gets the rest here.
//
//	s := aggregate.New(db, "order", inbox.Aggregate[Order]{Load: ..., Insert: ..., Update: ...},
//		func(o *Order) string { return o.ID })
//	applied, err := s.Apply(ctx, key, orderID, func(cur *Order) (*Order, []events.Outgoing, error) { ... })
//	work := s.Work(key, orderID, fn) // the same, for the consumer to batch
package aggregate

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
)

// Transition is a unit of work on one aggregate: it gets the aggregate as
// stored (nil when there is none), and returns the aggregate to save (nil:
// no change) and the events the change publishes. It may run more than
// once (a batch applied again message by message, a lost race to create
// the row), so it must not keep state from an earlier run.
type Transition[T any] = func(cur *T) (next *T, out []events.Outgoing, err error)

// Changer is what a service needs of its store to change its aggregates;
// a service's Store interface embeds it. *Store implements it.
type Changer[T any] interface {
	// Apply runs fn on the aggregate id in one transaction: it claims key
	// in the inbox (a duplicate returns applied=false and changes
	// nothing), loads the aggregate locked against concurrent changes,
	// calls fn, saves what fn returns and adds fn's events to the outbox.
	// Any error rolls all of it back.
	Apply(ctx context.Context, key inbox.Key, id string, fn Transition[T]) (applied bool, err error)
	// Work is the same unit of work for the consumer to carry out,
	// batched with the work of other messages in one transaction.
	Work(key inbox.Key, id string, fn Transition[T]) consumer.Work
	// Outbox returns the outbox in the store's database.
	Outbox() *outbox.Outbox
}

// Store changes aggregates of type T in one database.
type Store[T any] struct {
	name string
	ob   *outbox.Outbox
	rows inbox.Aggregate[T]
	id   func(*T) string
}

var _ Changer[struct{}] = (*Store[struct{}])(nil)

// New returns the store of the aggregates rows reads and writes in db
// (migrated, with the outbox and inbox tables). name names the aggregate
// in errors ("order"); id returns an aggregate's id, so that a transition
// that returns another aggregate than the one it was given is refused.
func New[T any](db *sqldb.DB, name string, rows inbox.Aggregate[T], id func(*T) string) *Store[T] {
	return &Store[T]{name: name, ob: outbox.New(db), rows: rows, id: id}
}

// Outbox returns the outbox of the store's database, for the relay.
func (s *Store[T]) Outbox() *outbox.Outbox { return s.ob }

// Apply implements Changer.
func (s *Store[T]) Apply(ctx context.Context, key inbox.Key, id string, fn Transition[T]) (bool, error) {
	return inbox.Apply(ctx, s.ob, key, s.Fn(id, fn))
}

// Work implements Changer.
func (s *Store[T]) Work(key inbox.Key, id string, fn Transition[T]) consumer.Work {
	return consumer.Work{Key: key, Apply: s.Fn(id, fn)}
}

// Fn is fn as a unit of work inside a transaction the caller owns.
func (s *Store[T]) Fn(id string, fn Transition[T]) inbox.Fn {
	return func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		out, err := s.rows.Apply(ctx, tx, id, func(cur *T) (*T, []events.Outgoing, error) {
			next, out, err := fn(cur)
			if err == nil && next != nil && s.id(next) != id {
				return nil, nil, fmt.Errorf("%s %s returned for %s %s", s.name, s.id(next), s.name, id)
			}
			return next, out, err
		})
		if err != nil {
			return nil, fmt.Errorf("apply to %s %s: %w", s.name, id, err)
		}
		return out, nil
	}
}
