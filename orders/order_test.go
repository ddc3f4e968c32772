package orders_test

import (
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/orders"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// validPlace is a command every test starts from: two lines, total
// 2×1299 + 1×500 = 3098 EUR cents.
func validPlace(orderID string) catalog.PlaceOrder {
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

func placed(t *testing.T, orderID string) *orders.Order {
	t.Helper()
	o, _, err := orders.Place(validPlace(orderID), t0)
	if err != nil {
		t.Fatalf("Place(%s): %v", orderID, err)
	}
	return o
}

func TestPlaceRejectsInvalidCommands(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *catalog.PlaceOrder)
		field  string // the error must name it
	}{
		{"NoItems", func(c *catalog.PlaceOrder) { c.Items = nil }, "items"},
		{"EmptyItems", func(c *catalog.PlaceOrder) { c.Items = []catalog.LineItem{} }, "items"},
		{"DuplicatedSKULine", func(c *catalog.PlaceOrder) {
			c.Items = append(c.Items, catalog.LineItem{SKU: "SKU-1", Quantity: 1, UnitPrice: 1299})
		}, `sku "SKU-1"`},
		{"ZeroQuantity", func(c *catalog.PlaceOrder) { c.Items[0].Quantity = 0 }, "quantity"},
		{"NegativeQuantity", func(c *catalog.PlaceOrder) { c.Items[1].Quantity = -3 }, "quantity"},
		{"NegativeUnitPrice", func(c *catalog.PlaceOrder) { c.Items[0].UnitPrice = -1 }, "unit_price"},
		{"MissingSKU", func(c *catalog.PlaceOrder) { c.Items[0].SKU = "" }, "sku"},
		{"SKUWithWildcard", func(c *catalog.PlaceOrder) { c.Items[0].SKU = "SKU.*" }, "sku"},
		{"CurrencyNotISO", func(c *catalog.PlaceOrder) { c.Currency = "EURO" }, "currency"},
		{"CurrencyLowerCase", func(c *catalog.PlaceOrder) { c.Currency = "eur" }, "currency"},
		{"CurrencyTestingCode", func(c *catalog.PlaceOrder) { c.Currency = "XXX" }, "currency"},
		{"CurrencyMissing", func(c *catalog.PlaceOrder) { c.Currency = "" }, "currency"},
		{"MissingCustomer", func(c *catalog.PlaceOrder) { c.CustomerID = "" }, "customer_id"},
		{"MissingOrderID", func(c *catalog.PlaceOrder) { c.OrderID = "" }, "order_id"},
		{"OrderIDWithSubjectSeparator", func(c *catalog.PlaceOrder) { c.OrderID = "a.b" }, "order_id"},
		{"TooManyLines", func(c *catalog.PlaceOrder) {
			c.Items = nil
			for i := range catalog.MaxLineItems + 1 {
				c.Items = append(c.Items, catalog.LineItem{SKU: "SKU-" + string(rune('A'+i%26)) + strings.Repeat("x", i/26), Quantity: 1})
			}
		}, "items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := validPlace("order-1")
			tt.modify(&cmd)
			o, out, err := orders.Place(cmd, t0)
			if err == nil {
				t.Fatalf("Place: got order %+v, want an error naming %q", o, tt.field)
			}
			if !events.IsPermanent(err) || events.KindOf(err) != events.KindPermanent {
				t.Errorf("Place: kind %v, want permanent (a retry cannot fix it): %v", events.KindOf(err), err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Place: error %q does not name %q", err, tt.field)
			}
			if o != nil || len(out) != 0 {
				t.Errorf("Place: got order %v and %d events with the error, want neither", o, len(out))
			}
		})
	}
}

func TestPlaceAcceptsZeroPriceLine(t *testing.T) {
	cmd := validPlace("order-1")
	cmd.Items[1].UnitPrice = 0 // a free gift is a valid line
	o, _, err := orders.Place(cmd, t0)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	if o.Total.Amount != 2598 {
		t.Errorf("total: got %d, want 2598", o.Total.Amount)
	}
}

func TestPlaceEmitsOnePlacedEvent(t *testing.T) {
	const id = "0193a5c2-7c1e-7000-8000-000000000001"
	local := time.Date(2025, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600))
	o, out, err := orders.Place(validPlace(id), local)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}

	want := catalog.Money{Amount: 2*1299 + 500, Currency: "EUR"}
	if o.ID != id || o.CustomerID != "cust-1" || o.Status != orders.Pending || o.Reason != "" || o.Total != want {
		t.Errorf("order: got id=%q customer=%q status=%q reason=%q total=%v, want %q cust-1 PENDING \"\" %v",
			o.ID, o.CustomerID, o.Status, o.Reason, o.Total, id, want)
	}
	if o.StockReserved || o.PaymentID != "" {
		t.Errorf("new order: stock_reserved=%v payment_id=%q, want false and empty", o.StockReserved, o.PaymentID)
	}
	if !o.PlacedAt.Equal(local) || o.PlacedAt.Location() != time.UTC || !o.UpdatedAt.Equal(o.PlacedAt) {
		t.Errorf("times: placed %v updated %v, want both %v in UTC", o.PlacedAt, o.UpdatedAt, local.UTC())
	}

	if len(out) != 1 {
		t.Fatalf("events: got %d, want exactly one orders.placed", len(out))
	}
	e := out[0]
	if wantID := events.DerivedID(id, "orders.placed"); e.ID != wantID {
		t.Errorf("event id: got %q, want %q derived from the order id (a retried place yields the same id)", e.ID, wantID)
	}
	if e.Subject != "orders.placed."+id {
		t.Errorf("subject: got %q, want %q", e.Subject, "orders.placed."+id)
	}
	if e.Type != catalog.TypeOrderPlaced || e.Source != catalog.Source(catalog.Orders) {
		t.Errorf("type/source: got %q %q, want %q %q", e.Type, e.Source, catalog.TypeOrderPlaced, catalog.Source(catalog.Orders))
	}
	data, ok := e.Data.(catalog.OrderPlaced)
	if !ok {
		t.Fatalf("data: got %T, want catalog.OrderPlaced", e.Data)
	}
	if data.OrderID != id || data.CustomerID != "cust-1" || data.Total != want || len(data.Items) != 2 || !data.PlacedAt.Equal(local) {
		t.Errorf("data: got %+v, want order %s, total %v, 2 items", data, id, want)
	}
	if err := data.Validate(); err != nil {
		t.Errorf("data does not validate for consumers: %v", err)
	}

	// The order must not alias the caller's slice.
	cmd := validPlace("order-2")
	o2, _, _ := orders.Place(cmd, t0)
	cmd.Items[0].Quantity = 99
	if o2.Items[0].Quantity != 2 {
		t.Errorf("order items alias the command's slice: quantity became %d", o2.Items[0].Quantity)
	}
}

func TestPlaceEventIDIsStable(t *testing.T) {
	_, a, _ := orders.Place(validPlace("order-1"), t0)
	_, b, _ := orders.Place(validPlace("order-1"), t0.Add(time.Hour))
	_, c, _ := orders.Place(validPlace("order-2"), t0)
	if a[0].ID != b[0].ID {
		t.Errorf("same order placed twice: ids %q and %q, want equal", a[0].ID, b[0].ID)
	}
	if a[0].ID == c[0].ID {
		t.Errorf("different orders share event id %q", a[0].ID)
	}
}

func TestOnPaymentCaptured(t *testing.T) {
	capture := catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1", Amount: catalog.Money{Amount: 3098, Currency: "EUR"}}

	t.Run("ConfirmsPendingOnce", func(t *testing.T) {
		o := placed(t, "order-1")
		later := t0.Add(time.Minute)
		out := o.OnPaymentCaptured(capture, later)
		if o.Status != orders.Confirmed || o.Reason != "" || o.PaymentID != "pay-1" || !o.StockReserved {
			t.Errorf("after capture: status=%q reason=%q payment=%q stock_reserved=%v, want CONFIRMED \"\" pay-1 true",
				o.Status, o.Reason, o.PaymentID, o.StockReserved)
		}
		if !o.UpdatedAt.Equal(later) || !o.PlacedAt.Equal(t0) {
			t.Errorf("times: placed %v updated %v, want %v and %v", o.PlacedAt, o.UpdatedAt, t0, later)
		}
		if len(out) != 1 {
			t.Fatalf("events: got %d, want one orders.confirmed", len(out))
		}
		e := out[0]
		if e.Subject != "orders.confirmed.order-1" || e.Type != catalog.TypeOrderConfirmed || e.ID != events.DerivedID("order-1", "orders.confirmed") {
			t.Errorf("event: got id=%q subject=%q type=%q", e.ID, e.Subject, e.Type)
		}
		data, ok := e.Data.(catalog.OrderConfirmed)
		if !ok || data.OrderID != "order-1" || data.CustomerID != "cust-1" || data.Total != o.Total || len(data.Items) != 2 {
			t.Errorf("data: got %#v", e.Data)
		}

		again := o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-2"}, later.Add(time.Minute))
		if len(again) != 0 {
			t.Errorf("second capture: got %d events, want none", len(again))
		}
		if o.Status != orders.Confirmed || o.PaymentID != "pay-1" || !o.UpdatedAt.Equal(later) {
			t.Errorf("second capture changed the order: status=%q payment=%q updated=%v", o.Status, o.PaymentID, o.UpdatedAt)
		}
	})

	t.Run("AfterCancelChangesNothing", func(t *testing.T) {
		o := placed(t, "order-1")
		o.OnStockReservationFailed(catalog.StockReservationFailed{OrderID: "order-1"}, t0.Add(time.Minute))
		before := *o
		out := o.OnPaymentCaptured(capture, t0.Add(2*time.Minute))
		if len(out) != 0 {
			t.Errorf("capture after cancel: got %d events, want none (refunding is payments' job)", len(out))
		}
		if o.Status != orders.Cancelled || o.Reason != catalog.ReasonOutOfStock || o.PaymentID != "" || !o.UpdatedAt.Equal(before.UpdatedAt) {
			t.Errorf("capture after cancel changed the order: status=%q reason=%q payment=%q updated=%v",
				o.Status, o.Reason, o.PaymentID, o.UpdatedAt)
		}
	})
}

func TestOnStockReservationFailed(t *testing.T) {
	failed := catalog.StockReservationFailed{OrderID: "order-1", Reason: "short", Shortages: []catalog.Shortage{{SKU: "SKU-1", Requested: 2}}}

	t.Run("CancelsPendingAsOutOfStock", func(t *testing.T) {
		o := placed(t, "order-1")
		out := o.OnStockReservationFailed(failed, t0.Add(time.Minute))
		if o.Status != orders.Cancelled || o.Reason != catalog.ReasonOutOfStock {
			t.Errorf("status/reason: got %q %q, want CANCELLED out_of_stock", o.Status, o.Reason)
		}
		if len(out) != 1 {
			t.Fatalf("events: got %d, want one orders.cancelled", len(out))
		}
		e := out[0]
		if e.Subject != "orders.cancelled.order-1" || e.Type != catalog.TypeOrderCancelled || e.ID != events.DerivedID("order-1", "orders.cancelled") {
			t.Errorf("event: got id=%q subject=%q type=%q", e.ID, e.Subject, e.Type)
		}
		data, ok := e.Data.(catalog.OrderCancelled)
		if !ok || data.Reason != catalog.ReasonOutOfStock || data.OrderID != "order-1" || data.Total != o.Total {
			t.Fatalf("data: got %#v", e.Data)
		}
		if err := data.Validate(); err != nil {
			t.Errorf("data does not validate for consumers: %v", err)
		}
		if again := o.OnStockReservationFailed(failed, t0.Add(2*time.Minute)); len(again) != 0 {
			t.Errorf("duplicate failure: got %d events, want none", len(again))
		}
	})

	t.Run("LeavesConfirmedAlone", func(t *testing.T) {
		o := placed(t, "order-1")
		o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1"}, t0)
		if out := o.OnStockReservationFailed(failed, t0.Add(time.Minute)); len(out) != 0 {
			t.Errorf("failure after confirm: got %d events, want none", len(out))
		}
		if o.Status != orders.Confirmed || o.Reason != "" {
			t.Errorf("failure after confirm: status=%q reason=%q, want CONFIRMED and no reason", o.Status, o.Reason)
		}
	})
}

func TestOnStockReserved(t *testing.T) {
	o := placed(t, "order-1")
	if out := o.OnStockReserved(catalog.StockReserved{OrderID: "order-1"}, t0.Add(time.Minute)); len(out) != 0 {
		t.Errorf("reserved: got %d events, want none", len(out))
	}
	if !o.StockReserved || o.Status != orders.Pending {
		t.Errorf("reserved: stock_reserved=%v status=%q, want true PENDING", o.StockReserved, o.Status)
	}
	updated := o.UpdatedAt
	o.OnStockReserved(catalog.StockReserved{OrderID: "order-1"}, t0.Add(time.Hour))
	if !o.UpdatedAt.Equal(updated) {
		t.Errorf("duplicate reserved moved updated_at from %v to %v", updated, o.UpdatedAt)
	}
}

// The inputs of one saga path, in either arrival order and each delivered
// twice, end in the same state with exactly one final event.
func TestTransitionsAreOrderIndependent(t *testing.T) {
	type input func(o *orders.Order) []events.Outgoing
	reserved := func(o *orders.Order) []events.Outgoing {
		return o.OnStockReserved(catalog.StockReserved{OrderID: o.ID}, t0)
	}
	captured := func(o *orders.Order) []events.Outgoing {
		return o.OnPaymentCaptured(catalog.PaymentCaptured{OrderID: o.ID, PaymentID: "pay-1"}, t0)
	}
	failed := func(o *orders.Order) []events.Outgoing {
		return o.OnStockReservationFailed(catalog.StockReservationFailed{OrderID: o.ID}, t0)
	}
	run := func(seq []input) (orders.Status, string, []string) {
		o := placed(t, "order-1")
		var ids []string
		for _, in := range seq {
			for range 2 {
				for _, e := range in(o) {
					ids = append(ids, e.ID)
				}
			}
		}
		return o.Status, o.Reason, ids
	}
	for _, tc := range []struct {
		name   string
		seq    []input
		status orders.Status
	}{
		{"ReservedCaptured", []input{reserved, captured}, orders.Confirmed},
		{"CapturedReserved", []input{captured, reserved}, orders.Confirmed},
		{"Failed", []input{failed}, orders.Cancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, ids := run(tc.seq)
			if status != tc.status {
				t.Errorf("status: got %q, want %q", status, tc.status)
			}
			if len(ids) != 1 {
				t.Errorf("events: got %d (%v), want exactly one final event despite duplicates", len(ids), ids)
			}
		})
	}
}

func TestSameRequest(t *testing.T) {
	o := placed(t, "order-1")
	tests := []struct {
		name   string
		modify func(c *catalog.PlaceOrder)
		same   bool
	}{
		{"Identical", func(*catalog.PlaceOrder) {}, true},
		{"DifferentCommandID", func(c *catalog.PlaceOrder) { c.CommandID = "other" }, true},
		{"DifferentCustomer", func(c *catalog.PlaceOrder) { c.CustomerID = "cust-2" }, false},
		{"DifferentCurrency", func(c *catalog.PlaceOrder) { c.Currency = "USD" }, false},
		{"DifferentQuantity", func(c *catalog.PlaceOrder) { c.Items[0].Quantity = 3 }, false},
		{"DifferentPrice", func(c *catalog.PlaceOrder) { c.Items[1].UnitPrice = 501 }, false},
		{"MissingLine", func(c *catalog.PlaceOrder) { c.Items = c.Items[:1] }, false},
		{"ExtraLine", func(c *catalog.PlaceOrder) {
			c.Items = append(c.Items, catalog.LineItem{SKU: "SKU-3", Quantity: 1, UnitPrice: 1})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := validPlace("order-1")
			tt.modify(&cmd)
			if got := o.SameRequest(cmd); got != tt.same {
				t.Errorf("SameRequest: got %v, want %v", got, tt.same)
			}
		})
	}
}

func TestStatusFinal(t *testing.T) {
	for s, want := range map[orders.Status]bool{orders.Pending: false, orders.Confirmed: true, orders.Cancelled: true} {
		if got := s.Final(); got != want {
			t.Errorf("%s.Final(): got %v, want %v", s, got, want)
		}
	}
}
