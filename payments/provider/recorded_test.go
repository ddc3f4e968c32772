package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/provider"
)

// record is a stream reduced to what Recorded asks of it: the last
// message on a subject.
type record map[string][]byte

func (r record) add(t *testing.T, name, typ, orderID string, data any) {
	t.Helper()
	env, err := events.Outgoing{ID: events.NewID(), Subject: catalog.EventSubject(catalog.Payments, name, orderID), Type: typ,
		Source: catalog.Source(catalog.Payments), Time: time.Now(), Data: data}.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	r[catalog.EventSubject(catalog.Payments, name, orderID)] = b
}

func (r record) last(_ context.Context, subject string) ([]byte, bool, error) {
	b, ok := r[subject]
	return b, ok, nil
}

// Recorded answers each call as the payments events of the order recorded
// the live provider's answer, and says so when none did.
func TestRecordedAnswersAsTheLiveProviderDid(t *testing.T) {
	eur := catalog.Money{Amount: 1200, Currency: "EUR"}
	rec := record{}
	rec.add(t, catalog.EventCaptured, catalog.TypePaymentCaptured, "order-c", catalog.PaymentCaptured{OrderID: "order-c", PaymentID: "pay-c", Amount: eur})
	rec.add(t, catalog.EventDeclined, catalog.TypePaymentDeclined, "order-d", catalog.PaymentDeclined{OrderID: "order-d", Reason: "card_declined"})
	rec.add(t, catalog.EventCaptured, catalog.TypePaymentCaptured, "order-r", catalog.PaymentCaptured{OrderID: "order-r", PaymentID: "pay-r", Amount: eur})
	rec.add(t, catalog.EventRefunded, catalog.TypePaymentRefunded, "order-r", catalog.PaymentRefunded{OrderID: "order-r", PaymentID: "pay-r", Amount: eur})
	rec.add(t, catalog.EventVoided, catalog.TypePaymentVoided, "order-v", catalog.PaymentVoided{OrderID: "order-v"})
	p, err := provider.NewRecorded(rec.last)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	capture := func(key string) (payments.CaptureResult, error) { return p.Capture(ctx, req(key, eur.Amount)) }
	cancel := func(key string) (payments.CancelResult, error) {
		return p.Cancel(ctx, payments.CancelRequest{IdempotencyKey: key, OrderID: key})
	}

	if got, err := capture("order-c"); err != nil || got != (payments.CaptureResult{PaymentID: "pay-c"}) {
		t.Errorf("capture order-c: got %+v %v, want the recorded charge pay-c", got, err)
	}
	if got, err := capture("order-d"); err != nil || got != (payments.CaptureResult{Declined: true, DeclineReason: "card_declined"}) {
		t.Errorf("capture order-d: got %+v %v, want the recorded decline", got, err)
	}
	if got, err := cancel("order-r"); err != nil || got != (payments.CancelResult{Refunded: true, Amount: eur, PaymentID: "pay-r"}) {
		t.Errorf("cancel order-r: got %+v %v, want the recorded refund", got, err)
	}
	if got, err := cancel("order-v"); err != nil || got != (payments.CancelResult{Voided: true}) {
		t.Errorf("cancel order-v: got %+v %v, want the recorded void", got, err)
	}
	// The voided order's capture failed live: no event says how it
	// ended, so there is no answer to give — twice, listed once.
	for range 2 {
		if got, err := capture("order-v"); !errors.Is(err, provider.ErrNotRecorded) {
			t.Errorf("capture order-v: got %+v %v, want ErrNotRecorded", got, err)
		}
	}
	if got, err := cancel("order-c"); !errors.Is(err, provider.ErrNotRecorded) {
		t.Errorf("cancel order-c: got %+v %v, want ErrNotRecorded", got, err)
	}
	un := p.Unanswered()
	if len(un) != 2 || un[0].Operation != "capture" || un[0].OrderID != "order-v" || un[1].Operation != "cancel" || un[1].OrderID != "order-c" {
		t.Errorf("Unanswered: %+v, want the capture of order-v and the cancel of order-c", un)
	}
}

// A record that cannot be read is an error of its own, not an answer
// that was never recorded.
func TestRecordedReportsAnUnreadableRecord(t *testing.T) {
	broken := errors.New("stream unreachable")
	p, err := provider.NewRecorded(func(context.Context, string) ([]byte, bool, error) { return nil, false, broken })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Capture(context.Background(), req("order-1", 1)); !errors.Is(err, broken) || errors.Is(err, provider.ErrNotRecorded) {
		t.Errorf("capture: got %v, want the read error", err)
	}
	if _, err := provider.NewRecorded(nil); err == nil {
		t.Error("NewRecorded(nil): no error")
	}
}
