package orderdb_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// TestStore is the store's conformance suite, run unchanged on every
// engine.
func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			open := func(t *testing.T) (*orderdb.Store, *sqldb.DB) { return openStore(t, b) }
			t.Run("ApplyCommitsOrderInboxAndOutboxTogether", func(t *testing.T) { testApplyCommitsTogether(t, open) })
			t.Run("ApplyRoundTripsEveryField", func(t *testing.T) { testRoundTrip(t, open) })
			t.Run("ApplyWithoutInboxKeyAlwaysRuns", func(t *testing.T) { testNoInboxKey(t, open) })
			t.Run("ApplyNilOrderQueuesEventsOnly", func(t *testing.T) { testNilOrder(t, open) })
			t.Run("HandlerErrorRollsBack", func(t *testing.T) { testHandlerErrorRollsBack(t, open) })
			t.Run("HandlerErrorOnCreateLeavesNoOrder", func(t *testing.T) { testHandlerErrorOnCreate(t, open) })
			t.Run("ConcurrentAppliesSerialise", func(t *testing.T) { testConcurrentApplies(t, open) })
			t.Run("ConcurrentCreatesOfSameOrder", func(t *testing.T) { testConcurrentCreates(t, open) })
			t.Run("GetUnknownIsNotFound", func(t *testing.T) { testGetUnknown(t, open) })
			t.Run("Counts", func(t *testing.T) { testCounts(t, open) })
			t.Run("MigrateIsRepeatable", func(t *testing.T) { testMigrateTwice(t, b) })
			t.Run("ListPagesNewestFirst", func(t *testing.T) { testListPagesNewestFirst(t, open) })
			t.Run("ListFilters", func(t *testing.T) { testListFilters(t, open) })
			t.Run("ListCursorBoundToFilters", func(t *testing.T) { testListCursorBoundToFilters(t, open) })
			t.Run("ListRefusesBadQueries", func(t *testing.T) { testListRefusesBadQueries(t, open) })
			t.Run("ListDefaultLimit", func(t *testing.T) { testListDefaultLimit(t, open) })
			t.Run("ListUsesIndex", func(t *testing.T) { testListUsesIndex(t, open) })
		})
	}
}

type opener func(t *testing.T) (*orderdb.Store, *sqldb.DB)

// openStore returns a store on a fresh, migrated, empty database.
func openStore(t *testing.T, b sqltest.Backend) (*orderdb.Store, *sqldb.DB) {
	t.Helper()
	db := b.Open(t)
	if err := orderdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return orderdb.New(db), db
}

func key(id string) inbox.Key { return inbox.Key{Consumer: catalog.Orders, EventID: id} }

func placeCmd(orderID string) catalog.PlaceOrder {
	return catalog.PlaceOrder{
		OrderID:    orderID,
		CustomerID: "cust-1",
		Currency:   "EUR",
		Items: []catalog.LineItem{
			{SKU: "SKU-1", Quantity: 2, UnitPrice: 1299},
			{SKU: "SKU-2", Quantity: 1, UnitPrice: 500},
		},
	}
}

// create places orderID through Apply under inbox key "place-<id>".
func create(t *testing.T, s *orderdb.Store, orderID string) *orders.Order {
	t.Helper()
	var placed *orders.Order
	applied, err := s.Apply(context.Background(), key("place-"+orderID), orderID, func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		if o != nil {
			return nil, nil, fmt.Errorf("order %s exists before it was placed", orderID)
		}
		n, out, err := orders.Place(placeCmd(orderID), t0)
		placed = n
		return n, out, err
	})
	if err != nil || !applied {
		t.Fatalf("place %s: applied=%v err=%v, want true nil", orderID, applied, err)
	}
	return placed
}

func get(t *testing.T, s *orderdb.Store, orderID string) *orders.Order {
	t.Helper()
	o, err := s.Get(context.Background(), orderID)
	if err != nil {
		t.Fatalf("Get(%s): %v", orderID, err)
	}
	return o
}

func backlog(t *testing.T, s *orderdb.Store) int {
	t.Helper()
	n, _, err := s.Outbox().Backlog(context.Background())
	if err != nil {
		t.Fatalf("Backlog: %v", err)
	}
	return n
}

// outboxSubjects lists the subjects waiting in the outbox, oldest first.
func outboxSubjects(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT subject FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("query outbox: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("scan outbox: %v", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("outbox rows: %v", err)
	}
	return out
}

func testApplyCommitsTogether(t *testing.T, open opener) {
	ctx := context.Background()
	s, db := open(t)
	placed := create(t, s, "order-1")

	got := get(t, s, "order-1")
	if !reflect.DeepEqual(got, placed) {
		t.Errorf("stored order:\n got %+v\nwant %+v", got, placed)
	}
	if subjects := outboxSubjects(t, db); !reflect.DeepEqual(subjects, []string{"orders.placed.order-1"}) {
		t.Errorf("outbox: got %v, want [orders.placed.order-1]", subjects)
	}

	// The same inbox key again: fn is not called and nothing changes.
	called := false
	applied, err := s.Apply(ctx, key("place-order-1"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		called = true
		out := o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1"}, t0)
		return o, out, nil
	})
	if err != nil || applied {
		t.Fatalf("duplicate Apply: applied=%v err=%v, want false nil", applied, err)
	}
	if called {
		t.Error("duplicate Apply called fn; a claimed key must not run the work again")
	}
	if n := backlog(t, s); n != 1 {
		t.Errorf("outbox after duplicate: %d rows, want 1", n)
	}
	if o := get(t, s, "order-1"); o.Status != orders.Pending {
		t.Errorf("status after duplicate: got %q, want PENDING", o.Status)
	}

	// A new key on the same order applies, and its events join the outbox.
	applied, err = s.Apply(ctx, key("capture-1"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		return o, o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1"}, t0.Add(time.Minute)), nil
	})
	if err != nil || !applied {
		t.Fatalf("capture Apply: applied=%v err=%v, want true nil", applied, err)
	}
	if subjects := outboxSubjects(t, db); !reflect.DeepEqual(subjects, []string{"orders.placed.order-1", "orders.confirmed.order-1"}) {
		t.Errorf("outbox: got %v, want placed then confirmed", subjects)
	}
	if o := get(t, s, "order-1"); o.Status != orders.Confirmed || o.PaymentID != "pay-1" {
		t.Errorf("after capture: status=%q payment=%q, want CONFIRMED pay-1", o.Status, o.PaymentID)
	}
}

func testRoundTrip(t *testing.T, open opener) {
	s, _ := open(t)
	create(t, s, "order-1")
	updated := t0.Add(90*time.Second + 123*time.Millisecond)
	var want orders.Order
	_, err := s.Apply(context.Background(), key("fail-1"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		o.OnStockReserved(catalog.StockReserved{OrderID: o.ID}, t0)
		out := o.OnStockReservationFailed(catalog.StockReservationFailed{OrderID: o.ID}, updated)
		o.PaymentID = "pay-x"
		want = *o
		return o, out, nil
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got := get(t, s, "order-1")
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("stored order:\n got %+v\nwant %+v", *got, want)
	}
	if got.Reason != catalog.ReasonOutOfStock || !got.StockReserved || !got.UpdatedAt.Equal(updated) {
		t.Errorf("reason=%q stock_reserved=%v updated=%v, want out_of_stock true %v", got.Reason, got.StockReserved, got.UpdatedAt, updated)
	}
}

func testNoInboxKey(t *testing.T, open opener) {
	s, _ := open(t)
	create(t, s, "order-1")
	calls := 0
	for range 2 {
		applied, err := s.Apply(context.Background(), inbox.Key{}, "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
			calls++
			return nil, nil, nil
		})
		if err != nil || !applied {
			t.Fatalf("Apply without key: applied=%v err=%v, want true nil", applied, err)
		}
	}
	if calls != 2 {
		t.Errorf("fn calls: got %d, want 2 (an empty key skips the inbox)", calls)
	}
}

func testNilOrder(t *testing.T, open opener) {
	s, db := open(t)
	before := create(t, s, "order-1")
	extra := events.Outgoing{
		ID: "extra-1", Subject: "orders.placed.order-1", Type: catalog.TypeOrderPlaced,
		Source: catalog.Source(catalog.Orders), Time: t0, Data: map[string]string{"order_id": "order-1"},
	}
	_, err := s.Apply(context.Background(), key("k"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		o.Status = orders.Cancelled // returning nil means: do not save this
		return nil, []events.Outgoing{extra}, nil
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := get(t, s, "order-1"); !reflect.DeepEqual(got, before) {
		t.Errorf("a nil order from fn changed the stored order: got %+v, want %+v", got, before)
	}
	if n := len(outboxSubjects(t, db)); n != 2 {
		t.Errorf("outbox: %d rows, want 2 (fn's events are queued even without a state change)", n)
	}
}

func testHandlerErrorRollsBack(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	before := create(t, s, "order-1")
	errBoom := events.Permanent(errors.New("boom"))

	applied, err := s.Apply(ctx, key("capture-1"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		out := o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1"}, t0.Add(time.Minute))
		return o, out, errBoom
	})
	if applied || !errors.Is(err, errBoom) {
		t.Fatalf("failing Apply: applied=%v err=%v, want false and the handler's error", applied, err)
	}
	if events.KindOf(err) != events.KindPermanent {
		t.Errorf("failing Apply: kind %v, want the handler's kind (permanent) kept through wrapping", events.KindOf(err))
	}
	if got := get(t, s, "order-1"); !reflect.DeepEqual(got, before) {
		t.Errorf("order changed by a failed Apply:\n got %+v\nwant %+v", got, before)
	}
	if n := backlog(t, s); n != 1 {
		t.Errorf("outbox after failed Apply: %d rows, want 1 (only orders.placed)", n)
	}

	// The claim rolled back too, so a redelivery with the same key applies.
	applied, err = s.Apply(ctx, key("capture-1"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		return o, o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1"}, t0.Add(time.Minute)), nil
	})
	if err != nil || !applied {
		t.Fatalf("retry: applied=%v err=%v, want true nil (the failed attempt must not claim the key)", applied, err)
	}
	if got := get(t, s, "order-1"); got.Status != orders.Confirmed {
		t.Errorf("after retry: status %q, want CONFIRMED", got.Status)
	}
	if n := backlog(t, s); n != 2 {
		t.Errorf("outbox after retry: %d rows, want 2", n)
	}
}

func testHandlerErrorOnCreate(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	errBoom := errors.New("boom")
	_, err := s.Apply(ctx, key("place-1"), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
		n, out, _ := orders.Place(placeCmd("order-1"), t0)
		return n, out, errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Apply: got %v, want the handler's error", err)
	}
	if _, err := s.Get(ctx, "order-1"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Get after failed create: got %v, want ErrNotFound", err)
	}
	if n := backlog(t, s); n != 0 {
		t.Errorf("outbox: %d rows, want 0", n)
	}
}

// testConcurrentApplies runs a read-modify-write of the same order from
// many goroutines: each increments a counter kept in PaymentID. Any lost
// update (two transactions reading the same value) leaves the counter
// short.
func testConcurrentApplies(t *testing.T, open opener) {
	const workers = 20
	s, db := open(t)
	create(t, s, "order-1")
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Go(func() {
			_, err := s.Apply(ctx, key(fmt.Sprintf("incr-%d", i)), "order-1", func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
				if o == nil {
					return nil, nil, errors.New("order vanished")
				}
				n := 0
				if o.PaymentID != "" {
					var err error
					if n, err = strconv.Atoi(o.PaymentID); err != nil {
						return nil, nil, err
					}
				}
				o.PaymentID = strconv.Itoa(n + 1)
				o.UpdatedAt = t0.Add(time.Duration(n+1) * time.Second)
				// One event per increment, its id the value written: a lost
				// update would also show as two attempts writing one id.
				return o, []events.Outgoing{{
					ID: "incr-" + o.PaymentID, Subject: "orders.test.order-1", Type: "choreo.orders.test.v1",
					Source: catalog.Source(catalog.Orders), Time: t0, Data: map[string]int{"n": n + 1},
				}}, nil
			})
			if err != nil {
				errs <- fmt.Errorf("worker %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := get(t, s, "order-1")
	if got.PaymentID != strconv.Itoa(workers) {
		t.Errorf("counter: got %q, want %q (read-modify-write was not serialised)", got.PaymentID, strconv.Itoa(workers))
	}
	if want := t0.Add(workers * time.Second); !got.UpdatedAt.Equal(want) {
		t.Errorf("updated_at: got %v, want %v", got.UpdatedAt, want)
	}
	if n := len(outboxSubjects(t, db)); n != workers+1 {
		t.Errorf("outbox: %d rows, want %d (placed + one per increment)", n, workers+1)
	}
}

// testConcurrentCreates places one order from many goroutines at once, as
// replicas receiving the same command, or an HTTP client retrying, would.
func testConcurrentCreates(t *testing.T, open opener) {
	const workers = 10
	for _, tc := range []struct {
		name string
		key  func(i int) inbox.Key
	}{
		{"WithoutInboxKey", func(int) inbox.Key { return inbox.Key{} }},            // HTTP: the order id is the key
		{"DistinctInboxKeys", func(i int) inbox.Key { return key(fmt.Sprint(i)) }}, // different command ids
		{"SameInboxKey", func(int) inbox.Key { return key("cmd-1") }},              // one command, delivered twice
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, db := open(t)
			svc, err := orders.New(orders.Config{Store: s, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			type result struct {
				order   *orders.Order
				created bool
				err     error
			}
			results := make([]result, workers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range workers {
				wg.Go(func() {
					<-start
					o, created, err := svc.Place(ctx, tc.key(i), placeCmd("order-1"))
					results[i] = result{o, created, err}
				})
			}
			close(start)
			wg.Wait()

			created := 0
			for i, r := range results {
				if r.err != nil {
					t.Errorf("place %d: %v", i, r.err)
					continue
				}
				if r.order == nil || r.order.ID != "order-1" || r.order.Status != orders.Pending {
					t.Errorf("place %d: got order %+v, want order-1 PENDING", i, r.order)
				}
				if r.created {
					created++
				}
			}
			if created != 1 {
				t.Errorf("created: %d callers were told they created the order, want exactly 1", created)
			}
			if subjects := outboxSubjects(t, db); !reflect.DeepEqual(subjects, []string{"orders.placed.order-1"}) {
				t.Errorf("outbox: got %v, want one orders.placed.order-1", subjects)
			}
			counts, err := s.Counts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[orders.Status]int{orders.Pending: 1}; !maps.Equal(counts, want) {
				t.Errorf("counts: got %v, want %v", counts, want)
			}
		})
	}
}

func testGetUnknown(t *testing.T, open opener) {
	s, _ := open(t)
	o, err := s.Get(context.Background(), "no-such-order")
	if o != nil {
		t.Errorf("Get: got order %+v, want nil", o)
	}
	if !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Get: got %v, want an error matching orders.ErrNotFound", err)
	}
	if k := events.KindOf(err); k != events.KindNotFound {
		t.Errorf("Get: kind %v, want %v", k, events.KindNotFound)
	}
}

func testCounts(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts on empty store: %v", err)
	}
	if len(counts) != 0 {
		t.Errorf("Counts on empty store: got %v, want empty", counts)
	}
	for _, id := range []string{"p-1", "p-2", "c-1", "x-1", "x-2", "x-3"} {
		create(t, s, id)
	}
	transition := func(id string, f func(o *orders.Order) []events.Outgoing) {
		t.Helper()
		if _, err := s.Apply(ctx, key("t-"+id), id, func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
			return o, f(o), nil
		}); err != nil {
			t.Fatalf("transition %s: %v", id, err)
		}
	}
	transition("c-1", func(o *orders.Order) []events.Outgoing {
		return o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: o.ID, PaymentID: "pay"}, t0)
	})
	for _, id := range []string{"x-1", "x-2", "x-3"} {
		transition(id, func(o *orders.Order) []events.Outgoing {
			return o.OnStockReservationFailed(catalog.StockReservationFailed{OrderID: o.ID}, t0)
		})
	}
	counts, err = s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	want := map[orders.Status]int{orders.Pending: 2, orders.Confirmed: 1, orders.Cancelled: 3}
	if !maps.Equal(counts, want) {
		t.Errorf("Counts: got %v, want %v", counts, want)
	}
}

func testMigrateTwice(t *testing.T, b sqltest.Backend) {
	s, db := openStore(t, b)
	create(t, s, "order-1")
	if err := orderdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if got := get(t, orderdb.New(db), "order-1"); got.ID != "order-1" {
		t.Errorf("after second Migrate: got %+v", got)
	}
}
