package stockdb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/inventory"
	"github.com/choreo-dev/choreo/inventory/stockdb"
)

// TestStore runs the store's conformance suite on every engine.
func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			tests := []struct {
				name string
				run  func(t *testing.T, b sqltest.Backend)
			}{
				{"ApplyCommitsStateInboxAndOutboxTogether", testApplyAtomic},
				{"DuplicateInboxIsNoop", testDuplicate},
				{"RollbackOnHandlerError", testRollback},
				{"CheckRefusesNegativeStock", testCheckConstraint},
				{"GetUnknownSKUIsZero", testGetUnknown},
				{"ApplyOrderLocksReservationSKUs", testLocksReservationSKUs},
				{"ApplyOrderRefusesUnlockedStock", testUnlockedStock},
				{"ConcurrentReservationsNeverOversell", testConcurrentOversell},
				{"ConcurrentOverlappingOrdersDoNotDeadlock", testConcurrentOverlapping},
				{"ConcurrentDuplicateAppliesOnce", testConcurrentDuplicate},
				{"ConcurrentPlacementOfOneOrderReservesOnce", testConcurrentSameOrder},
				{"ReservationRoundTripsEveryStatus", testRoundTrip},
				{"ApplyOrderRefusesInvalidReservation", testInvalidReservation},
				{"ConcurrentPlacementAndCancellationEndClean", testConcurrentPlaceCancel},
				{"MigrationFrom0001KeepsReservations", testMigrationFrom0001},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, b) })
			}
		})
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mustOpen returns a fresh, migrated, empty store on b and its database.
func mustOpen(t *testing.T, b sqltest.Backend) (*stockdb.Store, *sqldb.DB) {
	t.Helper()
	db := b.Open(t)
	if err := stockdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// Migrating twice is how every restart begins; it must be a no-op.
	if err := stockdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	return stockdb.New(db), db
}

func key(id string) inbox.Key { return inbox.Key{Consumer: catalog.Inventory, EventID: id} }

// restock applies a restock of qty units of sku under key id.
func restock(ctx context.Context, s *stockdb.Store, id, sku string, qty int64) (bool, error) {
	return s.ApplySKU(ctx, key(id), sku, func(st *inventory.Stock) ([]events.Outgoing, error) {
		return st.Restock(catalog.Restock{SKU: sku, Quantity: qty}, id, t0)
	})
}

func mustRestock(t *testing.T, s *stockdb.Store, sku string, qty int64) {
	t.Helper()
	if _, err := restock(context.Background(), s, "restock-"+sku+"-"+events.NewID(), sku, qty); err != nil {
		t.Fatalf("restock %s: %v", sku, err)
	}
}

// reserve runs the domain's placement decision for an order, the way the
// service does.
func reserve(ctx context.Context, s *stockdb.Store, id, orderID string, lines ...catalog.StockLine) (bool, error) {
	return s.ApplyOrder(ctx, key(id), orderID, inventory.SKUs(lines),
		func(res *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
			if res != nil {
				return nil, nil, nil
			}
			return inventory.Reserve(orderID, lines, stock, t0)
		})
}

func line(sku string, q int64) catalog.StockLine { return catalog.StockLine{SKU: sku, Quantity: q} }

func mustGet(t *testing.T, s *stockdb.Store, sku string) inventory.Stock {
	t.Helper()
	st, err := s.Get(context.Background(), sku)
	if err != nil {
		t.Fatalf("get %s: %v", sku, err)
	}
	return st
}

func wantStock(t *testing.T, s *stockdb.Store, want inventory.Stock) {
	t.Helper()
	if got := mustGet(t, s, want.SKU); got != want {
		t.Errorf("stock = %+v, want %+v", got, want)
	}
}

// outboxIDs returns the ids of the events waiting in the outbox, in the
// order they were written.
func outboxIDs(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT event_id FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return ids
}

func inboxCount(t *testing.T, db *sqldb.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM inbox`).Scan(&n); err != nil {
		t.Fatalf("count inbox: %v", err)
	}
	return n
}

func testApplyAtomic(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)

	applied, err := restock(ctx, s, "r-1", "A", 5)
	if err != nil || !applied {
		t.Fatalf("restock: applied=%v err=%v", applied, err)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 5})
	if got, want := outboxIDs(t, db), []string{events.DerivedID("r-1", "inventory.restocked")}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v, want %v", got, want)
	}

	applied, err = reserve(ctx, s, "p-1", "o-1", line("A", 2))
	if err != nil || !applied {
		t.Fatalf("reserve: applied=%v err=%v", applied, err)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 3, Reserved: 2})
	res, err := s.Reservation(ctx, "o-1")
	if err != nil {
		t.Fatalf("reservation: %v", err)
	}
	if res.Status != inventory.Reserved || !reflect.DeepEqual(res.Lines, []catalog.StockLine{line("A", 2)}) || !res.CreatedAt.Equal(t0) {
		t.Errorf("reservation = %+v", res)
	}
	if got, want := outboxIDs(t, db), []string{
		events.DerivedID("r-1", "inventory.restocked"), events.DerivedID("o-1", "inventory.reserved"),
	}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v, want %v", got, want)
	}
	if n := inboxCount(t, db); n != 2 {
		t.Errorf("inbox has %d claims, want 2", n)
	}

	// A failed reservation is state too: it is saved, and published.
	if _, err := reserve(ctx, s, "p-2", "o-2", line("A", 1), line("NEW", 1)); err != nil {
		t.Fatalf("reserve o-2: %v", err)
	}
	res, err = s.Reservation(ctx, "o-2")
	if err != nil {
		t.Fatalf("reservation: %v", err)
	}
	if res.Status != inventory.Failed || !reflect.DeepEqual(res.Shortages, []catalog.Shortage{{SKU: "NEW", Requested: 1, Available: 0}}) {
		t.Errorf("reservation = %+v", res)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 3, Reserved: 2})
	all, err := s.All(ctx)
	if err != nil {
		t.Fatalf("all: %v", err)
	}
	if want := []inventory.Stock{{SKU: "A", Available: 3, Reserved: 2}, {SKU: "NEW"}}; !reflect.DeepEqual(all, want) {
		t.Errorf("all = %+v, want %+v", all, want)
	}
	counts, err := s.ReservationCounts(ctx)
	if err != nil {
		t.Fatalf("counts: %v", err)
	}
	if want := map[inventory.ReservationStatus]int{inventory.Reserved: 1, inventory.Failed: 1}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
	if _, err := s.Reservation(ctx, "nope"); !errors.Is(err, inventory.ErrReservationNotFound) || events.KindOf(err) != events.KindNotFound {
		t.Errorf("unknown reservation: err = %v, want NotFound ErrReservationNotFound", err)
	}
}

func testDuplicate(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)
	if _, err := restock(ctx, s, "r-1", "A", 5); err != nil {
		t.Fatal(err)
	}
	called := false
	applied, err := s.ApplySKU(ctx, key("r-1"), "A", func(st *inventory.Stock) ([]events.Outgoing, error) {
		called = true
		return st.Restock(catalog.Restock{SKU: "A", Quantity: 5}, "r-1", t0)
	})
	if err != nil || applied || called {
		t.Errorf("duplicate restock: applied=%v called=%v err=%v; want not applied, not called", applied, called, err)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 5})

	if _, err := reserve(ctx, s, "p-1", "o-1", line("A", 2)); err != nil {
		t.Fatal(err)
	}
	applied, err = s.ApplyOrder(ctx, key("p-1"), "o-1", []string{"A"}, func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		called = true
		return nil, nil, errors.New("must not run")
	})
	if err != nil || applied || called {
		t.Errorf("duplicate placement: applied=%v called=%v err=%v; want not applied, not called", applied, called, err)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 3, Reserved: 2})
	if n := len(outboxIDs(t, db)); n != 2 {
		t.Errorf("outbox has %d events, want 2", n)
	}
}

func testRollback(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)
	mustRestock(t, s, "A", 5)
	before := len(outboxIDs(t, db))
	claims := inboxCount(t, db)

	boom := events.Permanent(errors.New("boom"))
	_, err := s.ApplySKU(ctx, key("r-2"), "A", func(st *inventory.Stock) ([]events.Outgoing, error) {
		out, _ := st.Restock(catalog.Restock{SKU: "A", Quantity: 7}, "r-2", t0)
		return out, boom
	})
	if !errors.Is(err, boom) || !events.IsPermanent(err) {
		t.Fatalf("err = %v, want the handler's permanent error", err)
	}
	_, err = s.ApplyOrder(ctx, key("p-1"), "o-1", []string{"A", "B"}, func(_ *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		res, out, _ := inventory.Reserve("o-1", []catalog.StockLine{line("A", 1)}, stock, t0)
		return res, out, errors.New("transient boom")
	})
	if err == nil || events.IsPermanent(err) {
		t.Fatalf("err = %v, want the handler's transient error", err)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 5})
	if _, err := s.Reservation(ctx, "o-1"); !errors.Is(err, inventory.ErrReservationNotFound) {
		t.Errorf("reservation after rollback: err = %v, want not found", err)
	}
	if got := len(outboxIDs(t, db)); got != before {
		t.Errorf("outbox has %d events, want %d", got, before)
	}
	if got := inboxCount(t, db); got != claims {
		t.Errorf("inbox has %d claims, want %d: a failed unit of work must release its claim", got, claims)
	}
	// The claim was rolled back with the rest, so a redelivery applies.
	if applied, err := reserve(ctx, s, "p-1", "o-1", line("A", 1)); err != nil || !applied {
		t.Fatalf("retry: applied=%v err=%v", applied, err)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 4, Reserved: 1})
}

func testCheckConstraint(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)
	mustRestock(t, s, "A", 1)
	before := len(outboxIDs(t, db))
	for _, tamper := range []func(*inventory.Stock){
		func(st *inventory.Stock) { st.Available = -1 },
		func(st *inventory.Stock) { st.Reserved = -1 },
		func(st *inventory.Stock) { st.Sold = -1 },
	} {
		_, err := s.ApplySKU(ctx, key("bad-"+events.NewID()), "A", func(st *inventory.Stock) ([]events.Outgoing, error) {
			tamper(st)
			return []events.Outgoing{{ID: events.NewID(), Subject: "inventory.x.A", Type: "x", Source: "x", Data: 1}}, nil
		})
		if err == nil {
			t.Errorf("negative stock was saved")
		}
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 1})
	if got := len(outboxIDs(t, db)); got != before {
		t.Errorf("outbox has %d events, want %d", got, before)
	}
}

func testGetUnknown(t *testing.T, b sqltest.Backend) {
	s, _ := mustOpen(t, b)
	wantStock(t, s, inventory.Stock{SKU: "NEVER"})
	all, err := s.All(context.Background())
	if err != nil || len(all) != 0 {
		t.Errorf("all = %v, %v; want empty: reading must not create rows", all, err)
	}
}

func testLocksReservationSKUs(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, _ := mustOpen(t, b)
	mustRestock(t, s, "A", 5)
	mustRestock(t, s, "B", 5)
	if _, err := reserve(ctx, s, "p-1", "o-1", line("A", 2), line("B", 1)); err != nil {
		t.Fatal(err)
	}
	var got []string
	_, err := s.ApplyOrder(ctx, key("c-1"), "o-1", nil, func(res *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		for sku := range stock {
			got = append(got, sku)
		}
		out, err := res.Commit(stock, t0)
		return res, out, err
	})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("stock handed to fn = %v, want the reservation's SKUs [A B]", got)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 3, Sold: 2})
	wantStock(t, s, inventory.Stock{SKU: "B", Available: 4, Sold: 1})
	res, err := s.Reservation(ctx, "o-1")
	if err != nil || res.Status != inventory.Committed {
		t.Errorf("reservation = %+v, %v; want COMMITTED", res, err)
	}
}

func testUnlockedStock(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, _ := mustOpen(t, b)
	mustRestock(t, s, "B", 5)
	_, err := s.ApplyOrder(ctx, key("x"), "o-1", []string{"A"}, func(_ *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		stock["B"] = &inventory.Stock{SKU: "B", Available: 100}
		return nil, nil, nil
	})
	if err == nil {
		t.Fatal("a change to a SKU the unit of work did not lock was saved")
	}
	wantStock(t, s, inventory.Stock{SKU: "B", Available: 5})
}

// testConcurrentOversell races more orders than there is stock for the same
// SKU: exactly as many as there are units may reserve.
func testConcurrentOversell(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, _ := mustOpen(t, b)
	const stock, orders = 10, 30
	mustRestock(t, s, "A", stock)

	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			id := fmt.Sprintf("o-%d", i)
			if _, err := reserve(ctx, s, "p-"+id, id, line("A", 1)); err != nil {
				t.Errorf("reserve %s: %v", id, err)
			}
		})
	}
	wg.Wait()

	wantStock(t, s, inventory.Stock{SKU: "A", Available: 0, Reserved: stock})
	counts, err := s.ReservationCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[inventory.ReservationStatus]int{inventory.Reserved: stock, inventory.Failed: orders - stock}; !reflect.DeepEqual(counts, want) {
		t.Errorf("reservations = %v, want %v", counts, want)
	}
}

// testConcurrentOverlapping races orders over the same SKUs named in
// different orders, restocks and commits: every unit of work must finish
// (lock ordering prevents deadlocks; PostgreSQL would abort one of a
// deadlocked pair) and the counts must add up.
func testConcurrentOverlapping(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, _ := mustOpen(t, b)
	skus := []string{"A", "B", "C"}
	received := map[string]int64{}
	for _, sku := range skus {
		mustRestock(t, s, sku, 15)
		received[sku] = 15
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const orders = 24
	for i := range orders {
		wg.Go(func() {
			id := fmt.Sprintf("o-%d", i)
			// Rotate and reverse the SKUs so that orders name them in every
			// order; the store must lock them sorted anyway.
			names := append(slices.Clone(skus[i%3:]), skus[:i%3]...)
			if i%2 == 1 {
				slices.Reverse(names)
			}
			lines := inventory.Lines([]catalog.LineItem{{SKU: names[0], Quantity: 2}, {SKU: names[1], Quantity: 1}})
			if _, err := s.ApplyOrder(ctx, key("p-"+id), id, []string{names[0], names[1]},
				func(_ *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
					return inventory.Reserve(id, lines, stock, t0)
				}); err != nil {
				t.Errorf("reserve %s: %v", id, err)
				return
			}
			if i%3 == 0 {
				if _, err := s.ApplyOrder(ctx, key("c-"+id), id, nil,
					func(res *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
						out, err := res.Commit(stock, t0)
						return res, out, err
					}); err != nil {
					t.Errorf("commit %s: %v", id, err)
				}
			}
			if i%4 == 0 {
				sku := names[2]
				if _, err := restock(ctx, s, "r-"+id, sku, 1); err != nil {
					t.Errorf("restock %s: %v", sku, err)
					return
				}
				mu.Lock()
				received[sku]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// Every unit held by a reservation is reserved or sold, and nothing else is.
	held := map[string]int64{}
	for i := range orders {
		res, err := s.Reservation(ctx, fmt.Sprintf("o-%d", i))
		if err != nil {
			t.Fatalf("reservation o-%d: %v", i, err)
		}
		if res.Status == inventory.Failed {
			continue
		}
		for _, l := range res.Lines {
			held[l.SKU] += l.Quantity
		}
	}
	for _, sku := range skus {
		st := mustGet(t, s, sku)
		if err := st.Validate(); err != nil {
			t.Error(err)
		}
		if st.Received() != received[sku] {
			t.Errorf("%s: available+reserved+sold = %d, want %d received (%+v)", sku, st.Received(), received[sku], st)
		}
		if st.Reserved+st.Sold != held[sku] {
			t.Errorf("%s: reserved+sold = %d, want %d held by reservations", sku, st.Reserved+st.Sold, held[sku])
		}
	}
}

// testConcurrentDuplicate delivers one command to many workers at once: the
// inbox lets exactly one apply it.
func testConcurrentDuplicate(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied int
	)
	for range 10 {
		wg.Go(func() {
			ok, err := restock(ctx, s, "r-1", "A", 3)
			if err != nil {
				t.Errorf("restock: %v", err)
				return
			}
			if ok {
				mu.Lock()
				applied++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if applied != 1 {
		t.Errorf("applied %d times, want 1", applied)
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 3})
	if n := len(outboxIDs(t, db)); n != 1 {
		t.Errorf("outbox has %d events, want 1", n)
	}
}

// testConcurrentSameOrder delivers placements of one order under different
// inbox keys at once (a re-published event with a new id): the order is
// decided once.
func testConcurrentSameOrder(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)
	mustRestock(t, s, "A", 10)
	before := len(outboxIDs(t, db))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := reserve(ctx, s, fmt.Sprintf("p-%d", i), "o-1", line("A", 2)); err != nil {
				t.Errorf("reserve: %v", err)
			}
		})
	}
	wg.Wait()
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 8, Reserved: 2})
	if got := len(outboxIDs(t, db)) - before; got != 1 {
		t.Errorf("%d events published, want 1", got)
	}
}

// apply runs one of the domain's order transitions under key id.
func apply(ctx context.Context, s *stockdb.Store, id, orderID string, skus []string,
	fn func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error)) error {
	_, err := s.ApplyOrder(ctx, key(id), orderID, skus, fn)
	return err
}

func placeFn(orderID string, lines ...catalog.StockLine) func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
	return func(res *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		return inventory.OnPlaced(res, orderID, lines, stock, t0)
	}
}

func confirmFn(orderID string) func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
	return func(res *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		return inventory.OnConfirmed(res, orderID, stock, t0)
	}
}

func cancelFn(orderID string) func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
	return func(res *inventory.Reservation, stock map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
		return inventory.OnCancelled(res, orderID, stock, t0)
	}
}

// testRoundTrip saves a reservation in every status through the domain's
// transitions and reads each back as it was saved.
func testRoundTrip(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, _ := mustOpen(t, b)
	mustRestock(t, s, "A", 10)
	a := []string{"A"}
	steps := []struct {
		id, order string
		skus      []string
		fn        func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error)
	}{
		{"p-res", "res", a, placeFn("res", line("A", 1))},
		{"p-com", "com", a, placeFn("com", line("A", 2))},
		{"c-com", "com", nil, confirmFn("com")},
		{"p-fail", "fail", a, placeFn("fail", line("A", 100))},
		{"p-rel", "rel", a, placeFn("rel", line("A", 3))},
		{"x-rel", "rel", nil, cancelFn("rel")},
		{"c-await", "await", nil, confirmFn("await")},
		{"x-tomb", "tomb", nil, cancelFn("tomb")},
		{"x-tomb2", "tomb2", nil, cancelFn("tomb2")},
		{"p-tomb2", "tomb2", a, placeFn("tomb2", line("A", 4))},
	}
	for _, st := range steps {
		if err := apply(ctx, s, st.id, st.order, st.skus, st.fn); err != nil {
			t.Fatalf("%s: %v", st.id, err)
		}
	}
	P, C, X := true, true, true
	want := []*inventory.Reservation{
		{OrderID: "await", Status: inventory.AwaitingPlacement, Seen: inventory.Inputs{Confirmed: C}},
		{OrderID: "com", Status: inventory.Committed, Seen: inventory.Inputs{Placed: P, Confirmed: C}, Lines: []catalog.StockLine{line("A", 2)}},
		{OrderID: "fail", Status: inventory.Failed, Seen: inventory.Inputs{Placed: P}, Lines: []catalog.StockLine{line("A", 100)},
			Shortages: []catalog.Shortage{{SKU: "A", Requested: 100, Available: 7}}},
		{OrderID: "rel", Status: inventory.Released, Seen: inventory.Inputs{Placed: P, Cancelled: X}, Lines: []catalog.StockLine{line("A", 3)}},
		{OrderID: "res", Status: inventory.Reserved, Seen: inventory.Inputs{Placed: P}, Lines: []catalog.StockLine{line("A", 1)}},
		{OrderID: "tomb", Status: inventory.Cancelled, Seen: inventory.Inputs{Cancelled: X}},
		{OrderID: "tomb2", Status: inventory.Cancelled, Seen: inventory.Inputs{Placed: P, Cancelled: X}, Lines: []catalog.StockLine{line("A", 4)}},
	}
	got, err := s.Reservations(ctx)
	if err != nil {
		t.Fatalf("reservations: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d reservations, want %d", len(got), len(want))
	}
	for i, w := range want {
		w.CreatedAt, w.UpdatedAt = t0, t0
		if !reflect.DeepEqual(got[i], w) {
			t.Errorf("reservation %d = %+v, want %+v", i, got[i], w)
		}
		one, err := s.Reservation(ctx, w.OrderID)
		if err != nil || !reflect.DeepEqual(one, got[i]) {
			t.Errorf("Reservation(%s) = %+v, %v; want %+v", w.OrderID, one, err, got[i])
		}
	}
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 7, Reserved: 1, Sold: 2})
}

func testInvalidReservation(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, _ := mustOpen(t, b)
	for _, bad := range []inventory.Reservation{
		{OrderID: "o-1", Status: "SHIPPED", Seen: inventory.Inputs{Placed: true}},
		{OrderID: "o-1", Status: inventory.Committed, Seen: inventory.Inputs{Placed: true}},
	} {
		err := apply(ctx, s, "bad-"+events.NewID(), "o-1", nil, func(*inventory.Reservation, map[string]*inventory.Stock) (*inventory.Reservation, []events.Outgoing, error) {
			return &bad, nil, nil
		})
		if !errors.Is(err, inventory.ErrInconsistent) || !events.IsPermanent(err) {
			t.Errorf("%s %+v: err = %v, want permanent ErrInconsistent", bad.Status, bad.Seen, err)
		}
	}
	if _, err := s.Reservation(ctx, "o-1"); !errors.Is(err, inventory.ErrReservationNotFound) {
		t.Errorf("an invalid reservation was saved: %v", err)
	}
}

// testConcurrentPlaceCancel races each order's placement against its
// cancellation (a customer cancelling at once): whichever wins, the order
// ends holding nothing — released, or a tombstone that reserved nothing —
// and every unit is available again. On PostgreSQL both may find no row
// and race to create it; the store runs the loser again.
func testConcurrentPlaceCancel(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s, db := mustOpen(t, b)
	mustRestock(t, s, "A", 6)
	const orders = 12
	var wg sync.WaitGroup
	for i := range orders {
		id := fmt.Sprintf("o-%d", i)
		wg.Go(func() {
			if err := apply(ctx, s, "p-"+id, id, []string{"A"}, placeFn(id, line("A", 1))); err != nil {
				t.Errorf("place %s: %v", id, err)
			}
		})
		wg.Go(func() {
			if err := apply(ctx, s, "x-"+id, id, nil, cancelFn(id)); err != nil {
				t.Errorf("cancel %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	wantStock(t, s, inventory.Stock{SKU: "A", Available: 6})
	all, err := s.Reservations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	released := 0
	for _, r := range all {
		if r.Seen != (inventory.Inputs{Placed: true, Cancelled: true}) {
			t.Errorf("%s: seen %+v, want placed and cancelled", r.OrderID, r.Seen)
		}
		switch r.Status {
		case inventory.Released:
			released++
		case inventory.Cancelled, inventory.Failed:
		default:
			t.Errorf("%s is %s, want it to hold nothing", r.OrderID, r.Status)
		}
	}
	if len(all) != orders {
		t.Errorf("%d reservations, want %d", len(all), orders)
	}
	// Each release follows exactly one reservation, and nothing else was
	// announced but the restock and the failures.
	ids := outboxIDs(t, db)
	count := func(name string) (n int) {
		for i := range orders {
			if slices.Contains(ids, events.DerivedID(fmt.Sprintf("o-%d", i), "inventory."+name)) {
				n++
			}
		}
		return n
	}
	if r, rel := count("reserved"), count("released"); r != released || rel != released {
		t.Errorf("%d reserved and %d released events, want %d of each", r, rel, released)
	}
}

// testMigrationFrom0001 upgrades a database holding reservations written
// before the inputs were recorded.
func testMigrationFrom0001(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	engine := string(db.Dialect.Engine)
	old, err := os.ReadFile(filepath.Join("migrations", engine, "0001_stock.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sqldb.Migrate(ctx, db, catalog.Inventory, fstest.MapFS{engine + "/0001_stock.sql": {Data: old}}); err != nil {
		t.Fatalf("migrate to 0001: %v", err)
	}
	for _, row := range []struct{ id, status string }{{"o-res", "RESERVED"}, {"o-com", "COMMITTED"}, {"o-fail", "FAILED"}} {
		if _, err := db.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO reservations
			(order_id, status, lines, shortages, created_unix_ms, updated_unix_ms) VALUES (?, ?, ?, '[]', ?, ?)`),
			row.id, row.status, `[{"sku":"A","quantity":1}]`, t0.UnixMilli(), t0.UnixMilli()); err != nil {
			t.Fatalf("insert %s: %v", row.id, err)
		}
	}
	if err := stockdb.Migrate(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	s := stockdb.New(db)
	got, err := s.Reservations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]inventory.Inputs{
		"o-com":  {Placed: true, Confirmed: true},
		"o-fail": {Placed: true},
		"o-res":  {Placed: true},
	}
	if len(got) != len(want) {
		t.Fatalf("%d reservations after the migration, want %d", len(got), len(want))
	}
	for _, r := range got {
		if r.Seen != want[r.OrderID] || !reflect.DeepEqual(r.Lines, []catalog.StockLine{line("A", 1)}) || !r.CreatedAt.Equal(t0) {
			t.Errorf("%s after the migration: %+v, want seen %+v", r.OrderID, r, want[r.OrderID])
		}
		if err := r.Validate(); err != nil {
			t.Error(err)
		}
	}
	// A replica of the previous version, still running during a rolling
	// deploy, inserts on a placement and updates the status on a commit,
	// knowing nothing of the inputs: its rows read as what they mean.
	if _, err := db.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO reservations
		(order_id, status, lines, shortages, created_unix_ms, updated_unix_ms) VALUES (?, 'RESERVED', ?, '[]', ?, ?)`),
		"o-old", `[{"sku":"A","quantity":1}]`, t0.UnixMilli(), t0.UnixMilli()); err != nil {
		t.Fatalf("insert as the previous version: %v", err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE reservations SET status = 'COMMITTED' WHERE order_id = 'o-old'`); err != nil {
		t.Fatalf("commit as the previous version: %v", err)
	}
	r, err := s.Reservation(ctx, "o-old")
	if err != nil || r.Seen != (inventory.Inputs{Placed: true, Confirmed: true}) || r.Validate() != nil {
		t.Errorf("row of the previous version = %+v, %v; want placed and confirmed seen", r, err)
	}

	// The new statuses are allowed, unknown ones still refused by the schema.
	if err := apply(ctx, s, "x-new", "o-new", nil, cancelFn("o-new")); err != nil {
		t.Fatalf("tombstone after the migration: %v", err)
	}
	if _, err := db.ExecContext(ctx, db.Dialect.Rebind(`UPDATE reservations SET status = ? WHERE order_id = ?`), "SHIPPED", "o-new"); err == nil {
		t.Error("the schema accepted status SHIPPED")
	}
}
