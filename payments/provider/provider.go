// Package provider holds implementations of payments.Provider, the
// external payment provider the payments service charges orders through.
//
// AlwaysApprove is an in-memory provider that approves every charge: the
// default for local runs and tests. An HTTP client of the provider
// simulator belongs here too, behind the same interface.
package provider

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/payments"
)

// AlwaysApprove approves every capture and remembers each idempotency key,
// so that a retried call returns the first charge instead of making a
// second one, as a real provider does. It is safe for concurrent use; its
// memory lasts as long as the process.
type AlwaysApprove struct {
	mu      sync.Mutex
	charges map[string]charge
	calls   map[string]int
}

type charge struct {
	result payments.CaptureResult
	amount catalog.Money
}

var _ payments.Provider = (*AlwaysApprove)(nil)

// NewAlwaysApprove returns a provider with no charges.
func NewAlwaysApprove() *AlwaysApprove {
	return &AlwaysApprove{charges: map[string]charge{}, calls: map[string]int{}}
}

// ErrNoIdempotencyKey is returned for a capture without a key: it could
// not be retried safely.
var ErrNoIdempotencyKey = errors.New("provider: capture without idempotency key")

// Capture implements payments.Provider. The payment id is derived from the
// key, so even a provider restarted between two calls answers the same id.
func (a *AlwaysApprove) Capture(ctx context.Context, req payments.CaptureRequest) (payments.CaptureResult, error) {
	if err := ctx.Err(); err != nil {
		return payments.CaptureResult{}, fmt.Errorf("provider: capture %s: %w", req.IdempotencyKey, err)
	}
	if req.IdempotencyKey == "" {
		return payments.CaptureResult{}, ErrNoIdempotencyKey
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[req.IdempotencyKey]++
	if c, ok := a.charges[req.IdempotencyKey]; ok {
		return c.result, nil
	}
	c := charge{
		result: payments.CaptureResult{PaymentID: "pay-" + events.DerivedID(req.IdempotencyKey, "provider.always-approve")},
		amount: req.Amount,
	}
	a.charges[req.IdempotencyKey] = c
	return c.result, nil
}

// Calls returns how many times Capture was called with key.
func (a *AlwaysApprove) Calls(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[key]
}

// Charges returns how many distinct charges were made: one per key,
// however often it was retried.
func (a *AlwaysApprove) Charges() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.charges)
}

// Charged returns the charge made under key, if any.
func (a *AlwaysApprove) Charged(key string) (payments.CaptureResult, catalog.Money, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.charges[key]
	return c.result, c.amount, ok
}
