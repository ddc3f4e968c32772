package payments

import (
	"context"

	"github.com/choreo-dev/choreo/events/catalog"
)

// Provider is the external payment provider. The service depends on this
// interface, not on an implementation: package provider holds them (an
// in-memory one that approves everything, and an HTTP client of the
// provider simulator with timeouts, a circuit breaker and a bulkhead).
//
// Both methods are keyed by an idempotency key, which the service sets to
// the order id: however often a call is retried, by this process or
// another replica, it has one effect, and a repeat returns the first
// result.
type Provider interface {
	// Capture charges req.Amount. Same IdempotencyKey = one charge; a
	// repeat returns the first result, even if the provider's rules have
	// changed since.
	//
	// A decline is an answer (CaptureResult.Declined=true, DeclineReason
	// set), not an error. A capture whose key was voided by Cancel is
	// declined with DeclineReason DeclineVoided.
	//
	// An error means "unknown outcome, try again with the same key"
	// (transport error, timeout, 5xx, breaker open): the charge may or may
	// not have been made, and the retry with the same key finds it. The
	// service marks an outage (one wrapping ErrProviderUnavailable, a
	// timeout, a transport error, a 5xx) events.Unavailable — retried for
	// as long as it lasts — and any other error events.Transient, so the
	// message is redelivered after a back-off. An implementation may also return an
	// error for a request the provider refuses as malformed; it documents
	// how such errors can be told apart.
	Capture(ctx context.Context, req CaptureRequest) (CaptureResult, error)
	// Cancel makes sure the charge under IdempotencyKey leaves no money
	// with the merchant: if it was captured it is refunded (Refunded=true,
	// Amount); if it was never captured the key is voided, so a capture
	// that arrives later with that key is declined with reason
	// DeclineVoided. Idempotent: a repeat returns the first result.
	//
	// An error means "unknown outcome, try again with the same key", as
	// for Capture: the refund or void may have happened, and the retry
	// returns it.
	Cancel(ctx context.Context, req CancelRequest) (CancelResult, error)
}

// DeclineVoided is the DeclineReason of a capture whose idempotency key
// was cancelled before any capture was made under it.
const DeclineVoided = "voided"

// CaptureRequest asks the provider to charge an order.
type CaptureRequest struct {
	// IdempotencyKey makes retries safe; the service uses the order id.
	IdempotencyKey string
	OrderID        string
	CustomerID     string
	Amount         catalog.Money
}

// CaptureResult is the provider's answer to a capture: a charge, or a
// decline.
type CaptureResult struct {
	// PaymentID is the provider's id of the charge; empty when declined.
	PaymentID string
	// Declined reports that the provider refused the charge; no money
	// moved.
	Declined bool
	// DeclineReason says why, for example "card_declined",
	// "amount_over_limit" or DeclineVoided.
	DeclineReason string
}

// CancelRequest asks the provider to undo whatever was done, or will be
// done, under an idempotency key.
type CancelRequest struct {
	// IdempotencyKey is the key of the capture to cancel: the order id.
	IdempotencyKey string
	OrderID        string
}

// CancelResult is the provider's answer to a cancel. Exactly one of
// Refunded and Voided is true.
type CancelResult struct {
	// Refunded reports that a capture had been made and Amount was given
	// back to the customer.
	Refunded bool
	Amount   catalog.Money
	// PaymentID is the refunded charge's id: the only word of it the
	// service gets when the capture's own answer was lost.
	PaymentID string
	// Voided reports that no capture had been made: none will be, since a
	// later capture under the key is declined with DeclineVoided.
	Voided bool
}
