// Package provider holds implementations of payments.Provider, the
// external payment provider the payments service charges orders through.
//
// AlwaysApprove is an in-memory provider that approves every charge: the
// default for local runs and tests. HTTP is the client of a provider over
// HTTP — in this repository, the simulator in package simulator — with a
// timeout per call, a bulkhead and a circuit breaker. Recorded calls no
// provider: it answers with what the live provider answered, as the
// payments service's own events recorded it — for replaying the service.
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
// so that a retried call returns the first answer instead of acting a
// second time, as a real provider does. The only capture it declines is
// one whose key was cancelled first (reason payments.DeclineVoided). It is
// safe for concurrent use; its memory lasts as long as the process.
type AlwaysApprove struct {
	mu          sync.Mutex
	captures    map[string]payments.CaptureResult // first answer per key
	charges     map[string]charge                 // keys actually charged
	cancels     map[string]payments.CancelResult  // first answer per key
	calls       map[string]int
	cancelCalls map[string]int
}

type charge struct {
	result payments.CaptureResult
	amount catalog.Money
}

var _ payments.Provider = (*AlwaysApprove)(nil)

// NewAlwaysApprove returns a provider with no charges.
func NewAlwaysApprove() *AlwaysApprove {
	return &AlwaysApprove{
		captures:    map[string]payments.CaptureResult{},
		charges:     map[string]charge{},
		cancels:     map[string]payments.CancelResult{},
		calls:       map[string]int{},
		cancelCalls: map[string]int{},
	}
}

// ErrNoIdempotencyKey is returned for a capture or cancel without a key:
// it could not be retried safely.
var ErrNoIdempotencyKey = errors.New("provider: request without idempotency key")

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
	if res, ok := a.captures[req.IdempotencyKey]; ok {
		return res, nil
	}
	if _, voided := a.cancels[req.IdempotencyKey]; voided {
		// Cancelled before any capture: the key is void for good.
		res := payments.CaptureResult{Declined: true, DeclineReason: payments.DeclineVoided}
		a.captures[req.IdempotencyKey] = res
		return res, nil
	}
	res := payments.CaptureResult{PaymentID: "pay-" + events.DerivedID(req.IdempotencyKey, "provider.always-approve")}
	a.captures[req.IdempotencyKey] = res
	a.charges[req.IdempotencyKey] = charge{result: res, amount: req.Amount}
	return res, nil
}

// Cancel implements payments.Provider: it refunds the charge made under
// the key, or voids the key when nothing was charged.
func (a *AlwaysApprove) Cancel(ctx context.Context, req payments.CancelRequest) (payments.CancelResult, error) {
	if err := ctx.Err(); err != nil {
		return payments.CancelResult{}, fmt.Errorf("provider: cancel %s: %w", req.IdempotencyKey, err)
	}
	if req.IdempotencyKey == "" {
		return payments.CancelResult{}, ErrNoIdempotencyKey
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelCalls[req.IdempotencyKey]++
	if res, ok := a.cancels[req.IdempotencyKey]; ok {
		return res, nil
	}
	res := payments.CancelResult{Voided: true}
	if c, ok := a.charges[req.IdempotencyKey]; ok {
		res = payments.CancelResult{Refunded: true, Amount: c.amount, PaymentID: c.result.PaymentID}
	}
	a.cancels[req.IdempotencyKey] = res
	return res, nil
}

// Calls returns how many times Capture was called with key.
func (a *AlwaysApprove) Calls(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[key]
}

// CancelCalls returns how many times Cancel was called with key.
func (a *AlwaysApprove) CancelCalls(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelCalls[key]
}

// Charges returns how many distinct charges were made: one per key,
// however often it was retried, refunded or not. A voided key made none.
func (a *AlwaysApprove) Charges() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.charges)
}

// Charged returns the charge made under key, if any, refunded or not.
func (a *AlwaysApprove) Charged(key string) (payments.CaptureResult, catalog.Money, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.charges[key]
	return c.result, c.amount, ok
}

// Cancelled returns the first answer to a cancel of key, if any.
func (a *AlwaysApprove) Cancelled(key string) (payments.CancelResult, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, ok := a.cancels[key]
	return res, ok
}

// Refunds returns how many charges were refunded.
func (a *AlwaysApprove) Refunds() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, res := range a.cancels {
		if res.Refunded {
			n++
		}
	}
	return n
}

// Voids returns how many keys were voided: cancelled before any charge.
func (a *AlwaysApprove) Voids() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, res := range a.cancels {
		if res.Voided {
			n++
		}
	}
	return n
}
