package inventory_test

import (
	"errors"
	"reflect"
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
			out, err := st.Restock(tt.cmd, "cmd.inventory.restock:r-1", t0, "")
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
	a, err := st.Restock(catalog.Restock{SKU: "A", Quantity: 1}, "", t0, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Restock(catalog.Restock{SKU: "A", Quantity: 1}, "", t0, "")
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
			res, out, err := inventory.Reserve("o-1", tt.lines, stock, t0, "")
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
			res, out, err := inventory.Reserve(tt.orderID, tt.lines, stock, t0, "")
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
			out, err := res.Commit(stock, t0, "")
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
