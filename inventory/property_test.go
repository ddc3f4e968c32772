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
// shows both engines serve alike (stockdb's TestStore, and TestHandle here,
// run on both); a PostgreSQL schema per check would make them several
// times slower for no more coverage of that logic.

var skus = []string{"A", "B", "C"}

// outcome is how the saga ends for one order, as the orders service
// decides it; it fixes which of inventory's inputs the order produces.
type outcome int

const (
	// pendingOutcome: the order is still pending; only orders.placed.
	pendingOutcome outcome = iota
	// confirmedOutcome: reserved, paid, confirmed; placed and confirmed.
	confirmedOutcome
	// cancelledOutcome: reserved, then cancelled (payment declined, the
	// customer, the deadline); placed and cancelled.
	cancelledOutcome
	// outOfStockOutcome: the reservation failed; placed and
	// cancelled(out_of_stock).
	outOfStockOutcome
)

// sagaOrder is one order of a generated saga.
type sagaOrder struct {
	id      string
	lines   []catalog.StockLine // one per SKU, sorted
	outcome outcome
	reason  string // of the cancellation
}

type sagaRestock struct {
	id  string
	sku string
	qty int64
}

func genLines(t *rapid.T, label string) []catalog.StockLine {
	picked := rapid.SliceOfNDistinct(rapid.SampledFrom(skus), 1, len(skus), rapid.ID[string]).Draw(t, label+".skus")
	var its []catalog.LineItem
	for _, sku := range picked {
		its = append(its, catalog.LineItem{SKU: sku, Quantity: rapid.Int64Range(1, 3).Draw(t, label+".qty")})
	}
	return inventory.Lines(its)
}

func genOrders(t *rapid.T, maxOrders int, outcomes ...outcome) []sagaOrder {
	n := rapid.IntRange(1, maxOrders).Draw(t, "orders")
	orders := make([]sagaOrder, n)
	for i := range orders {
		label := fmt.Sprintf("order%d", i)
		o := sagaOrder{
			id:      fmt.Sprintf("o-%d", i),
			lines:   genLines(t, label),
			outcome: rapid.SampledFrom(outcomes).Draw(t, label+".outcome"),
		}
		switch o.outcome {
		case cancelledOutcome:
			o.reason = rapid.SampledFrom([]string{catalog.ReasonPaymentDeclined, catalog.ReasonCustomerCancelled, catalog.ReasonTimeout}).Draw(t, label+".reason")
		case outOfStockOutcome:
			o.reason = catalog.ReasonOutOfStock
		}
		orders[i] = o
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

// input is one message of a saga, identified so that duplicates can be
// made and each delivery accounted for.
type input struct {
	name    string
	orderID string // "" for a restock
	kind    string // "placed", "confirmed", "cancelled" or "restock"
	restock sagaRestock
	msg     func(tb testing.TB) *consumer.Message
}

func restockInput(r sagaRestock) input {
	return input{name: "restock " + r.id, kind: "restock", restock: r,
		msg: func(tb testing.TB) *consumer.Message { return restockCmd(tb, r.id, r.sku, r.qty) }}
}

func restockInputs(rs []sagaRestock) []input {
	var in []input
	for _, r := range rs {
		in = append(in, restockInput(r))
	}
	return in
}

// orderInputs are the inputs each order's outcome sends inventory, in saga
// order: placed first.
func orderInputs(orders []sagaOrder) []input {
	var in []input
	for _, o := range orders {
		in = append(in, input{name: "placed " + o.id, orderID: o.id, kind: "placed",
			msg: func(tb testing.TB) *consumer.Message { return placed(tb, o.id, o.lines...) }})
		switch o.outcome {
		case confirmedOutcome:
			in = append(in, input{name: "confirmed " + o.id, orderID: o.id, kind: "confirmed",
				msg: func(tb testing.TB) *consumer.Message { return confirmed(tb, o.id, o.lines...) }})
		case cancelledOutcome, outOfStockOutcome:
			in = append(in, input{name: "cancelled " + o.id, orderID: o.id, kind: "cancelled",
				msg: func(tb testing.TB) *consumer.Message { return cancelled(tb, o.id, o.reason, o.lines...) }})
		}
	}
	return in
}

// shuffleWithDuplicates returns a random permutation of in together with
// random repeats of inputs drawn from in and from extra, up to half as
// many as there are inputs: a few repeats anywhere exercise the inbox and
// the transitions' idempotence as well as many do, and every delivery
// costs a transaction.
func shuffleWithDuplicates(t *rapid.T, label string, in []input, extra ...input) []input {
	pool := append(slices.Clone(in), extra...)
	out := slices.Clone(in)
	if len(pool) > 0 {
		for _, i := range rapid.SliceOfN(rapid.IntRange(0, len(pool)-1), 0, max(1, len(pool)/2)).Draw(t, label+".dups") {
			out = append(out, pool[i])
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

// delivered is what a run has fed the service so far.
type delivered struct {
	received map[string]int64            // per SKU, by restocks applied
	seen     map[string]inventory.Inputs // per order
	// cancelFirst: the order's cancellation came before its placement,
	// the race the saga allows (a customer cancelling at once).
	cancelFirst map[string]bool
	// confirmFirst: the order's confirmation came before its placement,
	// which only a replay or a redelivery produces.
	confirmFirst map[string]bool
	restocks     map[string]bool
}

func newDelivered() *delivered {
	return &delivered{received: map[string]int64{}, seen: map[string]inventory.Inputs{},
		cancelFirst: map[string]bool{}, confirmFirst: map[string]bool{}, restocks: map[string]bool{}}
}

func (d *delivered) add(x input) {
	s := d.seen[x.orderID]
	switch x.kind {
	case "restock":
		if !d.restocks[x.restock.id] {
			d.restocks[x.restock.id] = true
			d.received[x.restock.sku] += x.restock.qty
		}
		return
	case "placed":
		s.Placed = true
	case "confirmed":
		d.confirmFirst[x.orderID] = d.confirmFirst[x.orderID] || !s.Placed
		s.Confirmed = true
	case "cancelled":
		d.cancelFirst[x.orderID] = d.cancelFirst[x.orderID] || !s.Placed
		s.Cancelled = true
	}
	d.seen[x.orderID] = s
}

// run feeds the inputs one by one to a fresh service, as the consumer
// runner would, and calls check after each. Every input must be handled
// at its first delivery: no input of a saga is an error, whatever it
// arrives after.
func run(t *rapid.T, tb testing.TB, dbs *dbFactory, in []input, check func(h *harness, d *delivered)) (*harness, *delivered) {
	h := newMigratedHarness(tb, dbs.open(t))
	d := newDelivered()
	for _, x := range in {
		m := x.msg(tb)
		if err := h.svc.Handle(context.Background(), m); err != nil {
			t.Fatalf("handle %s: %v", x.name, err)
		}
		d.add(x)
		check(h, d)
	}
	return h, d
}

// dbFactory hands each check fresh SQLite files, copied from one migrated
// template so that a check does not pay for the migrations.
type dbFactory struct {
	dir      string
	template []byte
	n        atomic.Int64
}

func newDBFactory(tb testing.TB) *dbFactory {
	tb.Helper()
	f := &dbFactory{dir: tb.TempDir()}
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

// open returns a fresh database, closed and removed when the check ends.
func (f *dbFactory) open(t *rapid.T) *sqldb.DB {
	path := filepath.Join(f.dir, fmt.Sprintf("check-%d.db", f.n.Add(1)))
	if err := os.WriteFile(path, f.template, 0o600); err != nil {
		t.Fatalf("copy template: %v", err)
	}
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		db.Close()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
	})
	return db
}

func reservations(tb testing.TB, h *harness) map[string]*inventory.Reservation {
	tb.Helper()
	all, err := h.store.Reservations(context.Background())
	if err != nil {
		tb.Fatalf("reservations: %v", err)
	}
	out := make(map[string]*inventory.Reservation, len(all))
	for _, r := range all {
		out[r.OrderID] = r
	}
	return out
}

// checkConservation asserts the stock invariants against what was
// delivered: per SKU available + reserved + sold = received so far,
// nothing negative, reserved and sold exactly what the RESERVED and
// COMMITTED reservations hold (so no partial reservation is ever left),
// every reservation a valid state that records exactly the inputs its
// order was sent.
func checkConservation(t *rapid.T, tb testing.TB, h *harness, d *delivered) map[string]*inventory.Reservation {
	res := reservations(tb, h)
	reserved, sold := map[string]int64{}, map[string]int64{}
	for id, r := range res {
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		if want, ok := d.seen[id]; !ok || r.Seen != want {
			t.Fatalf("reservation %s records inputs %+v, its order was sent %+v", id, r.Seen, want)
		}
		for _, l := range r.Lines {
			switch r.Status {
			case inventory.Reserved:
				reserved[l.SKU] += l.Quantity
			case inventory.Committed:
				sold[l.SKU] += l.Quantity
			}
		}
	}
	if len(res) != len(d.seen) {
		t.Fatalf("%d reservations, %d orders sent an input", len(res), len(d.seen))
	}
	stock := map[string]inventory.Stock{}
	for _, st := range allStock(tb, h.store) {
		stock[st.SKU] = st
	}
	for _, sku := range slices.Sorted(maps.Keys(stock)) {
		st := stock[sku]
		if err := st.Validate(); err != nil {
			t.Fatal(err)
		}
		if st.Received() != d.received[sku] {
			t.Fatalf("%s: available+reserved+sold = %d, want %d received", sku, st.Received(), d.received[sku])
		}
		if st.Reserved != reserved[sku] || st.Sold != sold[sku] {
			t.Fatalf("%s: reserved %d sold %d, reservations hold %d reserved, %d sold", sku, st.Reserved, st.Sold, reserved[sku], sold[sku])
		}
	}
	for sku, n := range d.received {
		if _, ok := stock[sku]; !ok && n != 0 {
			t.Fatalf("%s: %d received but no stock row", sku, n)
		}
	}
	return res
}

// wantStatus is the status an order of a saga whose stock race is decided
// in advance (see TestSagaOrderIndependence) must have after the inputs d
// records.
func wantStatus(o sagaOrder, d *delivered) inventory.ReservationStatus {
	s := d.seen[o.id]
	switch {
	case !s.Placed && s.Cancelled, d.cancelFirst[o.id]:
		return inventory.Cancelled
	case !s.Placed:
		return inventory.AwaitingPlacement
	case o.outcome == outOfStockOutcome:
		return inventory.Failed
	case s.Confirmed:
		return inventory.Committed
	case s.Cancelled:
		return inventory.Released
	}
	return inventory.Reserved
}

// holdsNothing: RELEASED, the CANCELLED tombstone and FAILED-then-cancelled
// are one final state for stock.
func holdsNothing(s inventory.ReservationStatus) bool {
	return s == inventory.Released || s == inventory.Cancelled || s == inventory.Failed
}

// eventsByKey groups the ids of the events in the outbox by their
// CloudEvents subject: the order id for saga events, the SKU for restocks.
// An id published twice fails the check.
func eventsByKey(t *rapid.T, tb testing.TB, db *sqldb.DB) map[string][]string {
	out := map[string][]string{}
	ids := map[string]bool{}
	for _, e := range outbox(tb, db) {
		if ids[e.ID] {
			t.Fatalf("event %s (%s) published twice", e.ID, e.Type)
		}
		ids[e.ID] = true
		out[e.Subject] = append(out[e.Subject], e.ID)
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

func orderEventIDs(orderID string, names ...string) []string {
	var ids []string
	for _, n := range names {
		ids = append(ids, events.DerivedID(orderID, "inventory."+n))
	}
	slices.Sort(ids)
	return ids
}

// sagaBatches is how many times TestSagaOrderIndependence runs rapid's
// -rapid.checks cases (100 by default, 20 with -short), each batch from a
// seed of its own: it is the property PRODUCT's saga section rests on, so
// plain `go test` runs 200 cases of it.
const sagaBatches = 2

// TestSagaOrderIndependence: for every real outcome of an order (confirmed;
// cancelled after reserving, whatever the reason; out of stock), any
// arrival order and any duplication of the saga's inputs, with restocks
// arriving at any point, reach the final state of the in-order run with
// no duplicates — the same stock, every order holding the same — publish
// the same events, and keep the stock invariants after every single input.
//
// Stock is scarce: every unit of the first delivery is needed by the orders
// that reserve, and an out-of-stock order asks for more of a SKU than is
// ever received. That is what decides each order's stock race in advance:
// with stock that leaves some orders to whichever placement comes first,
// the arrival order rightly changes who is served, which no handler can
// (or should) hide; TestDuplicatesChangeNothing covers that case.
//
// The one race the saga allows inventory to see — a cancellation before
// the placement — legitimately ends in the CANCELLED tombstone instead of
// RELEASED or FAILED, publishing nothing for the order: its stock numbers
// are the same, its status is "holds nothing" either way.
func TestSagaOrderIndependence(t *testing.T) {
	dbs := newDBFactory(t)
	var cases, cancelFirst, confirmFirst, dups atomic.Int64
	for batch := range sagaBatches {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				cases.Add(1)
				orders := genOrders(rt, 6, confirmedOutcome, cancelledOutcome, outOfStockOutcome)
				extra := genRestocks(rt, 3)

				// The first delivery covers the orders that reserve, exactly.
				demand := map[string]int64{}
				for _, o := range orders {
					if o.outcome != outOfStockOutcome {
						for _, l := range o.lines {
							demand[l.SKU] += l.Quantity
						}
					}
				}
				var base []sagaRestock
				received := maps.Clone(demand)
				for _, sku := range slices.Sorted(maps.Keys(demand)) {
					base = append(base, sagaRestock{id: "base-" + sku, sku: sku, qty: demand[sku]})
				}
				for _, r := range extra {
					received[r.sku] += r.qty
				}
				// An out-of-stock order wants more of one of its SKUs than
				// will ever be received.
				for i, o := range orders {
					if o.outcome == outOfStockOutcome {
						short := rapid.IntRange(0, len(o.lines)-1).Draw(rt, fmt.Sprintf("order%d.short", i))
						orders[i].lines[short].Quantity = received[o.lines[short].SKU] + rapid.Int64Range(1, 2).Draw(rt, "excess")
					}
				}

				byID := map[string]sagaOrder{}
				for _, o := range orders {
					byID[o.id] = o
				}
				check := func(h *harness, d *delivered) {
					res := checkConservation(rt, t, h, d)
					for id := range d.seen {
						if got, want := res[id].Status, wantStatus(byID[id], d); got != want {
							rt.Fatalf("order %s (outcome %d) after inputs %+v: status %s, want %s", id, byID[id].outcome, d.seen[id], got, want)
						}
					}
				}

				// The reference run is checked once, at its end: checking
				// each step of both runs would only add time.
				inOrder := append(restockInputs(base), restockInputs(extra)...)
				inOrder = append(inOrder, orderInputs(orders)...)
				ref, refD := run(rt, t, dbs, inOrder, func(*harness, *delivered) {})
				check(ref, refD)

				// The permuted run: the first delivery first (see above),
				// everything else in any order, anything repeated.
				seq := append(restockInputs(base), shuffleWithDuplicates(rt, "seq", append(restockInputs(extra), orderInputs(orders)...), restockInputs(base)...)...)
				got, gotD := run(rt, t, dbs, seq, check)
				if len(seq) > len(firstOccurrences(seq)) {
					dups.Add(1)
				}
				if slices.Contains(slices.Collect(maps.Values(gotD.cancelFirst)), true) {
					cancelFirst.Add(1)
				}
				if slices.Contains(slices.Collect(maps.Values(gotD.confirmFirst)), true) {
					confirmFirst.Add(1)
				}

				// Same stock, nothing left reserved.
				refStock, gotStock := allStock(t, ref.store), allStock(t, got.store)
				if !reflect.DeepEqual(gotStock, refStock) {
					rt.Fatalf("final stock %+v, in order %+v", gotStock, refStock)
				}
				for _, st := range gotStock {
					if st.Reserved != 0 {
						rt.Fatalf("%s: %d left reserved once every order is final", st.SKU, st.Reserved)
					}
				}
				// Same statuses, modulo "holds nothing".
				refRes, gotRes := reservations(t, ref), reservations(t, got)
				for _, o := range orders {
					r, g := refRes[o.id].Status, gotRes[o.id].Status
					if r != g && !(holdsNothing(r) && holdsNothing(g)) {
						rt.Fatalf("order %s: %s, in order %s", o.id, g, r)
					}
				}
				// Same events: what the in-order run publishes per outcome,
				// nothing for an order whose cancellation came first.
				refEvents, gotEvents := eventsByKey(rt, t, ref.db), eventsByKey(rt, t, got.db)
				for _, o := range orders {
					var want []string
					switch o.outcome {
					case confirmedOutcome:
						want = orderEventIDs(o.id, catalog.EventReserved, catalog.EventCommitted)
					case cancelledOutcome:
						want = orderEventIDs(o.id, catalog.EventReserved, catalog.EventReleased)
					case outOfStockOutcome:
						want = orderEventIDs(o.id, catalog.EventReservationFailed)
					}
					if refD.cancelFirst[o.id] {
						rt.Fatalf("in-order run cancelled %s before placing it", o.id)
					}
					if !slices.Equal(refEvents[o.id], want) {
						rt.Fatalf("in order, order %s published %v, want %v", o.id, refEvents[o.id], want)
					}
					if gotD.cancelFirst[o.id] {
						want = nil
					}
					if !slices.Equal(gotEvents[o.id], want) {
						rt.Fatalf("order %s published %v, want %v (cancelled first: %v)", o.id, gotEvents[o.id], want, gotD.cancelFirst[o.id])
					}
					delete(refEvents, o.id)
					delete(gotEvents, o.id)
				}
				// What is left are the restocks.
				if !reflect.DeepEqual(gotEvents, refEvents) {
					rt.Fatalf("restock events %v, in order %v", gotEvents, refEvents)
				}
			})
		})
	}
	t.Logf("%d cases: %d with duplicates, %d with a cancellation before its placement, %d with a confirmation before its placement",
		cases.Load(), dups.Load(), cancelFirst.Load(), confirmFirst.Load())
}

// TestDuplicatesChangeNothing: with stock too scarce for every order the
// arrival order decides which orders are served, but duplicates never
// matter: a sequence with duplicates ends exactly where the same sequence
// without them does — stock, reservations, events — and the invariants
// hold after every input.
func TestDuplicatesChangeNothing(t *testing.T) {
	dbs := newDBFactory(t)
	rapid.Check(t, func(rt *rapid.T) {
		orders := genOrders(rt, 5, pendingOutcome, confirmedOutcome, cancelledOutcome)
		restocks := genRestocks(rt, 5)
		seq := shuffleWithDuplicates(rt, "seq", append(restockInputs(restocks), orderInputs(orders)...))

		check := func(h *harness, d *delivered) { checkConservation(rt, t, h, d) }
		withDups, d := run(rt, t, dbs, seq, check)
		without, _ := run(rt, t, dbs, firstOccurrences(seq), func(*harness, *delivered) {})

		if a, b := allStock(t, withDups.store), allStock(t, without.store); !reflect.DeepEqual(a, b) {
			rt.Fatalf("final stock with duplicates %+v, without %+v", a, b)
		}
		resA, resB := reservations(t, withDups), reservations(t, without)
		if !reflect.DeepEqual(resA, resB) {
			rt.Fatalf("reservations with duplicates %+v, without %+v", resA, resB)
		}
		evA, evB := eventsByKey(rt, t, withDups.db), eventsByKey(rt, t, without.db)
		if !reflect.DeepEqual(evA, evB) {
			rt.Fatalf("published with duplicates %v, without %v", evA, evB)
		}
		// Every order placed before it was cancelled is decided exactly
		// once, one way or the other; a reservation ends at most once; a
		// cancelled order holds nothing.
		for _, o := range orders {
			has := func(name string) bool { return slices.Contains(evA[o.id], events.DerivedID(o.id, "inventory."+name)) }
			reserved, failed := has(catalog.EventReserved), has(catalog.EventReservationFailed)
			if d.cancelFirst[o.id] {
				if len(evA[o.id]) != 0 {
					rt.Fatalf("order %s cancelled before placed published %v", o.id, evA[o.id])
				}
			} else if reserved == failed {
				rt.Fatalf("order %s: reserved published %v, failed published %v; want exactly one", o.id, reserved, failed)
			}
			committed, released := has(catalog.EventCommitted), has(catalog.EventReleased)
			if committed && released || (committed || released) && !reserved {
				rt.Fatalf("order %s published %v", o.id, evA[o.id])
			}
			st := resA[o.id].Status
			switch o.outcome {
			case cancelledOutcome:
				if !holdsNothing(st) || reserved != released {
					rt.Fatalf("cancelled order %s is %s, published %v", o.id, st, evA[o.id])
				}
			case confirmedOutcome:
				if st != inventory.Committed && st != inventory.Failed {
					rt.Fatalf("confirmed order %s is %s", o.id, st)
				}
			}
		}
	})
}
