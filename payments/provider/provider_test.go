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

func cancelReq(key string) payments.CancelRequest {
	return payments.CancelRequest{IdempotencyKey: key, OrderID: key}
}

func TestAlwaysApproveCancelRefundsACapture(t *testing.T) {
	a := provider.NewAlwaysApprove()
	ctx := context.Background()
	first, err := a.Capture(ctx, req("order-1", 1200))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Cancel(ctx, cancelReq("order-1"))
	want := payments.CancelResult{Refunded: true, Amount: catalog.Money{Amount: 1200, Currency: "EUR"}, PaymentID: first.PaymentID}
	if err != nil || res != want {
		t.Fatalf("Cancel: got %+v %v, want %+v", res, err, want)
	}
	if again, err := a.Cancel(ctx, cancelReq("order-1")); err != nil || again != want {
		t.Errorf("repeat Cancel: got %+v %v, want %+v", again, err, want)
	}
	// A capture retried after the refund returns the first answer and
	// charges nothing more.
	if again, err := a.Capture(ctx, req("order-1", 1200)); err != nil || again != first {
		t.Errorf("Capture after refund: got %+v %v, want %+v", again, err, first)
	}
	if a.Charges() != 1 || a.Refunds() != 1 || a.Voids() != 0 || a.CancelCalls("order-1") != 2 {
		t.Errorf("counts: got charges %d refunds %d voids %d cancel calls %d, want 1 1 0 2",
			a.Charges(), a.Refunds(), a.Voids(), a.CancelCalls("order-1"))
	}
	if got, ok := a.Cancelled("order-1"); !ok || got != want {
		t.Errorf("Cancelled(order-1): got %+v %v, want %+v true", got, ok, want)
	}
}

func TestAlwaysApproveCancelBeforeCaptureVoids(t *testing.T) {
	a := provider.NewAlwaysApprove()
	ctx := context.Background()
	res, err := a.Cancel(ctx, cancelReq("order-1"))
	if err != nil || res != (payments.CancelResult{Voided: true}) {
		t.Fatalf("Cancel: got %+v %v, want voided", res, err)
	}
	// The capture overtaken by its cancellation takes no money, now or on
	// a retry.
	want := payments.CaptureResult{Declined: true, DeclineReason: payments.DeclineVoided}
	for range 2 {
		if got, err := a.Capture(ctx, req("order-1", 1200)); err != nil || got != want {
			t.Errorf("Capture after void: got %+v %v, want %+v", got, err, want)
		}
	}
	if again, err := a.Cancel(ctx, cancelReq("order-1")); err != nil || again != res {
		t.Errorf("repeat Cancel: got %+v %v, want %+v", again, err, res)
	}
	if _, _, ok := a.Charged("order-1"); ok || a.Charges() != 0 || a.Voids() != 1 || a.Refunds() != 0 {
		t.Errorf("counts: got charged %v charges %d voids %d refunds %d, want false 0 1 0", ok, a.Charges(), a.Voids(), a.Refunds())
	}
	if _, err := a.Cancel(ctx, cancelReq("")); !errors.Is(err, provider.ErrNoIdempotencyKey) {
		t.Errorf("no key: got %v, want ErrNoIdempotencyKey", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Cancel(cctx, cancelReq("order-2")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v, want context.Canceled", err)
	}
}

func TestAlwaysApproveConcurrentCaptureAndCancel(t *testing.T) {
	a := provider.NewAlwaysApprove()
	ctx := context.Background()
	var wg sync.WaitGroup
	captures := make([]payments.CaptureResult, 32)
	cancels := make([]payments.CancelResult, 32)
	for i := range 32 {
		key := fmt.Sprintf("order-%d", i%4)
		wg.Go(func() {
			res, err := a.Capture(ctx, req(key, 100))
			if err != nil {
				t.Error(err)
			}
			captures[i] = res
		})
		wg.Go(func() {
			res, err := a.Cancel(ctx, cancelReq(key))
			if err != nil {
				t.Error(err)
			}
			cancels[i] = res
		})
	}
	wg.Wait()
	// Whichever came first, each key ends with no money kept: refunded
	// if charged, else voided and every capture declined.
	for i := range 4 {
		key := fmt.Sprintf("order-%d", i)
		c, ok := a.Cancelled(key)
		_, amount, charged := a.Charged(key)
		switch {
		case !ok:
			t.Errorf("%s: not cancelled", key)
		case charged && (!c.Refunded || c.Amount != amount):
			t.Errorf("%s: charged %s but cancel answered %+v", key, amount, c)
		case !charged && !c.Voided:
			t.Errorf("%s: never charged but cancel answered %+v", key, c)
		}
		for j := i; j < 32; j += 4 {
			if cancels[j] != c {
				t.Errorf("%s call %d: cancel got %+v, want %+v", key, j, cancels[j], c)
			}
			if charged == captures[j].Declined {
				t.Errorf("%s call %d: capture got %+v with charged=%v", key, j, captures[j], charged)
			}
		}
	}
}
