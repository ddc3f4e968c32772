package catalog_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
)

// commandSeeds are seeds for every command decoder: the README's bodies,
// a CloudEvents envelope around one, and the hostile ids of ident_test.go
// in every id field.
func commandSeeds() []string {
	seeds := []string{
		`{"command_id":"r-1","sku":"SKU-1","quantity":100}`,
		`{"order_id":"0193b3c4-0000-7000-8000-000000000001","customer_id":"cust-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":2,"unit_price":1299}]}`,
		`{"order_id":"0193b3c4-0000-7000-8000-000000000001"}`,
		`{"specversion":"1.0","id":"c-1","source":"shop","type":"cmd.orders.cancel","time":"2025-03-01T12:00:00Z","data":{"order_id":"o-1"}}`,
		`{"order_id":"o-1","bogus":1}`, `{"order_id":"o-1"}{}`, `{"order_id":"\ud800"}`, `{"sku":"S","quantity":1e30}`,
	}
	for _, id := range badIDs {
		q := quoteRaw(id)
		seeds = append(seeds,
			`{"order_id":`+q+`,"customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":1}]}`,
			`{"order_id":"o","customer_id":"c","currency":"EUR","items":[{"sku":`+q+`,"quantity":1,"unit_price":1}]}`,
			`{"command_id":`+q+`,"order_id":"o"}`,
			`{"sku":`+q+`,"quantity":1}`)
	}
	return seeds
}

// fuzzCommand checks a command decoder: it never panics, fails only with
// Permanent errors, and whatever it accepts has ids that are safe subject
// tokens and survives a JSON round trip unchanged.
func fuzzCommand[T catalog.Validator](f *testing.F, ids func(T) []string) {
	for _, s := range commandSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, _, err := catalog.DecodeCommand[T](b)
		if err != nil {
			if events.KindOf(err) != events.KindPermanent {
				t.Fatalf("DecodeCommand(%q): error %v is %v, want permanent", b, err, events.KindOf(err))
			}
			return
		}
		for _, id := range ids(cmd) {
			checkSafeID(t, id)
		}
		out, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		again, _, err := catalog.DecodeCommand[T](out)
		if err != nil || !reflect.DeepEqual(again, cmd) {
			t.Fatalf("round trip of %s: got %+v, %v; want %+v", out, again, err, cmd)
		}
	})
}

// checkSafeID fails unless id is what every edge promises: valid UTF-8,
// graphic, and one subject token that matches only itself.
func checkSafeID(t *testing.T, id string) {
	t.Helper()
	if err := catalog.ValidID("id", id); err != nil {
		t.Fatalf("accepted id %q: %v", id, err)
	}
	if !utf8.ValidString(id) || strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError }) {
		t.Fatalf("accepted id %q with a control character, whitespace or invalid UTF-8", id)
	}
	subject, err := events.Subject("orders", "placed", id)
	if err != nil {
		t.Fatalf("id %q is no subject token: %v", id, err)
	}
	if !consumer.MatchSubject("*.*."+id, subject) || consumer.MatchSubject("*.*."+id, "orders.placed."+id+"x") || events.SubjectKey(subject) != id {
		t.Fatalf("subject %q of id %q does not parse back to it", subject, id)
	}
	if s, ok := catalog.StreamOf(subject); !ok || s != catalog.StreamOrders {
		t.Fatalf("subject %q: stream %q, want %s", subject, s, catalog.StreamOrders)
	}
}

func FuzzDecodePlaceOrder(f *testing.F) {
	fuzzCommand(f, func(c catalog.PlaceOrder) []string {
		ids := []string{c.OrderID, c.CustomerID}
		for _, it := range c.Items {
			ids = append(ids, it.SKU)
		}
		return ids
	})
}

func FuzzDecodeCancelOrder(f *testing.F) {
	fuzzCommand(f, func(c catalog.CancelOrder) []string { return []string{c.OrderID} })
}

func FuzzDecodeRestock(f *testing.F) {
	fuzzCommand(f, func(c catalog.Restock) []string { return []string{c.SKU} })
}

// FuzzDecodeEvent: the event decoders of the types consumers rely on never
// panic and fail only with Permanent errors; an accepted event's order id
// is a safe subject token.
func FuzzDecodeEvent(f *testing.F) {
	env := func(typ, data string) []byte {
		return []byte(`{"specversion":"1.0","id":"e-1","source":"choreo/x","type":"` + typ + `","subject":"o-1","time":"2025-03-01T12:00:00Z","data":` + data + `}`)
	}
	f.Add(env(catalog.TypeOrderPlaced, `{"order_id":"o-1","customer_id":"c","items":[{"sku":"S","quantity":1,"unit_price":1}],"total":{"amount":1,"currency":"EUR"},"placed_at":"2025-03-01T12:00:00Z"}`))
	f.Add(env(catalog.TypePaymentCaptured, `{"order_id":"o-1","payment_id":"p","amount":{"amount":1,"currency":"EUR"}}`))
	f.Add(env(catalog.TypeOrderCancelled, `{"order_id":"o-1","customer_id":"c","reason":"timeout"}`))
	f.Add(env(catalog.TypeStockReserved, `{"order_id":"o\u0000","items":[]}`))
	f.Add(env(catalog.TypeOrderDeadline, "{\"order_id\":\"o-\xff\"}"))
	// As the CloudEvents SDKs send them: no time, a charset, data_base64.
	f.Add([]byte(`{"specversion":"1.0","id":"e-1","source":"/choreo/payments","type":"` + catalog.TypePaymentCaptured + `","datacontenttype":"application/json; charset=utf-8","data":{"order_id":"o-1","payment_id":"p","amount":{"amount":1,"currency":"EUR"}}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"e-1","source":"/choreo/orders","type":"` + catalog.TypeOrderCancelled + `","data_base64":"eyJvcmRlcl9pZCI6Im8tMSIsImN1c3RvbWVyX2lkIjoiYyIsInJlYXNvbiI6InRpbWVvdXQifQ=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(orderID string, err error) {
			if err != nil {
				if events.KindOf(err) != events.KindPermanent {
					t.Fatalf("error %v is %v, want permanent", err, events.KindOf(err))
				}
				return
			}
			checkSafeID(t, orderID)
		}
		_, placed, err := catalog.DecodeEvent[catalog.OrderPlaced](b, catalog.TypeOrderPlaced)
		check(placed.OrderID, err)
		_, captured, err := catalog.DecodeEvent[catalog.PaymentCaptured](b, catalog.TypePaymentCaptured)
		check(captured.OrderID, err)
		_, cancelled, err := catalog.DecodeEvent[catalog.OrderCancelled](b, catalog.TypeOrderCancelled)
		check(cancelled.OrderID, err)
		_, reserved, err := catalog.DecodeEvent[catalog.StockReserved](b, catalog.TypeStockReserved)
		check(reserved.OrderID, err)
		_, deadline, err := catalog.DecodeEvent[catalog.OrderDeadline](b, catalog.TypeOrderDeadline)
		check(deadline.OrderID, err)
	})
}

// FuzzValidID: an id ValidID accepts is a safe subject token; ValidSKU
// and ValidKey never accept what they promise to refuse.
func FuzzValidID(f *testing.F) {
	for _, id := range badIDs {
		f.Add(id)
	}
	f.Add("0193b3c4-0000-7000-8000-000000000001")
	f.Add("Ärger-注文")
	f.Fuzz(func(t *testing.T, id string) {
		if catalog.ValidID("order_id", id) == nil {
			checkSafeID(t, id)
		}
		if catalog.ValidSKU(id) == nil && len(id) > catalog.MaxSKUBytes {
			t.Fatalf("ValidSKU accepted %d bytes", len(id))
		}
		if catalog.ValidKey("command_id", id) == nil && (!utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) || len(id) > catalog.MaxKeyBytes) {
			t.Fatalf("ValidKey accepted %q", id)
		}
	})
}
