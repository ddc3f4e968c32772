package paymentdb_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"testing"
	"testing/fstest"
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
			t.Run("ListAndTotals", func(t *testing.T) { testListAndTotals(t, b) })
			t.Run("MigrateTwice", func(t *testing.T) { testMigrateTwice(t, b) })
			t.Run("UpgradeFrom0001KeepsCaptures", func(t *testing.T) { testUpgrade(t, b) })
			t.Run("UnknownStatusIsRefused", func(t *testing.T) { testUnknownStatus(t, b) })
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
		p.Status = payments.Refunded
		p.PaymentID = "pay-1"
		p.Cancelled = true
		p.DeclineReason = "not really"
		p.CapturedAmount, p.RefundedAmount = 1200, 1100
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
	put := func(id string, amount int64, currency string, status payments.Status, captured, refunded int64) {
		t.Helper()
		_, err := s.Apply(ctx, inbox.Key{}, id, func(*payments.Payment) (*payments.Payment, []events.Outgoing, error) {
			p := placed(id)
			p.Amount = catalog.Money{Amount: amount, Currency: currency}
			p.Status = status
			p.CapturedAmount, p.RefundedAmount = captured, refunded
			return p, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("order-3", 500, "EUR", payments.Captured, 500, 0)
	put("order-1", 1200, "EUR", payments.Captured, 1200, 0)
	put("order-2", 99, "USD", payments.Captured, 99, 0)
	put("order-4", 7000, "EUR", payments.CapturePending, 0, 0)
	put("order-5", 300, "EUR", payments.Refunded, 300, 300)
	put("order-6", 40, "USD", payments.Voided, 0, 0)
	put("order-7", 10, "USD", payments.Refunded, 10, 10)

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range list {
		ids = append(ids, p.OrderID)
	}
	if fmt.Sprint(ids) != "[order-1 order-2 order-3 order-4 order-5 order-6 order-7]" {
		t.Errorf("List: got %v, want the seven orders by id", ids)
	}
	captured, err := s.CapturedTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"EUR": 2000, "USD": 109}; fmt.Sprint(captured) != fmt.Sprint(want) {
		t.Errorf("CapturedTotals: got %v, want %v (refunded captures in, pending ones out)", captured, want)
	}
	refunded, err := s.RefundedTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"EUR": 300, "USD": 10}; fmt.Sprint(refunded) != fmt.Sprint(want) {
		t.Errorf("RefundedTotals: got %v, want %v", refunded, want)
	}
	money, err := s.Money(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]paymentdb.OrderMoney{
		"order-1": {"EUR", 1200, 0}, "order-2": {"USD", 99, 0}, "order-3": {"EUR", 500, 0}, "order-4": {"EUR", 0, 0},
		"order-5": {"EUR", 300, 300}, "order-6": {"USD", 0, 0}, "order-7": {"USD", 10, 10},
	}
	if fmt.Sprint(money) != fmt.Sprint(want) {
		t.Errorf("Money: got %v, want %v", money, want)
	}
	if n := money["order-1"].Net(); n != 1200 {
		t.Errorf("Net of a capture: got %d, want 1200", n)
	}
	if n := money["order-5"].Net(); n != 0 {
		t.Errorf("Net of a refund: got %d, want 0", n)
	}
}

// testUpgrade applies 0001 alone, writes a captured payment the way the
// previous release did, then migrates to the current schema: the capture
// must count as captured money.
func testUpgrade(t *testing.T, b sqltest.Backend) {
	db := b.Open(t)
	ctx := context.Background()
	engine := string(db.Dialect.Engine)
	first, err := fs.ReadFile(os.DirFS("migrations"), engine+"/0001_payments.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := sqldb.Migrate(ctx, db, "payments", fstest.MapFS{engine + "/0001_payments.sql": {Data: first}}); err != nil {
		t.Fatalf("migrate 0001: %v", err)
	}
	_, err = db.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO payments (order_id, customer_id, currency, amount,
		placed, reserved, status, payment_id, created_unix_ms, updated_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		"order-1", "cust-1", "EUR", 1200, true, true, "CAPTURED", "pay-1", t0.UnixMilli(), t0.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if err := paymentdb.Migrate(ctx, db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s := paymentdb.New(db)
	p, err := s.Get(ctx, "order-1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != payments.Captured || p.CapturedAmount != 1200 || p.RefundedAmount != 0 || p.Cancelled {
		t.Errorf("after upgrade: got %+v, want CAPTURED with 1200 captured, nothing refunded, not cancelled", *p)
	}
}

func testUnknownStatus(t *testing.T, b sqltest.Backend) {
	s, db := open(t, b)
	ctx := context.Background()
	_, err := db.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO payments (order_id, status, created_unix_ms, updated_unix_ms)
		VALUES (?, ?, ?, ?)`), "order-1", "SHIPPED", t0.UnixMilli(), t0.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "order-1"); err == nil || errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Get of a row in an unknown status: got %v, want an error", err)
	}
}

func testMigrateTwice(t *testing.T, b sqltest.Backend) {
	_, db := open(t, b)
	if err := paymentdb.Migrate(context.Background(), db); err != nil {
		t.Errorf("second Migrate: got %v, want nil", err)
	}
}
