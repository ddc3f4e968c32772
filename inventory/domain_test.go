package inventory_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/inventory"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// stockOf builds a stock map from "sku → available" with nothing reserved
// or sold.
func stockOf(available map[string]int64) map[string]*inventory.Stock {
	m := map[string]*inventory.Stock{}
	for sku, n := range available {
		m[sku] = &inventory.Stock{SKU: sku, Available: n}
	}
	return m
}

func line(sku string, q int64) catalog.StockLine { return catalog.StockLine{SKU: sku, Quantity: q} }

func TestRestock(t *testing.T) {
	tests := []struct {
		name     string
		stock    inventory.Stock
		cmd      catalog.Restock
		want     inventory.Stock
		wantKind events.Kind // KindTransient means no error
	}{
		{
			name:  "NewSKU",
			stock: inventory.Stock{SKU: "A"},
			cmd:   catalog.Restock{SKU: "A", Quantity: 5},
			want:  inventory.Stock{SKU: "A", Available: 5},
		},
		{
			name:  "AddsToAvailableOnly",
			stock: inventory.Stock{SKU: "A", Available: 1, Reserved: 2, Sold: 3},
			cmd:   catalog.Restock{SKU: "A", Quantity: 4},
			want:  inventory.Stock{SKU: "A", Available: 5, Reserved: 2, Sold: 3},
		},
		{
			name:     "ZeroQuantityIsPermanent",
			stock:    inventory.Stock{SKU: "A", Available: 1},
			cmd:      catalog.Restock{SKU: "A", Quantity: 0},
			want:     inventory.Stock{SKU: "A", Available: 1},
			wantKind: events.KindPermanent,
		},
		{
			name:     "NegativeQuantityIsPermanent",
			stock:    inventory.Stock{SKU: "A", Available: 1},
			cmd:      catalog.Restock{SKU: "A", Quantity: -3},
			want:     inventory.Stock{SKU: "A", Available: 1},
			wantKind: events.KindPermanent,
		},
		{
			name:     "OtherSKUIsPermanent",
			stock:    inventory.Stock{SKU: "A"},
			cmd:      catalog.Restock{SKU: "B", Quantity: 1},
			want:     inventory.Stock{SKU: "A"},
			wantKind: events.KindPermanent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.stock
			out, err := st.Restock(tt.cmd, "cmd.inventory.restock:r-1", t0)
			if st != tt.want {
				t.Errorf("stock = %+v, want %+v", st, tt.want)
			}
			if tt.wantKind != events.KindTransient {
				if err == nil || events.KindOf(err) != tt.wantKind {
					t.Fatalf("err = %v (kind %v), want kind %v", err, events.KindOf(err), tt.wantKind)
				}
				if len(out) != 0 {
					t.Errorf("events = %v, want none", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("Restock: %v", err)
			}
			if len(out) != 1 {
				t.Fatalf("got %d events, want 1", len(out))
			}
			e := out[0]
			if e.Type != catalog.TypeStockRestocked || e.Subject != "inventory.restocked.A" ||
				e.ID != events.DerivedID("cmd.inventory.restock:r-1", "inventory.restocked") {
				t.Errorf("event = %s %s %s", e.ID, e.Type, e.Subject)
			}
			if got, want := e.Data, (catalog.StockRestocked{SKU: "A", Quantity: tt.cmd.Quantity, Available: tt.want.Available}); got != want {
				t.Errorf("data = %+v, want %+v", got, want)
			}
		})
	}
}

func TestRestockWithoutCauseGetsFreshIDs(t *testing.T) {
	st := inventory.Stock{SKU: "A"}
	a, err := st.Restock(catalog.Restock{SKU: "A", Quantity: 1}, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Restock(catalog.Restock{SKU: "A", Quantity: 1}, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	if a[0].ID == b[0].ID {
		t.Errorf("two restocks without a key share event id %s", a[0].ID)
	}
}

func TestLinesMergesPerSKU(t *testing.T) {
	got := inventory.Lines([]catalog.LineItem{
		{SKU: "B", Quantity: 1}, {SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 3},
	})
	want := []catalog.StockLine{line("A", 2), line("B", 4)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Lines = %v, want %v", got, want)
	}
}

func TestReserve(t *testing.T) {
	tests := []struct {
		name          string
		available     map[string]int64
		lines         []catalog.StockLine
		wantStatus    inventory.ReservationStatus
		wantAvailable map[string]int64
		wantReserved  map[string]int64
		wantShortages []catalog.Shortage
	}{
		{
			name:          "AllAvailable",
			available:     map[string]int64{"A": 5, "B": 2},
			lines:         []catalog.StockLine{line("A", 2), line("B", 2)},
			wantStatus:    inventory.Reserved,
			wantAvailable: map[string]int64{"A": 3, "B": 0},
			wantReserved:  map[string]int64{"A": 2, "B": 2},
		},
		{
			name:          "LastUnit",
			available:     map[string]int64{"A": 1},
			lines:         []catalog.StockLine{line("A", 1)},
			wantStatus:    inventory.Reserved,
			wantAvailable: map[string]int64{"A": 0},
			wantReserved:  map[string]int64{"A": 1},
		},
		{
			name:          "OneLineShortReservesNothing",
			available:     map[string]int64{"A": 5, "B": 1},
			lines:         []catalog.StockLine{line("A", 2), line("B", 2)},
			wantStatus:    inventory.Failed,
			wantAvailable: map[string]int64{"A": 5, "B": 1},
			wantReserved:  map[string]int64{"A": 0, "B": 0},
			wantShortages: []catalog.Shortage{{SKU: "B", Requested: 2, Available: 1}},
		},
		{
			name:          "UnknownSKUCountsAsZero",
			available:     map[string]int64{"A": 5},
			lines:         []catalog.StockLine{line("A", 1), line("Z", 1)},
			wantStatus:    inventory.Failed,
			wantAvailable: map[string]int64{"A": 5},
			wantReserved:  map[string]int64{"A": 0},
			wantShortages: []catalog.Shortage{{SKU: "Z", Requested: 1, Available: 0}},
		},
		{
			name:          "EveryShortLineReported",
			available:     map[string]int64{"A": 0, "B": 1},
			lines:         []catalog.StockLine{line("A", 1), line("B", 3)},
			wantStatus:    inventory.Failed,
			wantAvailable: map[string]int64{"A": 0, "B": 1},
			wantReserved:  map[string]int64{"A": 0, "B": 0},
			wantShortages: []catalog.Shortage{{SKU: "A", Requested: 1, Available: 0}, {SKU: "B", Requested: 3, Available: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock := stockOf(tt.available)
			res, out, err := inventory.Reserve("o-1", tt.lines, stock, t0)
			if err != nil {
				t.Fatalf("Reserve: %v", err)
			}
			if res.Status != tt.wantStatus || res.OrderID != "o-1" || !reflect.DeepEqual(res.Lines, tt.lines) {
				t.Errorf("reservation = %+v, want %s with lines %v", res, tt.wantStatus, tt.lines)
			}
			if !reflect.DeepEqual(res.Shortages, tt.wantShortages) {
				t.Errorf("shortages = %v, want %v", res.Shortages, tt.wantShortages)
			}
			for sku, want := range tt.wantAvailable {
				if got := stock[sku].Available; got != want {
					t.Errorf("%s available = %d, want %d", sku, got, want)
				}
				if got := stock[sku].Reserved; got != tt.wantReserved[sku] {
					t.Errorf("%s reserved = %d, want %d", sku, got, tt.wantReserved[sku])
				}
			}
			if len(out) != 1 {
				t.Fatalf("got %d events, want 1", len(out))
			}
			e := out[0]
			switch tt.wantStatus {
			case inventory.Reserved:
				want := events.Outgoing{
					ID: events.DerivedID("o-1", "inventory.reserved"), Subject: "inventory.reserved.o-1",
					Type: catalog.TypeStockReserved, Data: catalog.StockReserved{OrderID: "o-1", Items: tt.lines},
				}
				if e.ID != want.ID || e.Subject != want.Subject || e.Type != want.Type || !reflect.DeepEqual(e.Data, want.Data) {
					t.Errorf("event = %+v, want %+v", e, want)
				}
			case inventory.Failed:
				want := events.Outgoing{
					ID: events.DerivedID("o-1", "inventory.reservation_failed"), Subject: "inventory.reservation_failed.o-1",
					Type: catalog.TypeStockReservationFailed,
					Data: catalog.StockReservationFailed{OrderID: "o-1", Reason: catalog.ReasonOutOfStock, Shortages: tt.wantShortages},
				}
				if e.ID != want.ID || e.Subject != want.Subject || e.Type != want.Type || !reflect.DeepEqual(e.Data, want.Data) {
					t.Errorf("event = %+v, want %+v", e, want)
				}
			}
			if e.Source != catalog.Source(catalog.Inventory) {
				t.Errorf("source = %q", e.Source)
			}
		})
	}
}

func TestReserveRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		orderID string
		lines   []catalog.StockLine
	}{
		{"NoLines", "o-1", nil},
		{"ZeroQuantity", "o-1", []catalog.StockLine{line("A", 0)}},
		{"NegativeQuantity", "o-1", []catalog.StockLine{line("A", -1)}},
		{"RepeatedSKU", "o-1", []catalog.StockLine{line("A", 1), line("A", 1)}},
		{"BadSKU", "o-1", []catalog.StockLine{line("A.B", 1)}},
		{"BadOrderID", "o.1", []catalog.StockLine{line("A", 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock := stockOf(map[string]int64{"A": 10})
			res, out, err := inventory.Reserve(tt.orderID, tt.lines, stock, t0)
			if !events.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent error", err)
			}
			if res != nil || out != nil {
				t.Errorf("got %+v, %v; want nothing", res, out)
			}
			if stock["A"].Available != 10 || stock["A"].Reserved != 0 {
				t.Errorf("stock changed: %+v", *stock["A"])
			}
		})
	}
}

func TestCommit(t *testing.T) {
	lines := []catalog.StockLine{line("A", 2), line("B", 1)}
	tests := []struct {
		name       string
		status     inventory.ReservationStatus
		stock      map[string]inventory.Stock
		wantStatus inventory.ReservationStatus
		wantStock  map[string]inventory.Stock
		wantEvent  bool
		wantErr    error
	}{
		{
			name:       "ReservedBecomesCommitted",
			status:     inventory.Reserved,
			stock:      map[string]inventory.Stock{"A": {SKU: "A", Available: 1, Reserved: 2}, "B": {SKU: "B", Reserved: 3}},
			wantStatus: inventory.Committed,
			wantStock:  map[string]inventory.Stock{"A": {SKU: "A", Available: 1, Sold: 2}, "B": {SKU: "B", Reserved: 2, Sold: 1}},
			wantEvent:  true,
		},
		{
			name:       "CommittedIsNoop",
			status:     inventory.Committed,
			stock:      map[string]inventory.Stock{"A": {SKU: "A", Sold: 2}, "B": {SKU: "B", Sold: 1}},
			wantStatus: inventory.Committed,
			wantStock:  map[string]inventory.Stock{"A": {SKU: "A", Sold: 2}, "B": {SKU: "B", Sold: 1}},
		},
		{
			name:       "FailedIsNoop",
			status:     inventory.Failed,
			stock:      map[string]inventory.Stock{"A": {SKU: "A", Available: 1}, "B": {SKU: "B"}},
			wantStatus: inventory.Failed,
			wantStock:  map[string]inventory.Stock{"A": {SKU: "A", Available: 1}, "B": {SKU: "B"}},
		},
		{
			name:       "ReservedCountTooSmallIsInconsistent",
			status:     inventory.Reserved,
			stock:      map[string]inventory.Stock{"A": {SKU: "A", Reserved: 2}, "B": {SKU: "B"}},
			wantStatus: inventory.Reserved,
			wantStock:  map[string]inventory.Stock{"A": {SKU: "A", Reserved: 2}, "B": {SKU: "B"}},
			wantErr:    inventory.ErrInconsistent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock := map[string]*inventory.Stock{}
			for sku, st := range tt.stock {
				stock[sku] = &st
			}
			res := &inventory.Reservation{OrderID: "o-1", Status: tt.status, Lines: lines}
			out, err := res.Commit(stock, t0)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !events.IsPermanent(err) {
					t.Fatalf("err = %v, want permanent %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if res.Status != tt.wantStatus {
				t.Errorf("status = %s, want %s", res.Status, tt.wantStatus)
			}
			for sku, want := range tt.wantStock {
				if got := *stock[sku]; got != want {
					t.Errorf("stock %s = %+v, want %+v", sku, got, want)
				}
			}
			if !tt.wantEvent {
				if len(out) != 0 {
					t.Errorf("events = %v, want none", out)
				}
				return
			}
			if len(out) != 1 {
				t.Fatalf("got %d events, want 1", len(out))
			}
			e := out[0]
			if e.ID != events.DerivedID("o-1", "inventory.committed") || e.Subject != "inventory.committed.o-1" ||
				e.Type != catalog.TypeReservationCommitted ||
				!reflect.DeepEqual(e.Data, catalog.ReservationCommitted{OrderID: "o-1", Items: lines}) {
				t.Errorf("event = %+v", e)
			}
		})
	}
}

func TestStockValidate(t *testing.T) {
	if err := (inventory.Stock{SKU: "A", Available: 1}).Validate(); err != nil {
		t.Errorf("valid stock: %v", err)
	}
	for _, st := range []inventory.Stock{
		{SKU: "A", Available: -1}, {SKU: "A", Reserved: -1}, {SKU: "A", Sold: -1},
	} {
		if err := st.Validate(); !errors.Is(err, inventory.ErrNegativeStock) {
			t.Errorf("%+v: err = %v, want ErrNegativeStock", st, err)
		}
	}
}

// resv builds a reservation of o-1 for the transition tables.
func resv(status inventory.ReservationStatus, seen inventory.Inputs, lines ...catalog.StockLine) *inventory.Reservation {
	return &inventory.Reservation{OrderID: "o-1", Status: status, Seen: seen, Lines: lines, CreatedAt: t0, UpdatedAt: t0}
}

// TestTransitions drives OnPlaced, OnConfirmed and OnCancelled from every
// state a reservation can be in. Inputs seen are abbreviated P, C and X.
func TestTransitions(t *testing.T) {
	var (
		lines = []catalog.StockLine{line("A", 2), line("B", 1)}
		P     = inventory.Inputs{Placed: true}
		C     = inventory.Inputs{Confirmed: true}
		X     = inventory.Inputs{Cancelled: true}
		PC    = inventory.Inputs{Placed: true, Confirmed: true}
		PX    = inventory.Inputs{Placed: true, Cancelled: true}
		CX    = inventory.Inputs{Confirmed: true, Cancelled: true}
		PCX   = inventory.Inputs{Placed: true, Confirmed: true, Cancelled: true}

		// free has room for the order; short lacks one unit of B; held is
		// free after the order reserved; sold is free after it committed.
		free  = map[string]inventory.Stock{"A": {SKU: "A", Available: 5}, "B": {SKU: "B", Available: 1}}
		short = map[string]inventory.Stock{"A": {SKU: "A", Available: 5}, "B": {SKU: "B"}}
		held  = map[string]inventory.Stock{"A": {SKU: "A", Available: 3, Reserved: 2}, "B": {SKU: "B", Reserved: 1}}
		sold  = map[string]inventory.Stock{"A": {SKU: "A", Available: 3, Sold: 2}, "B": {SKU: "B", Sold: 1}}
	)
	const (
		placed    = "placed"
		confirmed = "confirmed"
		cancelled = "cancelled"
	)
	tests := []struct {
		name        string
		start       *inventory.Reservation // nil: no event of the order seen yet
		stock       map[string]inventory.Stock
		input       string
		unchanged   bool // the transition returns no reservation to save
		wantStatus  inventory.ReservationStatus
		wantSeen    inventory.Inputs
		wantLines   []catalog.StockLine
		wantStock   map[string]inventory.Stock
		wantEvents  []string // event names, in order
		wantAnomaly bool
	}{
		// orders.placed
		{name: "PlacedFirstReserves", stock: free, input: placed,
			wantStatus: inventory.Reserved, wantSeen: P, wantLines: lines, wantStock: held, wantEvents: []string{"reserved"}},
		{name: "PlacedFirstShortFails", stock: short, input: placed,
			wantStatus: inventory.Failed, wantSeen: P, wantLines: lines, wantStock: short, wantEvents: []string{"reservation_failed"}},
		{name: "PlacedAfterConfirmedReservesAndCommits", start: resv(inventory.AwaitingPlacement, C), stock: free, input: placed,
			wantStatus: inventory.Committed, wantSeen: PC, wantLines: lines, wantStock: sold, wantEvents: []string{"reserved", "committed"}},
		{name: "PlacedAfterConfirmedShortFails", start: resv(inventory.AwaitingPlacement, C), stock: short, input: placed,
			wantStatus: inventory.Failed, wantSeen: PC, wantLines: lines, wantStock: short, wantEvents: []string{"reservation_failed"}, wantAnomaly: true},
		{name: "PlacedAfterCancelledReservesNothing", start: resv(inventory.Cancelled, X), stock: free, input: placed,
			wantStatus: inventory.Cancelled, wantSeen: PX, wantLines: lines, wantStock: free},
		{name: "PlacedAfterConfirmedAndCancelledReservesNothing", start: resv(inventory.Cancelled, CX), stock: free, input: placed,
			wantStatus: inventory.Cancelled, wantSeen: PCX, wantLines: lines, wantStock: free, wantAnomaly: true},
		{name: "PlacedAgainOnReservedIsNoop", start: resv(inventory.Reserved, P, lines...), stock: held, input: placed, unchanged: true, wantStock: held},
		{name: "PlacedAgainOnFailedIsNoopEvenWithStockNow", start: resv(inventory.Failed, P, lines...), stock: free, input: placed, unchanged: true, wantStock: free},
		{name: "PlacedAgainOnCommittedIsNoop", start: resv(inventory.Committed, PC, lines...), stock: sold, input: placed, unchanged: true, wantStock: sold},
		{name: "PlacedAgainOnReleasedIsNoop", start: resv(inventory.Released, PX, lines...), stock: free, input: placed, unchanged: true, wantStock: free},
		{name: "PlacedAgainOnTombstoneIsNoop", start: resv(inventory.Cancelled, PX, lines...), stock: free, input: placed, unchanged: true, wantStock: free},

		// orders.confirmed
		{name: "ConfirmedFirstIsRemembered", stock: free, input: confirmed,
			wantStatus: inventory.AwaitingPlacement, wantSeen: C, wantStock: free},
		{name: "ConfirmedCommitsReserved", start: resv(inventory.Reserved, P, lines...), stock: held, input: confirmed,
			wantStatus: inventory.Committed, wantSeen: PC, wantLines: lines, wantStock: sold, wantEvents: []string{"committed"}},
		{name: "ConfirmedAgainWhileAwaitingIsNoop", start: resv(inventory.AwaitingPlacement, C), stock: free, input: confirmed, unchanged: true, wantStock: free},
		{name: "ConfirmedAgainOnCommittedIsNoop", start: resv(inventory.Committed, PC, lines...), stock: sold, input: confirmed, unchanged: true, wantStock: sold},
		{name: "ConfirmedOnFailedIsRecordedOnly", start: resv(inventory.Failed, P, lines...), stock: free, input: confirmed,
			wantStatus: inventory.Failed, wantSeen: PC, wantLines: lines, wantStock: free, wantAnomaly: true},
		{name: "ConfirmedOnReleasedIsRecordedOnly", start: resv(inventory.Released, PX, lines...), stock: free, input: confirmed,
			wantStatus: inventory.Released, wantSeen: PCX, wantLines: lines, wantStock: free, wantAnomaly: true},
		{name: "ConfirmedOnTombstoneIsRecordedOnly", start: resv(inventory.Cancelled, X), stock: free, input: confirmed,
			wantStatus: inventory.Cancelled, wantSeen: CX, wantStock: free, wantAnomaly: true},

		// orders.cancelled
		{name: "CancelledFirstLeavesTombstone", stock: free, input: cancelled,
			wantStatus: inventory.Cancelled, wantSeen: X, wantStock: free},
		{name: "CancelledReleasesReserved", start: resv(inventory.Reserved, P, lines...), stock: held, input: cancelled,
			wantStatus: inventory.Released, wantSeen: PX, wantLines: lines, wantStock: free, wantEvents: []string{"released"}},
		{name: "CancelledWhileAwaitingLeavesTombstone", start: resv(inventory.AwaitingPlacement, C), stock: free, input: cancelled,
			wantStatus: inventory.Cancelled, wantSeen: CX, wantStock: free, wantAnomaly: true},
		{name: "CancelledOnFailedIsRecordedOnly", start: resv(inventory.Failed, P, lines...), stock: short, input: cancelled,
			wantStatus: inventory.Failed, wantSeen: PX, wantLines: lines, wantStock: short},
		{name: "CancelledOnCommittedStaysSold", start: resv(inventory.Committed, PC, lines...), stock: sold, input: cancelled,
			wantStatus: inventory.Committed, wantSeen: PCX, wantLines: lines, wantStock: sold, wantAnomaly: true},
		{name: "CancelledAgainOnReleasedIsNoop", start: resv(inventory.Released, PX, lines...), stock: free, input: cancelled, unchanged: true, wantStock: free},
		{name: "CancelledAgainOnTombstoneIsNoop", start: resv(inventory.Cancelled, X), stock: free, input: cancelled, unchanged: true, wantStock: free},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock := map[string]*inventory.Stock{}
			for sku, st := range tt.stock {
				stock[sku] = &st
			}
			var start inventory.Reservation
			if tt.start != nil {
				start = *tt.start
			}
			now := t0.Add(time.Minute)
			var (
				next *inventory.Reservation
				out  []events.Outgoing
				err  error
			)
			switch tt.input {
			case placed:
				next, out, err = inventory.OnPlaced(tt.start, "o-1", lines, stock, now)
			case confirmed:
				next, out, err = inventory.OnConfirmed(tt.start, "o-1", stock, now)
			case cancelled:
				next, out, err = inventory.OnCancelled(tt.start, "o-1", stock, now)
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.input, err)
			}
			for sku, want := range tt.wantStock {
				if got := *stock[sku]; got != want {
					t.Errorf("stock %s = %+v, want %+v", sku, got, want)
				}
			}
			var names []string
			for _, e := range out {
				name, _, _ := strings.Cut(strings.TrimPrefix(e.Subject, "inventory."), ".")
				names = append(names, name)
				if e.ID != events.DerivedID("o-1", "inventory."+name) || e.Subject != "inventory."+name+".o-1" {
					t.Errorf("event %s: id %s, subject %s", name, e.ID, e.Subject)
				}
			}
			if !slices.Equal(names, tt.wantEvents) {
				t.Errorf("events = %v, want %v", names, tt.wantEvents)
			}
			if tt.unchanged {
				if next != nil {
					t.Errorf("reservation = %+v, want no change", next)
				}
				if !reflect.DeepEqual(*tt.start, start) {
					t.Errorf("start changed to %+v", *tt.start)
				}
				return
			}
			if next == nil {
				t.Fatal("no reservation returned, want one to save")
			}
			if next.OrderID != "o-1" || next.Status != tt.wantStatus || next.Seen != tt.wantSeen || !reflect.DeepEqual(next.Lines, tt.wantLines) {
				t.Errorf("reservation = %+v, want %s, seen %+v, lines %v", *next, tt.wantStatus, tt.wantSeen, tt.wantLines)
			}
			if err := next.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if !next.UpdatedAt.Equal(now) {
				t.Errorf("updated at %v, want %v", next.UpdatedAt, now)
			}
			if tt.start != nil && !next.CreatedAt.Equal(t0) {
				t.Errorf("created at %v, want %v: a transition keeps it", next.CreatedAt, t0)
			}
			if got := next.Anomaly() != ""; got != tt.wantAnomaly {
				t.Errorf("anomaly %q, want one: %v", next.Anomaly(), tt.wantAnomaly)
			}
		})
	}
}

func TestReleaseEvent(t *testing.T) {
	lines := []catalog.StockLine{line("A", 2), line("B", 1)}
	stock := map[string]*inventory.Stock{"A": {SKU: "A", Reserved: 2}, "B": {SKU: "B", Available: 4, Reserved: 1}}
	res := resv(inventory.Reserved, inventory.Inputs{Placed: true}, lines...)
	out, err := res.Release(stock, t0)
	if err != nil {
		t.Fatalf("Release: %v", err)
	}
	if len(out) != 1 {
		t.Fatalf("got %d events, want 1", len(out))
	}
	e := out[0]
	if e.ID != events.DerivedID("o-1", "inventory.released") || e.Subject != "inventory.released.o-1" ||
		e.Type != catalog.TypeReservationReleased || e.Source != catalog.Source(catalog.Inventory) ||
		!reflect.DeepEqual(e.Data, catalog.ReservationReleased{OrderID: "o-1", Items: lines}) {
		t.Errorf("event = %+v", e)
	}
	if *stock["A"] != (inventory.Stock{SKU: "A", Available: 2}) || *stock["B"] != (inventory.Stock{SKU: "B", Available: 5}) {
		t.Errorf("stock = %+v %+v", *stock["A"], *stock["B"])
	}
}

func TestReleaseInconsistentChangesNothing(t *testing.T) {
	lines := []catalog.StockLine{line("A", 2), line("B", 1)}
	stock := map[string]*inventory.Stock{"A": {SKU: "A", Reserved: 2}, "B": {SKU: "B", Available: 1}}
	res := resv(inventory.Reserved, inventory.Inputs{Placed: true}, lines...)
	out, err := res.Release(stock, t0)
	if !errors.Is(err, inventory.ErrInconsistent) || !events.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent ErrInconsistent", err)
	}
	if out != nil || res.Status != inventory.Reserved || res.Seen.Cancelled {
		t.Errorf("release went ahead: %v, %+v", out, res)
	}
	if *stock["A"] != (inventory.Stock{SKU: "A", Reserved: 2}) || *stock["B"] != (inventory.Stock{SKU: "B", Available: 1}) {
		t.Errorf("stock changed: %+v %+v", *stock["A"], *stock["B"])
	}
}

func TestTransitionsRejectBadInput(t *testing.T) {
	stock := stockOf(map[string]int64{"A": 10})
	for name, run := range map[string]func() (*inventory.Reservation, []events.Outgoing, error){
		"PlacedBadLinesOnTombstone": func() (*inventory.Reservation, []events.Outgoing, error) {
			return inventory.OnPlaced(resv(inventory.Cancelled, inventory.Inputs{Cancelled: true}), "o-1", []catalog.StockLine{line("A.B", 1)}, stock, t0)
		},
		"ConfirmedBadOrderID": func() (*inventory.Reservation, []events.Outgoing, error) {
			return inventory.OnConfirmed(nil, "o.1", stock, t0)
		},
		"CancelledBadOrderID": func() (*inventory.Reservation, []events.Outgoing, error) {
			return inventory.OnCancelled(nil, "", stock, t0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			res, out, err := run()
			if !events.IsPermanent(err) || res != nil || out != nil {
				t.Errorf("got %+v, %v, %v; want a permanent error only", res, out, err)
			}
		})
	}
}

func TestReservationValidate(t *testing.T) {
	valid := []*inventory.Reservation{
		resv(inventory.Reserved, inventory.Inputs{Placed: true}),
		resv(inventory.Committed, inventory.Inputs{Placed: true, Confirmed: true, Cancelled: true}),
		resv(inventory.Failed, inventory.Inputs{Placed: true, Confirmed: true}),
		resv(inventory.Released, inventory.Inputs{Placed: true, Cancelled: true}),
		resv(inventory.AwaitingPlacement, inventory.Inputs{Confirmed: true}),
		resv(inventory.Cancelled, inventory.Inputs{Cancelled: true}),
		resv(inventory.Cancelled, inventory.Inputs{Placed: true, Confirmed: true, Cancelled: true}),
	}
	for _, r := range valid {
		if err := r.Validate(); err != nil {
			t.Errorf("%s %+v: %v", r.Status, r.Seen, err)
		}
	}
	invalid := []*inventory.Reservation{
		resv("", inventory.Inputs{Placed: true}),
		resv("SHIPPED", inventory.Inputs{Placed: true}),
		resv(inventory.Reserved, inventory.Inputs{Placed: true, Confirmed: true}),
		resv(inventory.Reserved, inventory.Inputs{}),
		resv(inventory.Committed, inventory.Inputs{Placed: true}),
		resv(inventory.Failed, inventory.Inputs{Cancelled: true}),
		resv(inventory.Released, inventory.Inputs{Placed: true}),
		resv(inventory.AwaitingPlacement, inventory.Inputs{Placed: true, Confirmed: true}),
		resv(inventory.Cancelled, inventory.Inputs{Placed: true}),
	}
	for _, r := range invalid {
		if err := r.Validate(); !errors.Is(err, inventory.ErrInconsistent) {
			t.Errorf("%s %+v: err = %v, want ErrInconsistent", r.Status, r.Seen, err)
		}
	}
}
