package provider_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/provider"
)

func req(key string, amount int64) payments.CaptureRequest {
	return payments.CaptureRequest{IdempotencyKey: key, OrderID: key, CustomerID: "cust-1",
		Amount: catalog.Money{Amount: amount, Currency: "EUR"}}
}

func TestAlwaysApproveIsIdempotentPerKey(t *testing.T) {
	a := provider.NewAlwaysApprove()
	ctx := context.Background()
	first, err := a.Capture(ctx, req("order-1", 1200))
	if err != nil || first.PaymentID == "" {
		t.Fatalf("Capture: got %+v %v, want a payment id", first, err)
	}
	again, err := a.Capture(ctx, req("order-1", 1200))
	if err != nil || again != first {
		t.Errorf("retry: got %+v %v, want %+v", again, err, first)
	}
	other, err := a.Capture(ctx, req("order-2", 50))
	if err != nil || other.PaymentID == first.PaymentID {
		t.Errorf("other key: got %+v %v, want a different payment id", other, err)
	}
	if got := a.Calls("order-1"); got != 2 {
		t.Errorf("Calls(order-1): got %d, want 2", got)
	}
	if got := a.Charges(); got != 2 {
		t.Errorf("Charges: got %d, want 2", got)
	}
	res, amount, ok := a.Charged("order-1")
	if !ok || res != first || amount != (catalog.Money{Amount: 1200, Currency: "EUR"}) {
		t.Errorf("Charged(order-1): got %+v %s %v, want %+v 1200 EUR true", res, amount, ok, first)
	}
	if _, _, ok := a.Charged("nope"); ok {
		t.Error("Charged(nope): got true, want false")
	}
	// A provider restarted (a new instance) answers the same id.
	if res, _ := provider.NewAlwaysApprove().Capture(ctx, req("order-1", 1200)); res != first {
		t.Errorf("after restart: got %+v, want %+v", res, first)
	}
}

func TestAlwaysApproveRefuses(t *testing.T) {
	a := provider.NewAlwaysApprove()
	if _, err := a.Capture(context.Background(), req("", 1)); !errors.Is(err, provider.ErrNoIdempotencyKey) {
		t.Errorf("no key: got %v, want ErrNoIdempotencyKey", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Capture(ctx, req("order-1", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v, want context.Canceled", err)
	}
	if a.Charges() != 0 {
		t.Errorf("Charges: got %d, want 0", a.Charges())
	}
}

func TestAlwaysApproveConcurrent(t *testing.T) {
	a := provider.NewAlwaysApprove()
	var wg sync.WaitGroup
	ids := make([]string, 64)
	for i := range ids {
		wg.Go(func() {
			res, err := a.Capture(context.Background(), req(fmt.Sprintf("order-%d", i%4), 1))
			if err != nil {
				t.Error(err)
			}
			ids[i] = res.PaymentID
		})
	}
	wg.Wait()
	if a.Charges() != 4 {
		t.Errorf("Charges: got %d, want 4", a.Charges())
	}
	for i, id := range ids {
		if id != ids[i%4] {
			t.Errorf("call %d: got payment id %s, want %s (same key)", i, id, ids[i%4])
		}
	}
}
