package outbox

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// A drain that has published all it found goes on with rows committed
// while its acks are on their way, but only on SQLite, only while some are
// unsettled, and only for the delete delay; when the acks come first, it
// ends.
func TestDrainGoesOnWithRowsCommittedWhileAcksArePending(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			ob := New(db)
			r := &Relay{ob: ob, deleteDelay: time.Hour}
			ctx := context.Background()
			now := time.Now()
			var unsettled atomic.Int64
			idle := make(chan struct{}, 1)

			if r.moreWhileUnsettled(ctx, &unsettled, idle, now) {
				t.Error("nothing unsettled: want the drain to end")
			}
			unsettled.Store(1)
			ob.Notify()
			want := db.Dialect.Engine == sqldb.SQLite
			if got := r.moreWhileUnsettled(ctx, &unsettled, idle, now); got != want {
				t.Errorf("rows committed while a batch is unsettled, on %s: go on = %v, want %v", db.Dialect.Engine, got, want)
			}
			if !want {
				return
			}
			idle <- struct{}{}
			if r.moreWhileUnsettled(ctx, &unsettled, idle, now) {
				t.Error("the acks came before any new row: want the drain to end")
			}
			ob.Notify()
			if r.moreWhileUnsettled(ctx, &unsettled, idle, now.Add(-2*time.Hour)) {
				t.Error("draining for longer than the delete delay: want the drain to end, so that the acked rows are deleted")
			}
		})
	}
}
