package events_test

import (
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
)

// benchEnvelope is an orders.placed-sized CloudEvent.
func benchEnvelope(b *testing.B) events.Envelope {
	b.Helper()
	env, err := events.Outgoing{
		ID: events.DerivedID("order-1", "orders.placed"), Subject: "orders.placed.0193b3c4-0000-7000-8000-000000000001",
		Type: "choreo.orders.placed.v1", Source: "/choreo/orders", Time: time.Now(),
		Data: map[string]any{
			"order_id": "0193b3c4-0000-7000-8000-000000000001", "customer_id": "cust-1",
			"items": []map[string]any{{"sku": "SKU-1", "quantity": 2, "unit_price": 1299}},
			"total": map[string]any{"amount": 2598, "currency": "EUR"}, "placed_at": time.Now().UTC(),
		},
	}.Envelope()
	if err != nil {
		b.Fatal(err)
	}
	return env
}

// go test -run '^$' -bench 'Envelope' -benchmem ./events
func BenchmarkEnvelopeEncode(b *testing.B) {
	env := benchEnvelope(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Encode(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	raw, err := events.Encode(benchEnvelope(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
