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
	_, err = store.Apply(ctx, inbox.Key{}, "order-1", func(*payments.Payment) (*payments.Payment, []events.Outgoing, error) {
		p := payments.NewPayment("order-1", time.Now())
		p.Amount = catalog.Money{Amount: 1200, Currency: "EUR"}
		p.Placed, p.Reserved, p.Status, p.PaymentID = true, true, payments.Captured, "pay-1"
		return p, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	paymenthttp.Register(mux, svc, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	t.Run("Known", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/payments/order-1")
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
		want := map[string]any{
			"order_id":   "order-1",
			"status":     "CAPTURED",
			"amount":     map[string]any{"amount": float64(1200), "currency": "EUR"},
			"payment_id": "pay-1",
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("body: got %s, want %s", gotJSON, wantJSON)
		}
	})
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
