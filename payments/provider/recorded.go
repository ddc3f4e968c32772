package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/payments"
)

// LastEvent returns the last message published on subject — a CloudEvents
// envelope as the relay publishes it — and whether there is one. Its error
// means the record could not be read, not that it is empty.
type LastEvent func(ctx context.Context, subject string) (data []byte, found bool, err error)

// ErrNotRecorded is wrapped by the error of a call whose answer no event
// recorded: the live call failed (an outage, a timeout) or its answer was
// lost before the service recorded it. The outcome of such a call is not
// known, so Recorded does not make one up.
var ErrNotRecorded = errors.New("no recorded answer")

// Recorded is a payments.Provider that calls no provider: it answers each
// call with the answer the live provider gave under the same order, as the
// payments service recorded it in its own events — payments.captured (the
// charge and its payment id), payments.declined (the decline and its
// reason), payments.refunded (the refund and its amount), payments.voided
// (the void). Events are looked up on demand by subject through a
// LastEvent, usually the PAYMENTS stream.
//
// choreo replay runs the payments service with it, so that the replayed
// service takes the decisions the live one took, the way Temporal's
// replayer feeds a workflow the results its activities had. A call whose
// answer no event recorded fails with an error wrapping ErrNotRecorded
// (the service retries such a message, as it would a failed call) and is
// listed by Unanswered, so that the replay can say where it could not
// know. Each payments event happens at most once per order, so the last
// message on its subject is the only one.
//
// It is safe for concurrent use.
type Recorded struct {
	last       LastEvent
	mu         sync.Mutex
	unanswered []UnansweredCall
}

// UnansweredCall is a call Recorded could not answer from the record.
type UnansweredCall struct {
	Operation string // "capture" or "cancel"
	OrderID   string
	// Err says which events were looked for and not found, or why the
	// record could not be read.
	Err error
}

var _ payments.Provider = (*Recorded)(nil)

// NewRecorded returns a provider that answers from the events last finds.
func NewRecorded(last LastEvent) (*Recorded, error) {
	if last == nil {
		return nil, errors.New("provider: recorded provider without a way to read the record")
	}
	return &Recorded{last: last}, nil
}

// Capture implements payments.Provider: the recorded charge
// (payments.captured) or decline (payments.declined) of the order, else an
// error wrapping ErrNotRecorded.
func (r *Recorded) Capture(ctx context.Context, req payments.CaptureRequest) (payments.CaptureResult, error) {
	captured, found, err := lookUp[catalog.PaymentCaptured](ctx, r.last, req.OrderID, catalog.EventCaptured, catalog.TypePaymentCaptured)
	if err != nil {
		return payments.CaptureResult{}, r.fail("capture", req.OrderID, err)
	}
	if found {
		return payments.CaptureResult{PaymentID: captured.PaymentID}, nil
	}
	declined, found, err := lookUp[catalog.PaymentDeclined](ctx, r.last, req.OrderID, catalog.EventDeclined, catalog.TypePaymentDeclined)
	if err != nil {
		return payments.CaptureResult{}, r.fail("capture", req.OrderID, err)
	}
	if found {
		return payments.CaptureResult{Declined: true, DeclineReason: declined.Reason}, nil
	}
	return payments.CaptureResult{}, r.fail("capture", req.OrderID, fmt.Errorf("%w: neither payments.%s nor payments.%s of the order is on record",
		ErrNotRecorded, catalog.EventCaptured, catalog.EventDeclined))
}

// Cancel implements payments.Provider: the recorded refund
// (payments.refunded) or void (payments.voided) of the order, else an
// error wrapping ErrNotRecorded.
func (r *Recorded) Cancel(ctx context.Context, req payments.CancelRequest) (payments.CancelResult, error) {
	refunded, found, err := lookUp[catalog.PaymentRefunded](ctx, r.last, req.OrderID, catalog.EventRefunded, catalog.TypePaymentRefunded)
	if err != nil {
		return payments.CancelResult{}, r.fail("cancel", req.OrderID, err)
	}
	if found {
		return payments.CancelResult{Refunded: true, Amount: refunded.Amount, PaymentID: refunded.PaymentID}, nil
	}
	_, found, err = lookUp[catalog.PaymentVoided](ctx, r.last, req.OrderID, catalog.EventVoided, catalog.TypePaymentVoided)
	if err != nil {
		return payments.CancelResult{}, r.fail("cancel", req.OrderID, err)
	}
	if found {
		return payments.CancelResult{Voided: true}, nil
	}
	return payments.CancelResult{}, r.fail("cancel", req.OrderID, fmt.Errorf("%w: neither payments.%s nor payments.%s of the order is on record",
		ErrNotRecorded, catalog.EventRefunded, catalog.EventVoided))
}

// Unanswered returns the calls that could not be answered from the record,
// each once, in the order they were first made.
func (r *Recorded) Unanswered() []UnansweredCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.unanswered)
}

// fail notes an unanswered call and returns its error. The operation and
// the order are not repeated in it: the service's own wrapping names them.
func (r *Recorded) fail(op, orderID string, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.ContainsFunc(r.unanswered, func(c UnansweredCall) bool { return c.Operation == op && c.OrderID == orderID }) {
		r.unanswered = append(r.unanswered, UnansweredCall{Operation: op, OrderID: orderID, Err: err})
	}
	return fmt.Errorf("provider: %w", err)
}

// lookUp reads and decodes the payments.<name> event of an order.
func lookUp[T any](ctx context.Context, last LastEvent, orderID, name, typ string) (T, bool, error) {
	var zero T
	subject := catalog.EventSubject(catalog.Payments, name, orderID)
	data, found, err := last(ctx, subject)
	if err != nil || !found {
		if err != nil {
			err = fmt.Errorf("read %s: %w", subject, err)
		}
		return zero, false, err
	}
	_, v, err := catalog.DecodeEvent[T](data, typ)
	if err != nil {
		return zero, false, fmt.Errorf("recorded %s: %w", subject, err)
	}
	return v, true, nil
}
