package payments

import (
	"errors"
	"fmt"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Status is a payment's place in its life cycle.
type Status string

// The statuses a payment can have.
const (
	// Waiting: the order is not yet both placed and reserved.
	Waiting Status = "WAITING"
	// CapturePending: the capture is decided and committed; the provider
	// call, or the recording of its result, is still to happen.
	CapturePending Status = "CAPTURE_PENDING"
	// Captured: the provider charged the order and payments.captured is
	// in the outbox.
	Captured Status = "CAPTURED"
)

// Valid reports whether s is a status this version knows.
func (s Status) Valid() bool {
	switch s {
	case Waiting, CapturePending, Captured:
		return true
	}
	return false
}

// ErrNotFound is returned for an order id the service has no payment for.
var ErrNotFound = errors.New("payment not found")

// ErrNotPending is returned when a capture result is recorded for a
// payment that was never moved to CAPTURE_PENDING: the service would
// have charged a customer it had not decided to charge.
var ErrNotPending = errors.New("payment is not pending capture")

// Payment is the aggregate the payments service owns, one per order.
// Create one with NewPayment; change it only through its On… methods.
type Payment struct {
	OrderID string
	// CustomerID and Amount are known once the order is placed; before
	// that they are empty.
	CustomerID string
	Amount     catalog.Money
	Placed     bool
	Reserved   bool
	Status     Status
	// PaymentID is the provider's id of the charge, set when Captured.
	PaymentID string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewPayment returns the WAITING payment of an order whose first event
// just arrived.
func NewPayment(orderID string, now time.Time) *Payment {
	now = now.UTC()
	return &Payment{OrderID: orderID, Status: Waiting, CreatedAt: now, UpdatedAt: now}
}

// OnOrderPlaced records the customer and the amount to charge. A second
// placed event changes nothing: the first one fixed the amount.
func (p *Payment) OnOrderPlaced(e catalog.OrderPlaced, now time.Time) error {
	if e.OrderID != p.OrderID {
		return events.Permanent(fmt.Errorf("payments: placed event for order %s applied to payment of %s", e.OrderID, p.OrderID))
	}
	if e.Total.Amount < 0 {
		return events.Permanent(fmt.Errorf("payments: order %s has negative total %s", e.OrderID, e.Total))
	}
	if p.Placed {
		return nil
	}
	p.Placed = true
	p.CustomerID = e.CustomerID
	p.Amount = e.Total
	p.decide(now)
	return nil
}

// OnStockReserved records that inventory holds the order's goods.
func (p *Payment) OnStockReserved(e catalog.StockReserved, now time.Time) error {
	if e.OrderID != p.OrderID {
		return events.Permanent(fmt.Errorf("payments: reserved event for order %s applied to payment of %s", e.OrderID, p.OrderID))
	}
	if p.Reserved {
		return nil
	}
	p.Reserved = true
	p.decide(now)
	return nil
}

// decide moves a waiting payment to CAPTURE_PENDING once both inputs are
// known. Whichever event completes the pair triggers it, so arrival order
// does not matter.
func (p *Payment) decide(now time.Time) {
	p.UpdatedAt = now.UTC()
	if p.Status == Waiting && p.Placed && p.Reserved {
		p.Status = CapturePending
	}
}

// CaptureRequest returns the provider request that charges p. The order
// id is the idempotency key: however often the call is retried, by this
// process or another replica, the provider charges the order once.
func (p *Payment) CaptureRequest() CaptureRequest {
	return CaptureRequest{
		IdempotencyKey: p.OrderID,
		OrderID:        p.OrderID,
		CustomerID:     p.CustomerID,
		Amount:         p.Amount,
	}
}

// OnCaptured records the provider's charge and returns payments.captured.
// A payment already captured (another delivery or replica got there
// first) is left as it is and publishes nothing.
func (p *Payment) OnCaptured(res CaptureResult, now time.Time, traceparent string) ([]events.Outgoing, error) {
	switch p.Status {
	case Captured:
		return nil, nil
	case CapturePending:
	default:
		return nil, fmt.Errorf("payments: record capture of order %s in status %s: %w", p.OrderID, p.Status, ErrNotPending)
	}
	if res.PaymentID == "" {
		return nil, fmt.Errorf("payments: provider returned no payment id for order %s", p.OrderID)
	}
	now = now.UTC()
	p.Status = Captured
	p.PaymentID = res.PaymentID
	p.UpdatedAt = now
	return []events.Outgoing{{
		// One capture per order, so the order id alone derives the id: a
		// retried or replayed capture yields the same event, which the
		// stream's duplicate window drops.
		ID:      CapturedEventID(p.OrderID),
		Subject: catalog.EventSubject(catalog.Payments, catalog.EventCaptured, p.OrderID),
		Type:    catalog.TypePaymentCaptured,
		Source:  catalog.Source(catalog.Payments),
		Time:    now,
		Data: catalog.PaymentCaptured{
			OrderID:   p.OrderID,
			PaymentID: p.PaymentID,
			Amount:    p.Amount,
		},
		TraceParent: events.ChildTraceParent(traceparent),
	}}, nil
}

// CapturedEventID returns the id of the payments.captured event of an order.
func CapturedEventID(orderID string) string {
	return events.DerivedID(orderID, catalog.Payments+"."+catalog.EventCaptured)
}
