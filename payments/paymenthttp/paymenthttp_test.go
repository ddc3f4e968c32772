package paymenthttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/paymentdb"
	"github.com/choreo-dev/choreo/payments/paymenthttp"
	"github.com/choreo-dev/choreo/payments/provider"
)

func TestGetPayment(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Backends()[0].Open(t)
	if err := paymentdb.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	store := paymentdb.New(db)
	svc, err := payments.New(payments.Config{Store: store, Provider: provider.NewAlwaysApprove()})
	if err != nil {
		t.Fatal(err)
	}
	put := func(id string, set func(p *payments.Payment)) {
		t.Helper()
		_, err := store.Apply(ctx, inbox.Key{}, id, func(*payments.Payment) (*payments.Payment, []events.Outgoing, error) {
			p := payments.NewPayment(id, time.Now())
			p.Amount = catalog.Money{Amount: 1200, Currency: "EUR"}
			p.Placed, p.Reserved = true, true
			set(p)
			return p, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("order-1", func(p *payments.Payment) {
		p.Status, p.PaymentID, p.CapturedAmount = payments.Captured, "pay-1", 1200
	})
	put("order-2", func(p *payments.Payment) {
		p.Status, p.PaymentID, p.Cancelled, p.CapturedAmount, p.RefundedAmount = payments.Refunded, "pay-2", true, 1200, 1200
	})
	put("order-3", func(p *payments.Payment) {
		p.Status, p.DeclineReason = payments.Declined, "card_declined"
	})
	mux := http.NewServeMux()
	paymenthttp.Register(mux, svc, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	eur := func(n float64) map[string]any { return map[string]any{"amount": n, "currency": "EUR"} }
	tests := []struct {
		id   string
		want map[string]any
	}{
		{"order-1", map[string]any{
			"order_id": "order-1", "status": "CAPTURED", "amount": eur(1200), "payment_id": "pay-1",
			"cancelled": false, "captured": eur(1200), "refunded": eur(0),
		}},
		{"order-2", map[string]any{
			"order_id": "order-2", "status": "REFUNDED", "amount": eur(1200), "payment_id": "pay-2",
			"cancelled": true, "captured": eur(1200), "refunded": eur(1200),
		}},
		{"order-3", map[string]any{
			"order_id": "order-3", "status": "DECLINED", "amount": eur(1200), "payment_id": "",
			"cancelled": false, "decline_reason": "card_declined", "captured": eur(0), "refunded": eur(0),
		}},
	}
	for _, tt := range tests {
		t.Run("Known/"+tt.id, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/payments/" + tt.id)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %s, want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var got map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tt.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("body: got %s, want %s", gotJSON, wantJSON)
			}
		})
	}
	t.Run("UnknownIs404Problem", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/payments/nope")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("got %d %s, want 404 application/problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var p httpx.Problem
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Status != http.StatusNotFound || p.Instance != "/payments/nope" {
			t.Errorf("problem: got %+v, want status 404 for /payments/nope", p)
		}
	})
}
