package payments

import (
	"context"

	"github.com/choreo-dev/choreo/events/catalog"
)

// Provider is the external payment provider. The service depends on this
// interface, not on an implementation: package provider holds them (an
// in-memory one that approves everything; an HTTP client of the simulator
// with timeouts, a circuit breaker and a bulkhead can sit behind the same
// method).
type Provider interface {
	// Capture charges req.Amount to the customer. Calls with the same
	// IdempotencyKey charge once: a repeat returns the first result.
	//
	// Every error is retried: the service marks it events.Transient, the
	// message is redelivered after a back-off and the call is made again
	// with the same key. A timeout must be returned as an error even when
	// the charge may have gone through; the retry with the same key then
	// finds it.
	Capture(ctx context.Context, req CaptureRequest) (CaptureResult, error)
}

// CaptureRequest asks the provider to charge an order.
type CaptureRequest struct {
	// IdempotencyKey makes retries safe; the service uses the order id.
	IdempotencyKey string
	OrderID        string
	CustomerID     string
	Amount         catalog.Money
}

// CaptureResult is a successful charge.
type CaptureResult struct {
	// PaymentID is the provider's id of the charge.
	PaymentID string
}
