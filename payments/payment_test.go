package payments_test

import (
	"errors"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/payments"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func placedEvent(orderID string) catalog.OrderPlaced {
	return catalog.OrderPlaced{
		OrderID:    orderID,
		CustomerID: "cust-1",
		Items:      []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 600}},
		Total:      catalog.Money{Amount: 1200, Currency: "EUR"},
		PlacedAt:   t0,
	}
}

func TestPaymentTransitions(t *testing.T) {
	const order = "order-1"
	placed := func(p *payments.Payment) error { return p.OnOrderPlaced(placedEvent(order), t0) }
	reserved := func(p *payments.Payment) error {
		return p.OnStockReserved(catalog.StockReserved{OrderID: order}, t0)
	}
	tests := []struct {
		name                   string
		steps                  []func(*payments.Payment) error
		wantStatus             payments.Status
		wantPlaced, wantReserv bool
	}{
		{"New", nil, payments.Waiting, false, false},
		{"PlacedOnly", []func(*payments.Payment) error{placed}, payments.Waiting, true, false},
		{"ReservedOnly", []func(*payments.Payment) error{reserved}, payments.Waiting, false, true},
		{"PlacedThenReserved", []func(*payments.Payment) error{placed, reserved}, payments.CapturePending, true, true},
		{"ReservedThenPlaced", []func(*payments.Payment) error{reserved, placed}, payments.CapturePending, true, true},
		{"PlacedTwice", []func(*payments.Payment) error{placed, placed}, payments.Waiting, true, false},
		{"EverythingTwice", []func(*payments.Payment) error{reserved, placed, reserved, placed}, payments.CapturePending, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := payments.NewPayment(order, t0)
			for i, step := range tt.steps {
				if err := step(p); err != nil {
					t.Fatalf("step %d: got %v, want nil", i, err)
				}
			}
			if p.Status != tt.wantStatus || p.Placed != tt.wantPlaced || p.Reserved != tt.wantReserv {
				t.Errorf("got status %s placed %v reserved %v, want %s %v %v",
					p.Status, p.Placed, p.Reserved, tt.wantStatus, tt.wantPlaced, tt.wantReserv)
			}
			if tt.wantPlaced && (p.Amount != (catalog.Money{Amount: 1200, Currency: "EUR"}) || p.CustomerID != "cust-1") {
				t.Errorf("got amount %s customer %q, want 1200 EUR cust-1", p.Amount, p.CustomerID)
			}
		})
	}
}

func TestPaymentFirstPlacedFixesAmount(t *testing.T) {
	p := payments.NewPayment("order-1", t0)
	if err := p.OnOrderPlaced(placedEvent("order-1"), t0); err != nil {
		t.Fatal(err)
	}
	other := placedEvent("order-1")
	other.Total.Amount = 1
	if err := p.OnOrderPlaced(other, t0); err != nil {
		t.Fatal(err)
	}
	if p.Amount.Amount != 1200 {
		t.Errorf("amount after a second placed event: got %d, want 1200 (the first wins)", p.Amount.Amount)
	}
}

func TestPaymentRejectsBadInput(t *testing.T) {
	tests := []struct {
		name  string
		apply func(p *payments.Payment) error
	}{
		{"PlacedForOtherOrder", func(p *payments.Payment) error { return p.OnOrderPlaced(placedEvent("order-2"), t0) }},
		{"ReservedForOtherOrder", func(p *payments.Payment) error {
			return p.OnStockReserved(catalog.StockReserved{OrderID: "order-2"}, t0)
		}},
		{"NegativeTotal", func(p *payments.Payment) error {
			e := placedEvent("order-1")
			e.Total.Amount = -1
			return p.OnOrderPlaced(e, t0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := payments.NewPayment("order-1", t0)
			before := *p
			err := tt.apply(p)
			if !events.IsPermanent(err) {
				t.Errorf("got %v, want a permanent error", err)
			}
			if *p != before {
				t.Errorf("payment changed on bad input: got %+v, want %+v", *p, before)
			}
		})
	}
}

func TestPaymentOnCaptured(t *testing.T) {
	pending := func() *payments.Payment {
		p := payments.NewPayment("order-1", t0)
		_ = p.OnOrderPlaced(placedEvent("order-1"), t0)
		_ = p.OnStockReserved(catalog.StockReserved{OrderID: "order-1"}, t0)
		return p
	}
	t.Run("PendingCaptures", func(t *testing.T) {
		p := pending()
		out, err := p.OnCaptured(payments.CaptureResult{PaymentID: "pay-1"}, t0, "")
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		if p.Status != payments.Captured || p.PaymentID != "pay-1" {
			t.Errorf("got status %s payment id %q, want CAPTURED pay-1", p.Status, p.PaymentID)
		}
		if len(out) != 1 {
			t.Fatalf("events: got %d, want 1", len(out))
		}
		e := out[0]
		if e.ID != payments.CapturedEventID("order-1") || e.Subject != "payments.captured.order-1" ||
			e.Type != catalog.TypePaymentCaptured || e.Source != catalog.Source(catalog.Payments) {
			t.Errorf("event: got %+v, want id %s on payments.captured.order-1", e, payments.CapturedEventID("order-1"))
		}
		want := catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "pay-1", Amount: catalog.Money{Amount: 1200, Currency: "EUR"}}
		if e.Data != want {
			t.Errorf("data: got %+v, want %+v", e.Data, want)
		}
		if _, ok := events.TraceID(e.TraceParent); !ok {
			t.Errorf("traceparent: got %q, want a valid one", e.TraceParent)
		}
	})
	t.Run("CapturedIsNoop", func(t *testing.T) {
		p := pending()
		if _, err := p.OnCaptured(payments.CaptureResult{PaymentID: "pay-1"}, t0, ""); err != nil {
			t.Fatal(err)
		}
		out, err := p.OnCaptured(payments.CaptureResult{PaymentID: "pay-2"}, t0, "")
		if err != nil || len(out) != 0 || p.PaymentID != "pay-1" {
			t.Errorf("second capture: got %d events, err %v, payment id %q; want none, nil, pay-1", len(out), err, p.PaymentID)
		}
	})
	t.Run("WaitingRefuses", func(t *testing.T) {
		p := payments.NewPayment("order-1", t0)
		out, err := p.OnCaptured(payments.CaptureResult{PaymentID: "pay-1"}, t0, "")
		if !errors.Is(err, payments.ErrNotPending) || len(out) != 0 || p.Status != payments.Waiting {
			t.Errorf("got %d events, err %v, status %s; want none, ErrNotPending, WAITING", len(out), err, p.Status)
		}
	})
	t.Run("NoPaymentID", func(t *testing.T) {
		p := pending()
		if _, err := p.OnCaptured(payments.CaptureResult{}, t0, ""); err == nil || p.Status != payments.CapturePending {
			t.Errorf("got err %v status %s, want an error and CAPTURE_PENDING", err, p.Status)
		}
	})
}

func TestCaptureRequestKeyIsOrderID(t *testing.T) {
	p := payments.NewPayment("order-1", t0)
	_ = p.OnOrderPlaced(placedEvent("order-1"), t0)
	got := p.CaptureRequest()
	want := payments.CaptureRequest{IdempotencyKey: "order-1", OrderID: "order-1", CustomerID: "cust-1",
		Amount: catalog.Money{Amount: 1200, Currency: "EUR"}}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
