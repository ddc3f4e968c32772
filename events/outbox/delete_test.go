package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// delete removes exactly the rows it is given. It deletes a gap-free run of
// ids as a range; a row in a gap — on PostgreSQL, one whose transaction
// took its id early and committed after the relay loaded its neighbours —
// must survive, or its event would be lost unpublished.
func TestDeleteRemovesExactlyTheGivenRows(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t)
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			ob := New(db)
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				for i := range 6 {
					e := events.Outgoing{ID: fmt.Sprint("e", i), Subject: "test.x." + fmt.Sprint(i), Type: "t", Source: "s", Data: i}
					if err := ob.Add(ctx, tx, e); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			rows, _, _, err := (&Relay{ob: ob, batch: 10}).load(ctx, 0)
			if err != nil || len(rows) != 6 {
				t.Fatalf("load: %d rows, %v", len(rows), err)
			}
			id := func(i int) int64 { return rows[i].id }
			r := &Relay{ob: ob}
			for _, del := range [][]int64{
				{id(0), id(1), id(2)}, // a run without a gap: a range
				{id(3), id(5)},        // a gap at id(4): a list
			} {
				if err := r.delete(ctx, del); err != nil {
					t.Fatal(err)
				}
			}
			left, err := ob.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range left {
				ids = append(ids, m.EventID)
			}
			if !slices.Equal(ids, []string{"e4"}) {
				t.Errorf("left after delete: %v, want only the row in the gap [e4]", ids)
			}
		})
	}
}
