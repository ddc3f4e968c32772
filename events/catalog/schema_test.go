package catalog_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

func TestLookupTypeAcceptsEveryName(t *testing.T) {
	for _, q := range []struct{ query, want string }{
		{"orders.placed", "orders.placed"},
		{catalog.TypeOrderPlaced, "orders.placed"},
		{"orders.place", "orders.place"},
		{catalog.SubjectPlaceOrder, "orders.place"},
		{catalog.SubjectRestock, "inventory.restock"},
		{catalog.TypePaymentVoided, "payments.voided"},
	} {
		ti, ok := catalog.LookupType(q.query)
		if !ok || ti.Name != q.want {
			t.Errorf("LookupType(%q) = %q, %v; want %q", q.query, ti.Name, ok, q.want)
		}
	}
	for _, q := range []string{"", "orders", "orders.placed.o-1", "cmd.orders.teleport", "choreo.orders.placed.v2"} {
		if ti, ok := catalog.LookupType(q); ok {
			t.Errorf("LookupType(%q) = %q, want nothing", q, ti.Name)
		}
	}
	// Every event type constant and command subject is registered.
	for _, typ := range []string{catalog.TypeOrderPlaced, catalog.TypeOrderConfirmed, catalog.TypeOrderCancelled,
		catalog.TypeStockReserved, catalog.TypeStockReservationFailed, catalog.TypeReservationCommitted,
		catalog.TypeStockRestocked, catalog.TypePaymentCaptured, catalog.TypeNotificationSent,
		catalog.TypeOrderCancelRejected, catalog.TypeOrderDeadline, catalog.TypeReservationReleased,
		catalog.TypePaymentDeclined, catalog.TypePaymentRefunded, catalog.TypePaymentVoided,
		catalog.SubjectPlaceOrder, catalog.SubjectCancelOrder, catalog.SubjectRestock} {
		if _, ok := catalog.LookupType(typ); !ok {
			t.Errorf("%s is not registered", typ)
		}
	}
}

// Invalid command bodies are rejected, permanently, on one line, with the
// Go check's words and the schema's.
func TestInvalidCommandsAreRejectedWithTheSchemaError(t *testing.T) {
	type tc struct{ body, want, schema string }
	check := func(t *testing.T, name string, err error, c tc) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s: accepted", name)
		case !events.IsPermanent(err):
			t.Errorf("%s: %v is not permanent", name, err)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: %q spans lines", name, err)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %q does not mention %q", name, err, c.want)
		case c.schema != "" && !strings.Contains(err.Error(), c.schema):
			t.Errorf("%s: %q does not mention %q", name, err, c.schema)
		}
	}
	place := map[string]tc{
		"malformed":       {`{"order_id": oops`, "malformed data", ""},
		"empty items":     {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[]}`, "items is empty", "schema: /items: minItems"},
		"null items":      {`{"order_id":"p","customer_id":"c","currency":"EUR","items":null}`, "items is empty", "schema: /items: got null, want array"},
		"bad currency":    {`{"order_id":"p","customer_id":"c","currency":"EURO","items":[{"sku":"A","quantity":1,"unit_price":1}]}`, "not an ISO 4217 code", "/currency: 'EURO' does not match pattern"},
		"unlisted code":   {`{"order_id":"p","customer_id":"c","currency":"XXX","items":[{"sku":"A","quantity":1,"unit_price":1}]}`, "not an ISO 4217 code", ""},
		"quantity -2":     {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":-2,"unit_price":1}]}`, "quantity -2", "schema: /items/0/quantity: minimum"},
		"zero quantity":   {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":0,"unit_price":1}]}`, "quantity 0", "/items/0/quantity"},
		"float price":     {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price":1.5}]}`, "malformed data", "/items/0/unit_price: got number, want integer"},
		"unknown field":   {`{"order_id":"p","customer_id":"c","currency":"EUR","colour":"red","items":[{"sku":"A","quantity":1}]}`, "unknown field", "additional properties 'colour'"},
		"unknown in line": {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":1,"qty":1}]}`, "unknown field", "/items/0: additional properties 'qty'"},
		"duplicate sku":   {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":1},{"sku":"A","quantity":2}]}`, "more than one line", ""},
		"missing ids":     {`{"currency":"EUR","items":[{"sku":"A","quantity":1}]}`, "order_id is missing", "missing properties 'order_id', 'customer_id'"},
		"dot in id":       {`{"order_id":"a.b","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":1}]}`, "order_id", "/order_id: 'a.b' does not match pattern"},
		"string qty":      {`{"order_id":"p","customer_id":"c","currency":"EUR","items":[{"sku":"A","quantity":"1"}]}`, "malformed data", "/items/0/quantity: got string, want integer"},
	}
	for name, c := range place {
		_, _, err := catalog.DecodeCommand[catalog.PlaceOrder]([]byte(c.body))
		check(t, "place "+name, err, c)
	}
	cancel := map[string]tc{
		"missing order": {`{"command_id":"x"}`, "order_id is missing", "missing property 'order_id'"},
		"unknown field": {`{"order_id":"o","why":"x"}`, "unknown field", "additional properties 'why'"},
		"number id":     {`{"order_id":5}`, "malformed data", "/order_id: got number, want string"},
	}
	for name, c := range cancel {
		_, _, err := catalog.DecodeCommand[catalog.CancelOrder]([]byte(c.body))
		check(t, "cancel "+name, err, c)
	}
	restock := map[string]tc{
		"negative":        {`{"command_id":"bad","sku":"SKU-P","quantity":-5}`, "quantity -5", "schema: /quantity: minimum: got -5, want 1"},
		"too many":        {`{"sku":"A","quantity":1000001}`, "quantity 1000001", "/quantity: maximum"},
		"missing sku":     {`{"quantity":1}`, "sku is missing", "missing property 'sku'"},
		"sku with dot":    {`{"sku":"A.B","quantity":1}`, "sku", "/sku: 'A.B' does not match pattern"},
		"in envelope":     {`{"specversion":"1.0","id":"ce-1","source":"/w","type":"restock","time":"2026-11-25T10:00:00Z","data":{"sku":"A","quantity":0}}`, "quantity 0", "/quantity: minimum"},
		"broken envelope": {`{"specversion":"1.0","data":{"sku":"A","quantity":1}}`, "invalid cloudevent", ""},
	}
	for name, c := range restock {
		_, _, err := catalog.DecodeCommand[catalog.Restock]([]byte(c.body))
		check(t, "restock "+name, err, c)
	}
}

func eventBody(t *testing.T, typ string, data any) []byte {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"specversion": "1.0", "id": "e-1", "source": "/test", "type": typ,
		"time": "2026-11-25T10:00:00Z", "data": json.RawMessage(raw)})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// An event whose data breaks its schema is dead-lettered with the schema
// error, even when the Go checks alone would let it through.
func TestDecodeEventRejectsSchemaInvalidData(t *testing.T) {
	for name, c := range map[string]struct {
		typ, want string
		data      any
		decode    func([]byte, string) error
	}{
		"line without quantity": {catalog.TypeOrderConfirmed, "schema: /items/0: missing property 'quantity'",
			map[string]any{"order_id": "o-1", "customer_id": "c", "items": []any{map[string]any{"sku": "A"}}},
			func(b []byte, typ string) error {
				_, _, err := catalog.DecodeEvent[catalog.OrderConfirmed](b, typ)
				return err
			}},
		"unknown reason": {catalog.TypeOrderCancelled, "/reason: value must be one of",
			map[string]any{"order_id": "o-1", "customer_id": "c", "reason": "bored"},
			func(b []byte, typ string) error {
				_, _, err := catalog.DecodeEvent[catalog.OrderCancelled](b, typ)
				return err
			}},
		"lower-case currency": {catalog.TypePaymentCaptured, "schema: /amount/currency: 'eu' does not match pattern",
			map[string]any{"order_id": "o-1", "payment_id": "p", "amount": map[string]any{"amount": 5, "currency": "eu"}},
			func(b []byte, typ string) error {
				_, _, err := catalog.DecodeEvent[catalog.PaymentCaptured](b, typ)
				return err
			}},
		"string amount": {catalog.TypePaymentCaptured, "/amount/amount: got string, want integer",
			map[string]any{"order_id": "o-1", "payment_id": "p", "amount": map[string]any{"amount": "5", "currency": "EUR"}},
			func(b []byte, typ string) error {
				_, _, err := catalog.DecodeEvent[catalog.PaymentCaptured](b, typ)
				return err
			}},
		"items missing": {catalog.TypeOrderPlaced, "missing property 'items'",
			map[string]any{"order_id": "o-1", "customer_id": "c", "total": map[string]any{"amount": 5, "currency": "EUR"}},
			func(b []byte, typ string) error {
				_, _, err := catalog.DecodeEvent[catalog.OrderPlaced](b, typ)
				return err
			}},
		"reserved without order": {catalog.TypeStockReserved, "missing property 'order_id'",
			map[string]any{"items": []any{}},
			func(b []byte, typ string) error {
				_, _, err := catalog.DecodeEvent[catalog.StockReserved](b, typ)
				return err
			}},
	} {
		err := c.decode(eventBody(t, c.typ, c.data), c.typ)
		if err == nil || !events.IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "schema: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q: want one line mentioning %q", name, err, c.want)
		}
	}
}

// TestDataSchemaIsTheSchemaID: the dataschema every event carries is the
// $id of its type's schema, so a consumer can find the schema from the
// event alone; the examples of `choreo events` carry it too.
func TestDataSchemaIsTheSchemaID(t *testing.T) {
	for _, ti := range catalog.Types() {
		var schema struct {
			ID string `json:"$id"`
		}
		if err := json.Unmarshal(ti.Schema(), &schema); err != nil || schema.ID == "" {
			t.Fatalf("%s: schema has no $id (%v)", ti.Name, err)
		}
		if ti.DataSchema != schema.ID {
			t.Errorf("%s: DataSchema %q, want the schema's $id %q", ti.Name, ti.DataSchema, schema.ID)
		}
		if ti.Kind != catalog.KindEvent {
			continue
		}
		if got := catalog.DataSchema(ti.CloudEventsType); got != schema.ID {
			t.Errorf("DataSchema(%q) = %q, want %q", ti.CloudEventsType, got, schema.ID)
		}
		env, err := events.Decode(ti.Example)
		if err != nil || env.DataSchema != schema.ID {
			t.Errorf("%s example: dataschema %q, %v; want %q", ti.Name, env.DataSchema, err, schema.ID)
		}
	}
	if got := catalog.DataSchema("choreo.unknown.v1"); got != "" {
		t.Errorf("DataSchema of an unknown type = %q, want \"\"", got)
	}
}
