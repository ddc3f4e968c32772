package paymentdb_test

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
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/paymentdb"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("ApplyCommitsStateAndOutboxTogether", func(t *testing.T) { testApplyAtomic(t, b) })
			t.Run("DuplicateInboxIsNoop", func(t *testing.T) { testDuplicate(t, b) })
			t.Run("EmptyKeySkipsInbox", func(t *testing.T) { testEmptyKey(t, b) })
			t.Run("RollbackOnHandlerError", func(t *testing.T) { testRollback(t, b) })
			t.Run("ConcurrentApplySameOrder", func(t *testing.T) { testConcurrent(t, b) })
			t.Run("GetUnknownIsNotFound", func(t *testing.T) { testNotFound(t, b) })
			t.Run("ListAndCapturedTotals", func(t *testing.T) { testListAndTotals(t, b) })
			t.Run("MigrateTwice", func(t *testing.T) { testMigrateTwice(t, b) })
		})
	}
}

func open(t *testing.T, b sqltest.Backend) (*paymentdb.Store, *sqldb.DB) {
	t.Helper()
	db := b.Open(t)
	if err := paymentdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return paymentdb.New(db), db
}

func key(id string) inbox.Key { return inbox.Key{Consumer: catalog.Payments, EventID: id} }

func outgoing(id string) events.Outgoing {
	return events.Outgoing{
		ID:      id,
		Subject: "payments.test." + id,
		Type:    "choreo.payments.test.v1",
		Source:  catalog.Source(catalog.Payments),
		Time:    t0,
		Data:    map[string]string{"id": id},
	}
}

func count(t *testing.T, db *sqldb.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// placed returns the full payment of a placed and reserved order.
func placed(orderID string) *payments.Payment {
	p := payments.NewPayment(orderID, t0)
	p.CustomerID = "cust-1"
	p.Amount = catalog.Money{Amount: 1200, Currency: "EUR"}
	p.Placed, p.Reserved = true, true
	p.Status = payments.CapturePending
	return p
}

func testApplyAtomic(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	want := placed("order-1")
	applied, err := s.Apply(ctx, key("e-1"), "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		if p != nil {
			t.Errorf("first apply: got payment %+v, want nil", p)
		}
		return want, []events.Outgoing{outgoing("out-1")}, nil
	})
	if err != nil || !applied {
		t.Fatalf("Apply: got applied %v err %v, want true nil", applied, err)
	}
	got, err := s.Get(ctx, "order-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if *got != *want {
		t.Errorf("Get: got %+v, want %+v", *got, *want)
	}
	if n := count(t, db, "outbox"); n != 1 {
		t.Errorf("outbox: got %d rows, want 1", n)
	}

	// An update of every mutable column round-trips too.
	_, err = s.Apply(ctx, key("e-2"), "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		p.Status = payments.Captured
		p.PaymentID = "pay-1"
		p.UpdatedAt = t0.Add(time.Minute)
		want = p
		return p, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, "order-1")
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Errorf("after update: got %+v, want %+v", *got, *want)
	}
}

func testDuplicate(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	calls := 0
	fn := func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		calls++
		return placed("order-1"), []events.Outgoing{outgoing(fmt.Sprintf("out-%d", calls))}, nil
	}
	if applied, err := s.Apply(ctx, key("e-1"), "order-1", fn); err != nil || !applied {
		t.Fatalf("first: got %v %v, want true nil", applied, err)
	}
	applied, err := s.Apply(ctx, key("e-1"), "order-1", fn)
	if err != nil || applied {
		t.Fatalf("duplicate: got applied %v err %v, want false nil", applied, err)
	}
	if calls != 1 {
		t.Errorf("fn calls: got %d, want 1 (a duplicate does not run fn)", calls)
	}
	if n := count(t, db, "outbox"); n != 1 {
		t.Errorf("outbox: got %d rows, want 1", n)
	}
}

func testEmptyKey(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	for range 2 {
		applied, err := s.Apply(ctx, inbox.Key{}, "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
			if p == nil {
				return placed("order-1"), nil, nil
			}
			return p, nil, nil
		})
		if err != nil || !applied {
			t.Fatalf("Apply without a key: got %v %v, want true nil", applied, err)
		}
	}
	if n := count(t, db, "inbox"); n != 0 {
		t.Errorf("inbox: got %d claims, want 0", n)
	}
}

func testRollback(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	boom := errors.New("boom")
	_, err := s.Apply(ctx, key("e-1"), "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		return placed("order-1"), []events.Outgoing{outgoing("out-1")}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Apply: got %v, want it to wrap boom", err)
	}
	if _, err := s.Get(ctx, "order-1"); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Get after rollback: got %v, want ErrNotFound", err)
	}
	if n, m := count(t, db, "outbox"), count(t, db, "inbox"); n != 0 || m != 0 {
		t.Errorf("after rollback: got %d outbox rows and %d claims, want none", n, m)
	}
	// The claim was rolled back too, so a redelivery is applied.
	applied, err := s.Apply(ctx, key("e-1"), "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		return placed("order-1"), nil, nil
	})
	if err != nil || !applied {
		t.Errorf("redelivery: got %v %v, want true nil", applied, err)
	}

	// A permanent error keeps its kind through the store.
	_, err = s.Apply(ctx, key("e-2"), "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		return nil, nil, events.Permanent(boom)
	})
	if !events.IsPermanent(err) {
		t.Errorf("permanent error: got %v, want its kind kept", err)
	}
}

// testConcurrent runs many applies on one order at once, the first of
// them racing to create it. Each adds one to the amount: a lost update or
// a lost creation shows up as a short total.
func testConcurrent(t *testing.T, b sqltest.Backend) {
	s, _ := open(t, b)
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.Apply(ctx, key(fmt.Sprintf("e-%d", i)), "order-1", func(p *payments.Payment) (*payments.Payment, []events.Outgoing, error) {
				if p == nil {
					p = payments.NewPayment("order-1", t0)
					p.Amount.Currency = "EUR"
				}
				p.Amount.Amount++
				return p, nil, nil
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
	got, err := s.Get(ctx, "order-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Amount.Amount != n {
		t.Errorf("amount after %d concurrent increments: got %d, want %d", n, got.Amount.Amount, n)
	}
}

func testNotFound(t *testing.T, b sqltest.Backend) {
	s, _ := open(t, b)
	_, err := s.Get(context.Background(), "nope")
	if !errors.Is(err, payments.ErrNotFound) || events.KindOf(err) != events.KindNotFound {
		t.Errorf("Get unknown: got %v (kind %s), want ErrNotFound of kind not_found", err, events.KindOf(err))
	}
}

func testListAndTotals(t *testing.T, b sqltest.Backend) {
	s, _ := open(t, b)
	ctx := context.Background()
	put := func(id string, amount int64, currency string, status payments.Status) {
		t.Helper()
		_, err := s.Apply(ctx, inbox.Key{}, id, func(*payments.Payment) (*payments.Payment, []events.Outgoing, error) {
			p := placed(id)
			p.Amount = catalog.Money{Amount: amount, Currency: currency}
			p.Status = status
			return p, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("order-3", 500, "EUR", payments.Captured)
	put("order-1", 1200, "EUR", payments.Captured)
	put("order-2", 99, "USD", payments.Captured)
	put("order-4", 7000, "EUR", payments.CapturePending)

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range list {
		ids = append(ids, p.OrderID)
	}
	if fmt.Sprint(ids) != "[order-1 order-2 order-3 order-4]" {
		t.Errorf("List: got %v, want the four orders by id", ids)
	}
	totals, err := s.CapturedTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"EUR": 1700, "USD": 99}; fmt.Sprint(totals) != fmt.Sprint(want) {
		t.Errorf("CapturedTotals: got %v, want %v (pending captures excluded)", totals, want)
	}
}

func testMigrateTwice(t *testing.T, b sqltest.Backend) {
	_, db := open(t, b)
	if err := paymentdb.Migrate(context.Background(), db); err != nil {
		t.Errorf("second Migrate: got %v, want nil", err)
	}
}
