package notificationdb_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/notifications"
	"github.com/choreo-dev/choreo/notifications/notificationdb"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("ApplyCommitsStateAndOutboxTogether", func(t *testing.T) { testApplyAtomic(t, b) })
			t.Run("DuplicateInboxIsNoop", func(t *testing.T) { testDuplicate(t, b) })
			t.Run("RollbackOnHandlerError", func(t *testing.T) { testRollback(t, b) })
			t.Run("ConcurrentApplySameNotification", func(t *testing.T) { testConcurrent(t, b) })
			t.Run("OnePerOrderAndStatus", func(t *testing.T) { testUnique(t, b) })
			t.Run("ListAndCounts", func(t *testing.T) { testListAndCounts(t, b) })
			t.Run("MigrateTwice", func(t *testing.T) { testMigrateTwice(t, b) })
		})
	}
}

func open(t *testing.T, b sqltest.Backend) (*notificationdb.Store, *sqldb.DB) {
	t.Helper()
	db := b.Open(t)
	if err := notificationdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return notificationdb.New(db), db
}

func key(id string) inbox.Key { return inbox.Key{Consumer: catalog.Notifications, EventID: id} }

func count(t *testing.T, db *sqldb.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func confirmed(orderID string) *notifications.Notification {
	return notifications.ForConfirmed(catalog.OrderConfirmed{
		OrderID: orderID, CustomerID: "cust-1", Total: catalog.Money{Amount: 1200, Currency: "EUR"},
		Items: []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 600}},
	}, t0)
}

// create returns an Apply function that records n when absent.
func create(n *notifications.Notification) func(*notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
	return func(cur *notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
		if cur != nil {
			return nil, nil, nil
		}
		return n, nil, nil
	}
}

func testApplyAtomic(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	n := confirmed("order-1")
	if applied, err := s.Apply(ctx, key("e-1"), n.ID, create(n)); err != nil || !applied {
		t.Fatalf("create: got %v %v, want true nil", applied, err)
	}
	list, err := s.List(ctx, "order-1")
	if err != nil || len(list) != 1 {
		t.Fatalf("List: got %d, %v; want 1", len(list), err)
	}
	if got := list[0]; fmt.Sprint(*got) != fmt.Sprint(*n) {
		t.Errorf("round trip: got %+v, want %+v", *got, *n)
	}

	// Marking it sent commits the state and notifications.sent together.
	var want *notifications.Notification
	applied, err := s.Apply(ctx, inbox.Key{}, n.ID, func(cur *notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
		out, err := cur.MarkSent(notifications.SendResult{Channel: "log"}, t0.Add(time.Second))
		want = cur
		return cur, out, err
	})
	if err != nil || !applied {
		t.Fatalf("mark sent: got %v %v, want true nil", applied, err)
	}
	list, err = s.List(ctx, "order-1")
	if err != nil || len(list) != 1 {
		t.Fatalf("List: got %d, %v; want 1", len(list), err)
	}
	if got := list[0]; fmt.Sprint(*got) != fmt.Sprint(*want) {
		t.Errorf("after mark sent: got %+v, want %+v", *got, *want)
	}
	if n := count(t, db, "outbox"); n != 1 {
		t.Errorf("outbox: got %d rows, want 1", n)
	}
}

func testDuplicate(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	n := confirmed("order-1")
	calls := 0
	fn := func(cur *notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
		calls++
		return n, []events.Outgoing{{ID: "out-1", Subject: "notifications.test.order-1", Type: "t", Source: "s", Data: 1}}, nil
	}
	if applied, err := s.Apply(ctx, key("e-1"), n.ID, fn); err != nil || !applied {
		t.Fatalf("first: got %v %v, want true nil", applied, err)
	}
	applied, err := s.Apply(ctx, key("e-1"), n.ID, fn)
	if err != nil || applied || calls != 1 {
		t.Errorf("duplicate: got applied %v err %v after %d calls, want false nil after 1", applied, err, calls)
	}
	if n := count(t, db, "outbox"); n != 1 {
		t.Errorf("outbox: got %d rows, want 1", n)
	}
}

func testRollback(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	n := confirmed("order-1")
	boom := errors.New("boom")
	_, err := s.Apply(ctx, key("e-1"), n.ID, func(*notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
		return n, []events.Outgoing{{ID: "out-1", Subject: "notifications.test.order-1", Type: "t", Source: "s", Data: 1}}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Apply: got %v, want it to wrap boom", err)
	}
	if c, o, i := count(t, db, "notifications"), count(t, db, "outbox"), count(t, db, "inbox"); c+o+i != 0 {
		t.Errorf("after rollback: got %d notifications, %d outbox rows, %d claims; want none", c, o, i)
	}
	if applied, err := s.Apply(ctx, key("e-1"), n.ID, create(n)); err != nil || !applied {
		t.Errorf("redelivery after rollback: got %v %v, want true nil", applied, err)
	}
}

// testConcurrent records the same notification from many transactions at
// once (one event delivered to several replicas under different inbox
// keys), then marks it sent from many at once: one row, one event.
func testConcurrent(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	n := confirmed("order-1")
	const workers = 12
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for i := range workers {
		wg.Go(func() {
			if _, err := s.Apply(ctx, key(fmt.Sprintf("e-%d", i)), n.ID, create(confirmed("order-1"))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	for range workers {
		wg.Go(func() {
			_, err := s.Apply(ctx, inbox.Key{}, n.ID, func(cur *notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
				out, err := cur.MarkSent(notifications.SendResult{Channel: "log"}, t0)
				if len(out) == 0 {
					return nil, nil, err
				}
				return cur, out, err
			})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c, o := count(t, db, "notifications"), count(t, db, "outbox"); c != 1 || o != 1 {
		t.Errorf("got %d notifications and %d outbox rows, want 1 and 1", c, o)
	}
	if c := count(t, db, "inbox"); c != workers {
		t.Errorf("inbox: got %d claims, want %d", c, workers)
	}
}

func testUnique(t *testing.T, b sqltest.Backend) {
	s, _ := open(t, b)
	ctx := context.Background()
	n := confirmed("order-1")
	if _, err := s.Apply(ctx, key("e-1"), n.ID, create(n)); err != nil {
		t.Fatal(err)
	}
	// A second row for the same order and status under another id is
	// refused by the table, not only by the service.
	imposter := confirmed("order-1")
	imposter.ID = "other-id"
	_, err := s.Apply(ctx, key("e-2"), imposter.ID, create(imposter))
	if events.KindOf(err) != events.KindConflict {
		t.Errorf("second notification for the same order and status: got %v, want a conflict", err)
	}
	if list, _ := s.List(ctx, "order-1"); len(list) != 1 {
		t.Errorf("List: got %d notifications, want 1", len(list))
	}
}

func testListAndCounts(t *testing.T, b sqltest.Backend) {
	s, _ := open(t, b)
	ctx := context.Background()
	if list, err := s.List(ctx, "nope"); err != nil || len(list) != 0 {
		t.Errorf("List of an unknown order: got %d, %v; want none, nil", len(list), err)
	}
	for _, id := range []string{"order-1", "order-2", "order-3"} {
		n := confirmed(id)
		if _, err := s.Apply(ctx, key(id), n.ID, create(n)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Apply(ctx, inbox.Key{}, confirmed("order-2").ID, func(cur *notifications.Notification) (*notifications.Notification, []events.Outgoing, error) {
		out, err := cur.MarkSent(notifications.SendResult{Channel: "log"}, t0)
		return cur, out, err
	})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[notifications.State]int{notifications.Pending: 2, notifications.Sent: 1}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("Counts: got %v, want %v", counts, want)
	}
}

func testMigrateTwice(t *testing.T, b sqltest.Backend) {
	_, db := open(t, b)
	if err := notificationdb.Migrate(context.Background(), db); err != nil {
		t.Errorf("second Migrate: got %v, want nil", err)
	}
}
