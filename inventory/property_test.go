package inventory_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/inventory"
	"github.com/choreo-dev/choreo/inventory/stockdb"
)

// The properties run on SQLite only: they are about the handlers' logic
// (arrival order, duplication), which the store conformance suite already
// shows both engines serve alike; a PostgreSQL schema per check would only
// make them slower.

var skus = []string{"A", "B", "C"}

// sagaOrder is one order of a generated saga.
type sagaOrder struct {
	id        string
	lines     []catalog.StockLine // one per SKU, sorted
	confirmed bool
}

type sagaRestock struct {
	id  string
	sku string
	qty int64
}

func genOrders(t *rapid.T) []sagaOrder {
	n := rapid.IntRange(1, 6).Draw(t, "orders")
	orders := make([]sagaOrder, n)
	for i := range orders {
		picked := rapid.SliceOfNDistinct(rapid.SampledFrom(skus), 1, len(skus), rapid.ID[string]).Draw(t, fmt.Sprintf("order%d.skus", i))
		var its []catalog.LineItem
		for _, sku := range picked {
			its = append(its, catalog.LineItem{SKU: sku, Quantity: rapid.Int64Range(1, 3).Draw(t, "qty")})
		}
		orders[i] = sagaOrder{
			id:        fmt.Sprintf("o-%d", i),
			lines:     inventory.Lines(its),
			confirmed: rapid.Bool().Draw(t, fmt.Sprintf("order%d.confirmed", i)),
		}
	}
	return orders
}

func genRestocks(t *rapid.T, max int) []sagaRestock {
	n := rapid.IntRange(0, max).Draw(t, "restocks")
	rs := make([]sagaRestock, n)
	for i := range rs {
		rs[i] = sagaRestock{
			id:  fmt.Sprintf("r-%d", i),
			sku: rapid.SampledFrom(skus).Draw(t, "restock.sku"),
			qty: rapid.Int64Range(1, 5).Draw(t, "restock.qty"),
		}
	}
	return rs
}

// input is one message of a saga, identified so duplicates can be made.
type input struct {
	name string
	msg  func(tb testing.TB) *consumer.Message
}

func sagaInputs(orders []sagaOrder, restocks []sagaRestock) []input {
	var in []input
	for _, r := range restocks {
		in = append(in, input{"restock " + r.id, func(tb testing.TB) *consumer.Message { return restockCmd(tb, r.id, r.sku, r.qty) }})
	}
	for _, o := range orders {
		in = append(in, input{"placed " + o.id, func(tb testing.TB) *consumer.Message { return placed(tb, o.id, o.lines...) }})
		if o.confirmed {
			in = append(in, input{"confirmed " + o.id, func(tb testing.TB) *consumer.Message { return confirmed(tb, o.id, o.lines...) }})
		}
	}
	return in
}

// shuffleWithDuplicates returns a random permutation of in in which some
// inputs appear more than once.
func shuffleWithDuplicates(t *rapid.T, label string, in []input) []input {
	out := slices.Clone(in)
	for _, i := range rapid.SliceOfN(rapid.IntRange(0, max(len(in)-1, 0)), 0, len(in)).Draw(t, label+".dups") {
		if len(in) > 0 {
			out = append(out, in[i])
		}
	}
	return rapid.Permutation(out).Draw(t, label+".order")
}

// firstOccurrences drops every repeat of an input, keeping its first place.
func firstOccurrences(in []input) []input {
	seen := map[string]bool{}
	var out []input
	for _, x := range in {
		if !seen[x.name] {
			seen[x.name] = true
			out = append(out, x)
		}
	}
	return out
}

// run feeds the inputs to a fresh service the way the consumer runner
// would: a transient error puts the message back at the end of the queue (a
// redelivery after back-off); a permanent one fails the property.
func run(t *rapid.T, tb testing.TB, dbs *dbFactory, in []input) *harness {
	db := dbs.open(t)
	h := newHarness(tb, db)
	queue := make([]*consumer.Message, len(in))
	for i, x := range in {
		queue[i] = x.msg(tb)
	}
	for steps := 0; len(queue) > 0; steps++ {
		if steps > 10*len(in)+10 {
			t.Fatalf("inputs still failing after %d deliveries", steps)
		}
		m := queue[0]
		queue = queue[1:]
		if err := h.svc.Handle(context.Background(), m); err != nil {
			if events.IsPermanent(err) {
				t.Fatalf("handle %s: %v", m.Subject, err)
			}
			m.Delivered++
			queue = append(queue, m)
		}
	}
	return h
}

// dbFactory hands each check fresh SQLite files, copied from one migrated
// template so that a check does not pay for the migrations. rapid.T has no
// temporary directory or cleanups, so the test's own are used.
type dbFactory struct {
	dir      string
	template []byte
	n        atomic.Int64
	tb       testing.TB
}

func newDBFactory(tb testing.TB) *dbFactory {
	tb.Helper()
	f := &dbFactory{dir: tb.TempDir(), tb: tb}
	path := filepath.Join(f.dir, "template.db")
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		tb.Fatalf("open template: %v", err)
	}
	if err := stockdb.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("migrate template: %v", err)
	}
	// Closing the last connection checkpoints the WAL into the main file,
	// so the file alone is the whole database.
	if err := db.Close(); err != nil {
		tb.Fatalf("close template: %v", err)
	}
	if f.template, err = os.ReadFile(path); err != nil {
		tb.Fatalf("read template: %v", err)
	}
	return f
}

func (f *dbFactory) open(t *rapid.T) *sqldb.DB {
	path := filepath.Join(f.dir, fmt.Sprintf("check-%d.db", f.n.Add(1)))
	if err := os.WriteFile(path, f.template, 0o600); err != nil {
		t.Fatalf("copy template: %v", err)
	}
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	f.tb.Cleanup(func() { db.Close() })
	return db
}

// checkConservation asserts available + reserved + sold = received per SKU,
// that nothing is negative, and that what is reserved and sold is exactly
// what the reservations hold.
func checkConservation(t *rapid.T, tb testing.TB, h *harness, orders []sagaOrder, received map[string]int64) {
	reserved, sold := map[string]int64{}, map[string]int64{}
	for _, o := range orders {
		res, err := h.store.Reservation(context.Background(), o.id)
		if err != nil {
			t.Fatalf("reservation %s: %v", o.id, err)
		}
		for _, l := range res.Lines {
			switch res.Status {
			case inventory.Reserved:
				reserved[l.SKU] += l.Quantity
			case inventory.Committed:
				sold[l.SKU] += l.Quantity
			}
		}
		if res.Status == inventory.Committed && !o.confirmed {
			t.Fatalf("order %s committed without a confirmation", o.id)
		}
		if res.Status == inventory.Reserved && o.confirmed {
			t.Fatalf("confirmed order %s still only reserved", o.id)
		}
	}
	for _, st := range allStock(tb, h.store) {
		if err := st.Validate(); err != nil {
			t.Fatal(err)
		}
		if st.Received() != received[st.SKU] {
			t.Fatalf("%s: available+reserved+sold = %d, want %d received", st.SKU, st.Received(), received[st.SKU])
		}
		if st.Reserved != reserved[st.SKU] || st.Sold != sold[st.SKU] {
			t.Fatalf("%s: reserved %d sold %d, reservations hold %d reserved, %d sold", st.SKU, st.Reserved, st.Sold, reserved[st.SKU], sold[st.SKU])
		}
	}
}

// TestOrderIndependence: with enough stock for every order, any arrival
// order and any duplication of restocks, placements and confirmations
// reach one final stock and one set of published events.
func TestOrderIndependence(t *testing.T) {
	dbs := newDBFactory(t)
	rapid.Check(t, func(rt *rapid.T) {
		orders := genOrders(rt)
		restocks := genRestocks(rt, 4)

		// A first restock covers every order, so each one reserves
		// whatever else arrives before it; the rest arrive in any order.
		received := map[string]int64{}
		var base []input
		demand := map[string]int64{}
		for _, o := range orders {
			for _, l := range o.lines {
				demand[l.SKU] += l.Quantity
			}
		}
		for _, sku := range slices.Sorted(maps.Keys(demand)) {
			id, qty := "base-"+sku, demand[sku]
			received[sku] += qty
			base = append(base, input{"restock " + id, func(tb testing.TB) *consumer.Message { return restockCmd(tb, id, sku, qty) }})
		}
		for _, r := range restocks {
			received[r.sku] += r.qty
		}
		in := sagaInputs(orders, restocks)

		a := run(rt, t, dbs, append(slices.Clone(base), shuffleWithDuplicates(rt, "a", in)...))
		b := run(rt, t, dbs, append(slices.Clone(base), shuffleWithDuplicates(rt, "b", in)...))

		checkConservation(rt, t, a, orders, received)
		if sa, sb := allStock(t, a.store), allStock(t, b.store); !reflect.DeepEqual(sa, sb) {
			rt.Fatalf("final stock differs:\n%+v\n%+v", sa, sb)
		}
		wantIDs := []string{}
		for _, r := range append(restocks, baseRestocks(demand)...) {
			wantIDs = append(wantIDs, events.DerivedID(catalog.SubjectRestock+":"+r.id, "inventory.restocked"))
		}
		for _, o := range orders {
			wantIDs = append(wantIDs, events.DerivedID(o.id, "inventory.reserved"))
			if o.confirmed {
				wantIDs = append(wantIDs, events.DerivedID(o.id, "inventory.committed"))
			}
		}
		slices.Sort(wantIDs)
		if got := outboxIDs(t, a.db); !slices.Equal(got, wantIDs) {
			rt.Fatalf("published %v, want %v", got, wantIDs)
		}
		if got := outboxIDs(t, b.db); !slices.Equal(got, wantIDs) {
			rt.Fatalf("second run published %v, want %v", got, wantIDs)
		}
	})
}

func baseRestocks(demand map[string]int64) []sagaRestock {
	var rs []sagaRestock
	for sku, qty := range demand {
		rs = append(rs, sagaRestock{id: "base-" + sku, sku: sku, qty: qty})
	}
	return rs
}

// TestDuplicatesChangeNothing: with scarce stock the arrival order decides
// which orders are served, but duplicates never matter: a sequence with
// duplicates ends exactly where the same sequence without them does, and
// the counts always add up.
func TestDuplicatesChangeNothing(t *testing.T) {
	dbs := newDBFactory(t)
	rapid.Check(t, func(rt *rapid.T) {
		orders := genOrders(rt)
		restocks := genRestocks(rt, 6)
		received := map[string]int64{}
		for _, r := range restocks {
			received[r.sku] += r.qty
		}
		seq := shuffleWithDuplicates(rt, "seq", sagaInputs(orders, restocks))

		withDups := run(rt, t, dbs, seq)
		without := run(rt, t, dbs, firstOccurrences(seq))

		checkConservation(rt, t, withDups, orders, received)
		if a, b := allStock(t, withDups.store), allStock(t, without.store); !reflect.DeepEqual(a, b) {
			rt.Fatalf("final stock with duplicates %+v, without %+v", a, b)
		}
		if a, b := outboxIDs(t, withDups.db), outboxIDs(t, without.db); !slices.Equal(a, b) {
			rt.Fatalf("published with duplicates %v, without %v", a, b)
		}
		// Every order is decided exactly once, one way or the other.
		published := map[string]bool{}
		for _, id := range outboxIDs(t, withDups.db) {
			published[id] = true
		}
		for _, o := range orders {
			ok := published[events.DerivedID(o.id, "inventory.reserved")]
			failed := published[events.DerivedID(o.id, "inventory.reservation_failed")]
			if ok == failed {
				rt.Fatalf("order %s: reserved published %v, failed published %v; want exactly one", o.id, ok, failed)
			}
		}
	})
}
