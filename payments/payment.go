package payments

import (
	"errors"
	"fmt"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Status is a payment's place in its life cycle:
//
//	WAITING ──placed+reserved──▶ CAPTURE_PENDING ──▶ CAPTURED | DECLINED
//	WAITING ──cancelled──▶ VOIDED
//	CAPTURE_PENDING | CAPTURED ──cancelled──▶ CANCEL_PENDING ──▶ REFUNDED | VOIDED
//	DECLINED ──cancelled──▶ DECLINED
//
// The two …_PENDING statuses mean a provider call is owed: the decision
// is committed, the call (or the recording of its answer) is not.
type Status string

// The statuses a payment can have.
const (
	// Waiting: the order is not yet both placed and reserved, and not
	// cancelled. Nobody has asked the provider for anything.
	Waiting Status = "WAITING"
	// CapturePending: the capture is decided and committed; the provider
	// call, or the recording of its result, is still to happen.
	CapturePending Status = "CAPTURE_PENDING"
	// Captured: the provider charged the order and payments.captured is
	// in the outbox.
	Captured Status = "CAPTURED"
	// Declined: the provider refused the charge and payments.declined is
	// in the outbox. No money moved; a later cancellation changes nothing.
	Declined Status = "DECLINED"
	// CancelPending: the order was cancelled while a capture was decided
	// or made; the provider's Cancel, or the recording of its result, is
	// still to happen.
	CancelPending Status = "CANCEL_PENDING"
	// Refunded: the order was cancelled after the provider charged it; the
	// charge was refunded and payments.refunded is in the outbox.
	Refunded Status = "REFUNDED"
	// Voided: the order was cancelled before any charge; none will ever be
	// made, and payments.voided is in the outbox.
	Voided Status = "VOIDED"
)

// Valid reports whether s is a status this version knows.
func (s Status) Valid() bool {
	switch s {
	case Waiting, CapturePending, Captured, Declined, CancelPending, Refunded, Voided:
		return true
	}
	return false
}

// Pending reports whether a payment in status s owes a provider call.
func (s Status) Pending() bool { return s == CapturePending || s == CancelPending }

// ErrNotFound is returned for an order id the service has no payment for.
var ErrNotFound = errors.New("payment not found")

// ErrNotPending is returned when a provider's answer is recorded for a
// payment that never asked for it: a capture result on a payment that was
// not moved to CAPTURE_PENDING, or a cancel result on one that was not
// moved to CANCEL_PENDING. Recording it would account for money the
// service never decided to move.
var ErrNotPending = errors.New("payment is not pending")

// ErrNotPlaced is wrapped by the error for inventory.reserved of an
// order whose orders.placed payments has not seen. Payments captures only
// what orders placed — the amount and the customer come from that event —
// so the reservation waits (an Early error: the two travel on different
// streams and may arrive in either order, far apart when payments fell
// behind on ORDERS) and one for an order that never comes is
// dead-lettered once the consumer's reorder wait has passed.
var ErrNotPlaced = errors.New("order not seen placed")

// ErrConfirmed is wrapped by the error for an orders.cancelled of an
// order payments knows to be confirmed: orders never cancels a confirmed
// order, so the event is forged or a bug, and refunding on it would give
// the money back for goods that are sold.
var ErrConfirmed = errors.New("order is confirmed")

// ErrNotCaptured is wrapped by the error for an orders.confirmed that
// does not match what payments captured: no capture, or another amount.
var ErrNotCaptured = errors.New("confirmation of a payment not captured")

// ErrProviderAnswer is wrapped by the errors returned for a provider
// answer that contradicts itself or the payment (a charge without a
// payment id, a cancel that neither refunded nor voided, a capture the
// service recorded that the provider voids).
var ErrProviderAnswer = errors.New("inconsistent provider answer")

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
	// Cancelled: orders.cancelled arrived (for any reason). A cancelled
	// payment is never captured, and one captured is refunded.
	Cancelled bool
	// Confirmed: orders.confirmed arrived for the captured payment. A
	// confirmed payment is never refunded.
	Confirmed bool
	Status    Status
	// PaymentID is the provider's id of the charge, set when Captured
	// (and kept when the charge is refunded).
	PaymentID string
	// DeclineReason is the provider's reason, set when Declined.
	DeclineReason string
	// CapturedAmount and RefundedAmount are the money the provider took
	// and gave back for this order, in minor units of Amount.Currency.
	// For a settled payment CapturedAmount − RefundedAmount is Amount
	// when CAPTURED and 0 otherwise.
	CapturedAmount int64
	RefundedAmount int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
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

// OnStockReserved records that inventory holds the order's goods. For an
// order not seen placed (nor cancelled, which says orders placed it) it
// changes nothing and returns an Early error wrapping ErrNotPlaced: the
// reservation is delivered again until orders.placed has come, and a
// forged one for an order that never comes ends in the dead-letter queue
// instead of a payment row waiting for ever.
func (p *Payment) OnStockReserved(e catalog.StockReserved, now time.Time) error {
	if e.OrderID != p.OrderID {
		return events.Permanent(fmt.Errorf("payments: reserved event for order %s applied to payment of %s", e.OrderID, p.OrderID))
	}
	if !p.Placed && !p.Cancelled {
		return events.Early(fmt.Errorf("payments: inventory.reserved for order %s: %w", p.OrderID, ErrNotPlaced))
	}
	if p.Reserved {
		return nil
	}
	p.Reserved = true
	p.decide(now)
	return nil
}

// decide moves a waiting payment to CAPTURE_PENDING once both inputs are
// known and the order is not cancelled. Whichever event completes the
// pair triggers it, so arrival order does not matter.
func (p *Payment) decide(now time.Time) {
	p.UpdatedAt = now.UTC()
	if p.Status == Waiting && p.Placed && p.Reserved && !p.Cancelled {
		p.Status = CapturePending
	}
}

// OnOrderCancelled records the cancellation of the order, whatever its
// reason, and decides what must happen to the money:
//
//   - WAITING: no capture was ever requested, by this process or any
//     other, because the move to CAPTURE_PENDING happens in this very row
//     under its lock, and is now ruled out by Cancelled. The payment goes
//     straight to VOIDED and payments.voided is returned, without a
//     provider call.
//   - CAPTURE_PENDING or CAPTURED: a charge may exist or be in flight
//     (another replica may be calling the provider right now). The
//     payment goes to CANCEL_PENDING; the provider's Cancel then refunds
//     the charge, or voids the key so that the late capture is declined.
//   - DECLINED: no money moved; nothing to do.
//
// A second cancellation changes nothing.
func (p *Payment) OnOrderCancelled(e catalog.OrderCancelled, now time.Time) ([]events.Outgoing, error) {
	if e.OrderID != p.OrderID {
		return nil, events.Permanent(fmt.Errorf("payments: cancelled event for order %s applied to payment of %s", e.OrderID, p.OrderID))
	}
	if p.Confirmed {
		return nil, events.Permanent(fmt.Errorf("payments: orders.cancelled (%s) for order %s: %w, its payment %s is not refunded", e.Reason, p.OrderID, ErrConfirmed, p.PaymentID))
	}
	if p.Cancelled {
		return nil, nil
	}
	now = now.UTC()
	p.Cancelled = true
	p.UpdatedAt = now
	switch p.Status {
	case Waiting:
		p.Status = Voided
		return []events.Outgoing{p.voidedEvent(now)}, nil
	case CapturePending, Captured:
		p.Status = CancelPending
	}
	return nil, nil
}

// OnOrderConfirmed records that orders confirmed the order, on the
// capture payments published: from then on no orders.cancelled is
// believed (see OnOrderCancelled). Orders confirms only on that capture,
// of exactly the order's total, so a confirmation of a payment not
// captured, of another amount, or of one already being refunded (a
// cancellation, forged, came first) is not what it says: it is refused
// with a Permanent error — dead-lettered, for a person to see — and
// changes nothing.
func (p *Payment) OnOrderConfirmed(e catalog.OrderConfirmed, now time.Time) error {
	if e.OrderID != p.OrderID {
		return events.Permanent(fmt.Errorf("payments: confirmed event for order %s applied to payment of %s", e.OrderID, p.OrderID))
	}
	if p.Status != Captured {
		return events.Permanent(fmt.Errorf("payments: orders.confirmed for order %s, whose payment is %s: %w", p.OrderID, p.Status, ErrNotCaptured))
	}
	if e.Total != p.Amount {
		return events.Permanent(fmt.Errorf("payments: orders.confirmed for order %s with total %s, captured %s: %w", p.OrderID, e.Total, p.Amount, ErrNotCaptured))
	}
	if p.Confirmed {
		return nil
	}
	p.Confirmed = true
	p.UpdatedAt = now.UTC()
	return nil
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

// CancelRequest returns the provider request that undoes the capture of
// p, made or to come: the same idempotency key as CaptureRequest.
func (p *Payment) CancelRequest() CancelRequest {
	return CancelRequest{IdempotencyKey: p.OrderID, OrderID: p.OrderID}
}

// OnCaptureResult records the provider's answer to CaptureRequest: a
// charge (CAPTURED, payments.captured) or a decline (DECLINED,
// payments.declined).
//
// An answer that arrives after the payment moved on is stale and changes
// nothing: another delivery or replica recorded the capture first, or a
// cancellation overtook the capture (CANCEL_PENDING and after), in which
// case the provider's Cancel accounts for the charge, if any.
func (p *Payment) OnCaptureResult(res CaptureResult, now time.Time) ([]events.Outgoing, error) {
	switch p.Status {
	case CapturePending:
	case Waiting:
		return nil, fmt.Errorf("payments: record capture of order %s in status %s: %w", p.OrderID, p.Status, ErrNotPending)
	default:
		return nil, nil
	}
	now = now.UTC()
	if res.Declined {
		p.Status = Declined
		p.DeclineReason = res.DeclineReason
		p.UpdatedAt = now
		return []events.Outgoing{p.event(catalog.EventDeclined, catalog.TypePaymentDeclined, now,
			catalog.PaymentDeclined{OrderID: p.OrderID, Reason: p.DeclineReason})}, nil
	}
	if res.PaymentID == "" {
		return nil, fmt.Errorf("payments: capture of order %s: charge without a payment id: %w", p.OrderID, ErrProviderAnswer)
	}
	p.Status = Captured
	p.PaymentID = res.PaymentID
	p.CapturedAmount = p.Amount.Amount
	p.UpdatedAt = now
	return []events.Outgoing{p.event(catalog.EventCaptured, catalog.TypePaymentCaptured, now,
		catalog.PaymentCaptured{OrderID: p.OrderID, PaymentID: p.PaymentID, Amount: p.Amount})}, nil
}

// OnCancelResult records the provider's answer to CancelRequest: the
// charge was refunded (REFUNDED, payments.refunded) or the key voided
// (VOIDED, payments.voided). A payment already refunded or voided is left
// as it is.
//
// A refund may reveal a charge the service never recorded — the capture
// went through but its answer was lost, or was overtaken by the
// cancellation — so a refund sets CapturedAmount too when it is unset.
func (p *Payment) OnCancelResult(res CancelResult, now time.Time) ([]events.Outgoing, error) {
	switch p.Status {
	case CancelPending:
	case Refunded, Voided:
		return nil, nil
	default:
		return nil, fmt.Errorf("payments: record cancel of order %s in status %s: %w", p.OrderID, p.Status, ErrNotPending)
	}
	now = now.UTC()
	switch {
	case res.Refunded == res.Voided:
		return nil, fmt.Errorf("payments: cancel of order %s: refunded %v and voided %v: %w", p.OrderID, res.Refunded, res.Voided, ErrProviderAnswer)
	case res.Voided && p.CapturedAmount != 0:
		return nil, fmt.Errorf("payments: cancel of order %s voids charge %s: %w", p.OrderID, p.PaymentID, ErrProviderAnswer)
	case res.Voided:
		p.Status = Voided
		p.UpdatedAt = now
		return []events.Outgoing{p.voidedEvent(now)}, nil
	}
	if res.Amount.Currency != p.Amount.Currency {
		return nil, fmt.Errorf("payments: cancel of order %s refunds %s, the order is in %q: %w", p.OrderID, res.Amount, p.Amount.Currency, ErrProviderAnswer)
	}
	var out []events.Outgoing
	if p.CapturedAmount == 0 {
		// The charge went through but its answer was lost (or overtaken
		// by the cancellation): the refund is the first we hear of it.
		// Publish the capture too, so that the PAYMENTS stream tells the
		// whole story and sums to what the provider holds; orders ignores
		// a capture for a cancelled order.
		p.CapturedAmount = res.Amount.Amount
		if p.PaymentID == "" {
			p.PaymentID = res.PaymentID
		}
		out = append(out, p.event(catalog.EventCaptured, catalog.TypePaymentCaptured, now,
			catalog.PaymentCaptured{OrderID: p.OrderID, PaymentID: p.PaymentID, Amount: res.Amount}))
	}
	p.Status = Refunded
	p.RefundedAmount = res.Amount.Amount
	p.UpdatedAt = now
	return append(out, p.event(catalog.EventRefunded, catalog.TypePaymentRefunded, now,
		catalog.PaymentRefunded{OrderID: p.OrderID, PaymentID: p.PaymentID, Amount: res.Amount})), nil
}

func (p *Payment) voidedEvent(now time.Time) events.Outgoing {
	return p.event(catalog.EventVoided, catalog.TypePaymentVoided, now, catalog.PaymentVoided{OrderID: p.OrderID})
}

// event returns a payments.<name>.<order> event. Each happens at most once
// per order, so the order id and the name alone derive its id: a retried
// or replayed step yields the same event, which the stream's duplicate
// window drops.
func (p *Payment) event(name, typ string, now time.Time, data any) events.Outgoing {
	return events.Outgoing{
		ID:         EventID(p.OrderID, name),
		Subject:    catalog.EventSubject(catalog.Payments, name, p.OrderID),
		Type:       typ,
		DataSchema: catalog.DataSchema(typ),
		Source:     catalog.Source(catalog.Payments),
		Time:       now,
		Data:       data,
	}
}

// EventID returns the id of the payments.<name> event of an order, for
// name one of catalog.EventCaptured, EventDeclined, EventRefunded and
// EventVoided.
func EventID(orderID, name string) string {
	return events.DerivedID(orderID, catalog.Payments+"."+name)
}

// CapturedEventID returns the id of the payments.captured event of an order.
func CapturedEventID(orderID string) string { return EventID(orderID, catalog.EventCaptured) }
