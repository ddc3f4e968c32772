package aggregate_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// counter is the smallest aggregate: an id and a value.
type counter struct {
	ID    string
	Value int
}

func newStore(t *testing.T, b sqltest.Backend) (*aggregate.Store[counter], *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	db := b.Open(t)
	for _, migrate := range []func(context.Context, *sqldb.DB) error{outbox.Migrate, inbox.Migrate} {
		if err := migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE counters (id TEXT PRIMARY KEY, value BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	rows := inbox.Aggregate[counter]{
		Load: func(ctx context.Context, tx *sql.Tx, id string) (*counter, error) {
			c := counter{ID: id}
			err := db.In(tx).QueryRow(ctx, `SELECT value FROM counters WHERE id = ?`+db.Dialect.ForUpdate(), id).Scan(&c.Value)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, nil
			}
			return &c, err
		},
		Insert: func(ctx context.Context, tx *sql.Tx, c *counter) error {
			_, err := db.In(tx).Exec(ctx, `INSERT INTO counters (id, value) VALUES (?, ?)`, c.ID, c.Value)
			return err
		},
		Update: func(ctx context.Context, tx *sql.Tx, c *counter) error {
			_, err := db.In(tx).Exec(ctx, `UPDATE counters SET value = ? WHERE id = ?`, c.Value, c.ID)
			return err
		},
	}
	return aggregate.New(db, "counter", rows, func(c *counter) string { return c.ID }), db
}

func increment(cur *counter) (*counter, []events.Outgoing, error) {
	if cur == nil {
		return &counter{ID: "c1", Value: 1}, nil, nil
	}
	next := *cur
	next.Value++
	return &next, nil, nil
}

// A transition creates, then changes, its aggregate; a message claimed
// before changes nothing; a transition that returns another aggregate than
// the one asked for is refused and rolls back.
func TestStoreAppliesTransitions(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s, db := newStore(t, b)
			for i, key := range []string{"m1", "m2", "m2"} {
				applied, err := s.Apply(ctx, inbox.Key{Consumer: "test", EventID: key}, "c1", increment)
				if err != nil {
					t.Fatalf("apply %s: %v", key, err)
				}
				if want := i < 2; applied != want {
					t.Errorf("apply %s (#%d): applied %v, want %v", key, i+1, applied, want)
				}
			}
			_, err := s.Apply(ctx, inbox.Key{}, "c1", func(cur *counter) (*counter, []events.Outgoing, error) {
				return &counter{ID: "c2", Value: 99}, nil, nil
			})
			if err == nil || !strings.Contains(err.Error(), "counter c2 returned for counter c1") {
				t.Errorf("a transition returning another aggregate: err %v, want it refused", err)
			}
			var value int
			if err := db.QueryRowContext(ctx, `SELECT value FROM counters WHERE id = 'c1'`).Scan(&value); err != nil {
				t.Fatal(err)
			}
			if value != 2 {
				t.Errorf("counter c1 = %d, want 2", value)
			}
			if w := s.Work(inbox.Key{Consumer: "test", EventID: "m3"}, "c1", increment); w.Key.EventID != "m3" || w.Apply == nil {
				t.Errorf("Work: %+v, want the claim and an Apply", w)
			}
		})
	}
}
