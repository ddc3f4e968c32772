package payments_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
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

// step is one input to a payment: an event or a provider's answer.
type step struct {
	name  string
	apply func(p *payments.Payment) ([]events.Outgoing, error)
}

const order = "order-1"

var (
	eur1200 = catalog.Money{Amount: 1200, Currency: "EUR"}

	stepPlaced = step{"placed", func(p *payments.Payment) ([]events.Outgoing, error) {
		return nil, p.OnOrderPlaced(placedEvent(order), t0)
	}}
	stepReserved = step{"reserved", func(p *payments.Payment) ([]events.Outgoing, error) {
		return nil, p.OnStockReserved(catalog.StockReserved{OrderID: order}, t0)
	}}
	stepCancelled = step{"cancelled", func(p *payments.Payment) ([]events.Outgoing, error) {
		e := placedEvent(order)
		return p.OnOrderCancelled(catalog.OrderCancelled{OrderID: order, CustomerID: e.CustomerID,
			Reason: catalog.ReasonCustomerCancelled, Total: e.Total}, t0)
	}}
	stepConfirmed = step{"confirmed", func(p *payments.Payment) ([]events.Outgoing, error) {
		e := placedEvent(order)
		return nil, p.OnOrderConfirmed(catalog.OrderConfirmed{OrderID: order, CustomerID: e.CustomerID, Items: e.Items, Total: e.Total}, t0)
	}}
	stepCharged = step{"charged", func(p *payments.Payment) ([]events.Outgoing, error) {
		return p.OnCaptureResult(payments.CaptureResult{PaymentID: "pay-1"}, t0)
	}}
	stepDeclined = step{"declined", func(p *payments.Payment) ([]events.Outgoing, error) {
		return p.OnCaptureResult(payments.CaptureResult{Declined: true, DeclineReason: "card_declined"}, t0)
	}}
	stepRefunded = step{"refunded", func(p *payments.Payment) ([]events.Outgoing, error) {
		return p.OnCancelResult(payments.CancelResult{Refunded: true, Amount: eur1200}, t0)
	}}
	stepVoided = step{"voided", func(p *payments.Payment) ([]events.Outgoing, error) {
		return p.OnCancelResult(payments.CancelResult{Voided: true}, t0)
	}}
)

// mustPayment returns the payment of order after steps, which must all
// succeed.
func mustPayment(t *testing.T, steps ...step) *payments.Payment {
	t.Helper()
	p := payments.NewPayment(order, t0)
	for _, s := range steps {
		if _, err := s.apply(p); err != nil {
			t.Fatalf("setup step %s: %v", s.name, err)
		}
	}
	return p
}

// TestPaymentTransitions applies every input to a payment in every
// status it can be in (and in WAITING with each partial set of inputs),
// and checks the status, the flags, the event and the money that result.
func TestPaymentTransitions(t *testing.T) {
	starts := []struct {
		name  string
		steps []step
	}{
		{"New", nil},
		{"WaitingPlaced", []step{stepPlaced}},
		{"CapturePending", []step{stepPlaced, stepReserved}},
		{"Captured", []step{stepPlaced, stepReserved, stepCharged}},
		{"Confirmed", []step{stepPlaced, stepReserved, stepCharged, stepConfirmed}},
		{"Declined", []step{stepPlaced, stepReserved, stepDeclined}},
		{"CancelPendingBeforeCharge", []step{stepPlaced, stepReserved, stepCancelled}},
		{"CancelPendingAfterCharge", []step{stepPlaced, stepReserved, stepCharged, stepCancelled}},
		{"Refunded", []step{stepPlaced, stepReserved, stepCharged, stepCancelled, stepRefunded}},
		{"VoidedWhileWaiting", []step{stepPlaced, stepCancelled}},
		{"VoidedWhilePending", []step{stepPlaced, stepReserved, stepCancelled, stepVoided}},
	}
	type want struct {
		status payments.Status
		event  string // the names of the events returned, comma-separated, "" for none
		err    error  // an error it wraps; the payment is then unchanged
	}
	const (
		W  = payments.Waiting
		CP = payments.CapturePending
		C  = payments.Captured
		D  = payments.Declined
		XP = payments.CancelPending
		R  = payments.Refunded
		V  = payments.Voided
	)
	notPending := want{err: payments.ErrNotPending}
	// A reservation of an order not placed waits for it (Transient); a
	// confirmation of a payment not captured, or a cancellation of a
	// confirmed order, is not believed (Permanent).
	notPlaced, notCaptured, confirmed := want{err: payments.ErrNotPlaced}, want{err: payments.ErrNotCaptured}, want{err: payments.ErrConfirmed}
	inputs := []step{stepPlaced, stepReserved, stepCancelled, stepCharged, stepDeclined, stepRefunded, stepVoided, stepConfirmed}
	// One row per start, one column per input, in the order of inputs.
	table := map[string][]want{
		//                           placed    reserved  cancelled         charged           declined          refunded          voided      confirmed
		"New":                       {{W, "", nil}, notPlaced, {V, "voided", nil}, notPending, notPending, notPending, notPending, notCaptured},
		"WaitingPlaced":             {{W, "", nil}, {CP, "", nil}, {V, "voided", nil}, notPending, notPending, notPending, notPending, notCaptured},
		"CapturePending":            {{CP, "", nil}, {CP, "", nil}, {XP, "", nil}, {C, "captured", nil}, {D, "declined", nil}, notPending, notPending, notCaptured},
		"Captured":                  {{C, "", nil}, {C, "", nil}, {XP, "", nil}, {C, "", nil}, {C, "", nil}, notPending, notPending, {C, "", nil}},
		"Confirmed":                 {{C, "", nil}, {C, "", nil}, confirmed, {C, "", nil}, {C, "", nil}, notPending, notPending, {C, "", nil}},
		"Declined":                  {{D, "", nil}, {D, "", nil}, {D, "", nil}, {D, "", nil}, {D, "", nil}, notPending, notPending, notCaptured},
		"CancelPendingBeforeCharge": {{XP, "", nil}, {XP, "", nil}, {XP, "", nil}, {XP, "", nil}, {XP, "", nil}, {R, "captured,refunded", nil}, {V, "voided", nil}, notCaptured},
		"CancelPendingAfterCharge":  {{XP, "", nil}, {XP, "", nil}, {XP, "", nil}, {XP, "", nil}, {XP, "", nil}, {R, "refunded", nil}, {err: payments.ErrProviderAnswer}, notCaptured},
		"Refunded":                  {{R, "", nil}, {R, "", nil}, {R, "", nil}, {R, "", nil}, {R, "", nil}, {R, "", nil}, {R, "", nil}, notCaptured},
		"VoidedWhileWaiting":        {{V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, notCaptured},
		"VoidedWhilePending":        {{V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, {V, "", nil}, notCaptured},
	}
	for _, start := range starts {
		row, ok := table[start.name]
		if !ok || len(row) != len(inputs) {
			t.Fatalf("table row %s: got %d entries, want %d", start.name, len(row), len(inputs))
		}
		for i, in := range inputs {
			w := row[i]
			t.Run(start.name+"/"+in.name, func(t *testing.T) {
				p := mustPayment(t, start.steps...)
				before := *p
				out, err := in.apply(p)
				if w.err != nil {
					if !errors.Is(err, w.err) || len(out) != 0 || *p != before {
						t.Errorf("got err %v, %d events, payment %+v; want %v, none, unchanged", err, len(out), *p, w.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if p.Status != w.status {
					t.Errorf("status: got %s, want %s", p.Status, w.status)
				}
				var names []string
				for _, e := range out {
					names = append(names, strings.Split(e.Subject, ".")[1])
				}
				if wantNames := slices.DeleteFunc(strings.Split(w.event, ","), func(s string) bool { return s == "" }); !slices.Equal(names, wantNames) {
					t.Errorf("events: got %v, want %v", names, wantNames)
				}
				assertInvariants(t, p)
			})
		}
	}
}

// assertInvariants checks what must hold of a payment in any status.
func assertInvariants(t *testing.T, p *payments.Payment) {
	t.Helper()
	if !p.Status.Valid() {
		t.Fatalf("status %q is not valid", p.Status)
	}
	if p.Status != payments.Waiting && p.Status != payments.Voided && !(p.Placed && p.Reserved) {
		t.Errorf("status %s without placed and reserved (placed %v reserved %v)", p.Status, p.Placed, p.Reserved)
	}
	switch p.Status {
	case payments.CancelPending, payments.Refunded, payments.Voided:
		if !p.Cancelled {
			t.Errorf("status %s, but not cancelled", p.Status)
		}
	case payments.CapturePending, payments.Captured, payments.Waiting:
		if p.Cancelled {
			t.Errorf("status %s, but cancelled", p.Status)
		}
	}
	var want money
	switch p.Status {
	case payments.Captured:
		want = money{1200, 0}
	case payments.Refunded:
		want = money{1200, 1200}
	case payments.CancelPending:
		want = money{p.CapturedAmount, 0} // whatever was recorded before the cancellation
	}
	if got := (money{p.CapturedAmount, p.RefundedAmount}); got != want {
		t.Errorf("money in status %s: got %+v, want %+v", p.Status, got, want)
	}
	if p.Status == payments.Captured && p.PaymentID == "" {
		t.Error("captured without a payment id")
	}
	if p.Status == payments.Declined && p.DeclineReason == "" {
		t.Error("declined without a reason")
	}
}

func TestPaymentEvents(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  events.Outgoing // ID, Subject, Type and Data are compared
	}{
		{"Captured", []step{stepPlaced, stepReserved, stepCharged}, events.Outgoing{
			ID: payments.CapturedEventID(order), Subject: "payments.captured.order-1", Type: catalog.TypePaymentCaptured,
			Data: catalog.PaymentCaptured{OrderID: order, PaymentID: "pay-1", Amount: eur1200}}},
		{"Declined", []step{stepPlaced, stepReserved, stepDeclined}, events.Outgoing{
			ID: payments.EventID(order, "declined"), Subject: "payments.declined.order-1", Type: catalog.TypePaymentDeclined,
			Data: catalog.PaymentDeclined{OrderID: order, Reason: "card_declined"}}},
		{"RefundedAfterRecordedCharge", []step{stepPlaced, stepReserved, stepCharged, stepCancelled, stepRefunded}, events.Outgoing{
			ID: payments.EventID(order, "refunded"), Subject: "payments.refunded.order-1", Type: catalog.TypePaymentRefunded,
			Data: catalog.PaymentRefunded{OrderID: order, PaymentID: "pay-1", Amount: eur1200}}},
		// The charge's answer was lost or overtaken: the refund is the
		// first the service hears of it, so it knows no payment id.
		{"RefundedAfterUnrecordedCharge", []step{stepPlaced, stepReserved, stepCancelled, stepRefunded}, events.Outgoing{
			ID: payments.EventID(order, "refunded"), Subject: "payments.refunded.order-1", Type: catalog.TypePaymentRefunded,
			Data: catalog.PaymentRefunded{OrderID: order, Amount: eur1200}}},
		{"VoidedWhileWaiting", []step{stepPlaced, stepCancelled}, events.Outgoing{
			ID: payments.EventID(order, "voided"), Subject: "payments.voided.order-1", Type: catalog.TypePaymentVoided,
			Data: catalog.PaymentVoided{OrderID: order}}},
		{"VoidedWhilePending", []step{stepPlaced, stepReserved, stepCancelled, stepVoided}, events.Outgoing{
			ID: payments.EventID(order, "voided"), Subject: "payments.voided.order-1", Type: catalog.TypePaymentVoided,
			Data: catalog.PaymentVoided{OrderID: order}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPayment(t, tt.steps[:len(tt.steps)-1]...)
			out, err := tt.steps[len(tt.steps)-1].apply(p)
			if err != nil || len(out) == 0 {
				t.Fatalf("got %d events, err %v; want some, nil", len(out), err)
			}
			// A refund of a charge never recorded publishes the capture
			// first; the event under test is the last.
			if tt.name == "RefundedAfterUnrecordedCharge" && (len(out) != 2 || out[0].Subject != "payments.captured.order-1") {
				t.Errorf("events: got %d (%v first), want payments.captured then payments.refunded", len(out), out[0].Subject)
			}
			e := out[len(out)-1]
			if e.ID != tt.want.ID || e.Subject != tt.want.Subject || e.Type != tt.want.Type ||
				e.Source != catalog.Source(catalog.Payments) || !e.Time.Equal(t0) {
				t.Errorf("event: got %+v, want id %s on %s of type %s", e, tt.want.ID, tt.want.Subject, tt.want.Type)
			}
			if fmt.Sprintf("%#v", e.Data) != fmt.Sprintf("%#v", tt.want.Data) {
				t.Errorf("data: got %#v, want %#v", e.Data, tt.want.Data)
			}
			// Validate what consumers will check.
			if v, ok := e.Data.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					t.Errorf("data does not validate: %v", err)
				}
			}
		})
	}
	if a, b := payments.EventID(order, "voided"), payments.EventID("order-2", "voided"); a == b {
		t.Errorf("event ids of two orders collide: %s", a)
	}
}

func TestPaymentRefusesBadProviderAnswers(t *testing.T) {
	pending := func(t *testing.T) *payments.Payment { return mustPayment(t, stepPlaced, stepReserved) }
	cancelling := func(t *testing.T) *payments.Payment { return mustPayment(t, stepPlaced, stepReserved, stepCancelled) }
	tests := []struct {
		name  string
		start func(t *testing.T) *payments.Payment
		apply func(p *payments.Payment) ([]events.Outgoing, error)
	}{
		{"ChargeWithoutPaymentID", pending, func(p *payments.Payment) ([]events.Outgoing, error) {
			return p.OnCaptureResult(payments.CaptureResult{}, t0)
		}},
		{"CancelNeitherRefundedNorVoided", cancelling, func(p *payments.Payment) ([]events.Outgoing, error) {
			return p.OnCancelResult(payments.CancelResult{}, t0)
		}},
		{"CancelBothRefundedAndVoided", cancelling, func(p *payments.Payment) ([]events.Outgoing, error) {
			return p.OnCancelResult(payments.CancelResult{Refunded: true, Voided: true, Amount: eur1200}, t0)
		}},
		{"RefundInAnotherCurrency", cancelling, func(p *payments.Payment) ([]events.Outgoing, error) {
			return p.OnCancelResult(payments.CancelResult{Refunded: true, Amount: catalog.Money{Amount: 1200, Currency: "USD"}}, t0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.start(t)
			before := *p
			out, err := tt.apply(p)
			if !errors.Is(err, payments.ErrProviderAnswer) || events.IsPermanent(err) || len(out) != 0 || *p != before {
				t.Errorf("got err %v, %d events, payment %+v; want a retryable ErrProviderAnswer, none, unchanged", err, len(out), *p)
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
		{"CancelledForOtherOrder", func(p *payments.Payment) error {
			_, err := p.OnOrderCancelled(catalog.OrderCancelled{OrderID: "order-2", CustomerID: "cust-1",
				Reason: catalog.ReasonTimeout}, t0)
			return err
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

func TestCancelRequestKeyIsOrderID(t *testing.T) {
	p := mustPayment(t, stepPlaced, stepReserved, stepCancelled)
	got := p.CancelRequest()
	want := payments.CancelRequest{IdempotencyKey: "order-1", OrderID: "order-1"}
	if got != want || got.IdempotencyKey != p.CaptureRequest().IdempotencyKey {
		t.Errorf("got %+v, want %+v with the capture's key", got, want)
	}
}

func TestStatusPendingAndValid(t *testing.T) {
	for _, s := range []payments.Status{payments.Waiting, payments.CapturePending, payments.Captured,
		payments.Declined, payments.CancelPending, payments.Refunded, payments.Voided} {
		if !s.Valid() {
			t.Errorf("%s.Valid(): got false, want true", s)
		}
		if want := s == payments.CapturePending || s == payments.CancelPending; s.Pending() != want {
			t.Errorf("%s.Pending(): got %v, want %v", s, s.Pending(), want)
		}
	}
	if payments.Status("SHIPPED").Valid() {
		t.Error("SHIPPED.Valid(): got true, want false")
	}
}
