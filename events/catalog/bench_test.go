package catalog_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

func benchPlaced(b *testing.B) []byte { return benchPlacedN(b, 0) }

// benchPlacedN is the n-th of many different orders.placed events.
func benchPlacedN(b *testing.B, n int) []byte {
	b.Helper()
	env, err := events.Outgoing{
		ID: events.DerivedID("order-"+strconv.Itoa(n), "orders.placed"), Subject: "orders.placed.0193b3c4-0000-7000-8000-000000000001",
		Type: catalog.TypeOrderPlaced, Source: catalog.Source(catalog.Orders), Time: time.Now(),
		Data: catalog.OrderPlaced{OrderID: "0193b3c4-0000-7000-8000-000000000001", CustomerID: "cust-" + strconv.Itoa(n),
			Items: []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1299}},
			Total: catalog.Money{Amount: 2598, Currency: "EUR"}, PlacedAt: time.Now().UTC()},
	}.Envelope()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := events.Encode(env)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkDecodeEvent is what every consumer does with every event:
// envelope, schema, typed data. First is an event the process has not
// seen; Again is the same bytes a second time (another consumer of the
// same event in choreo up, or a redelivery), whose schema check is
// remembered.
//
//	go test -run '^$' -bench . -benchmem ./events/catalog
func BenchmarkDecodeEvent(b *testing.B) {
	b.Run("First", func(b *testing.B) {
		raws := make([][]byte, 20_000) // more than the memo holds: every decode is a first
		for i := range raws {
			raws[i] = benchPlacedN(b, i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, err := catalog.DecodeEvent[catalog.OrderPlaced](raws[i%len(raws)], catalog.TypeOrderPlaced); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Again", func(b *testing.B) {
		raw := benchPlaced(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := catalog.DecodeEvent[catalog.OrderPlaced](raw, catalog.TypeOrderPlaced); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkValidateSchema is the JSON Schema check alone.
func BenchmarkValidateSchema(b *testing.B) {
	env, err := events.Decode(benchPlaced(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := catalog.ValidateSchema("orders.placed", env.Data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCommand is a cmd.orders.place body: strict decode,
// schema, the Go checks.
func BenchmarkDecodeCommand(b *testing.B) {
	raw, err := json.Marshal(catalog.PlaceOrder{OrderID: "0193b3c4-0000-7000-8000-000000000001", CustomerID: "cust-1", Currency: "EUR",
		Items: []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1299}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := catalog.DecodeCommand[catalog.PlaceOrder](raw); err != nil {
			b.Fatal(err)
		}
	}
}
