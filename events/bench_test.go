package events_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// BenchmarkDecodeMessage is what a consumer does with every message: a
// structured event as choreo's relay publishes it (with its dataschema and
// headers), and the same event in binary mode as the CloudEvents SDK
// sends it.
func BenchmarkDecodeMessage(b *testing.B) {
	env := benchEnvelope(b)
	env.DataSchema = "https://choreo.dev/schemas/orders.placed.json"
	raw, err := events.Encode(env)
	if err != nil {
		b.Fatal(err)
	}
	stored := time.Now()
	b.Run("Structured", func(b *testing.B) {
		h := nats.Header{"Nats-Msg-Id": {env.ID}, events.HeaderTraceParent: {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.DecodeMessage(h, raw, stored); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Binary", func(b *testing.B) {
		h := nats.Header{"Nats-Msg-Id": {env.ID}, "ce-specversion": {env.SpecVersion}, "ce-id": {env.ID}, "ce-source": {env.Source},
			"ce-type": {env.Type}, "ce-subject": {env.Subject}, "ce-time": {env.Time.Format(time.RFC3339Nano)},
			"ce-datacontenttype": {env.DataContentType}, "ce-dataschema": {env.DataSchema}}
		b.SetBytes(int64(len(env.Data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.DecodeMessage(h, env.Data, stored); err != nil {
				b.Fatal(err)
			}
		}
	})
}
