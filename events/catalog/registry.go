package catalog

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Kinds of registered types.
const (
	KindCommand = "command"
	KindEvent   = "event"
)

// TypeInfo describes one command or event type: where it travels, its Go
// type, its JSON Schema and an example that works as printed.
type TypeInfo struct {
	// Name is the short name: "<service>.<action>" for a command
	// ("orders.place"), "<service>.<event>" for an event ("orders.placed").
	// It names the schema file.
	Name string `json:"name"`
	// Kind is KindCommand or KindEvent.
	Kind string `json:"kind"`
	// Subject is the subject, or for events the subject pattern with its
	// key in angle brackets ("orders.placed.<order-id>").
	Subject string `json:"subject"`
	// CloudEventsType is the CloudEvents type of an event; empty for
	// commands, which are identified by their subject.
	CloudEventsType string `json:"cloudevents_type,omitempty"`
	// DataSchema is the URI of the JSON Schema of a command's body or an
	// event's data: the schema's $id, which every event choreo publishes
	// carries as its CloudEvents dataschema attribute.
	DataSchema string `json:"dataschema"`
	// Stream is the JetStream stream that stores it.
	Stream string `json:"stream"`
	// GoType is the Go type of a command's body or an event's data.
	GoType string `json:"go_type"`
	// Publisher is who publishes it: a service for events, "clients" for
	// commands.
	Publisher string `json:"publisher"`
	// Consumers are the services that consume it.
	Consumers []string `json:"consumers"`
	// Description says what it means.
	Description string `json:"description"`
	// Effect says what publishing the example does.
	Effect string `json:"effect"`
	// ExampleSubject and Example are a concrete subject and body: a bare
	// JSON command, or a full CloudEvents envelope for an event.
	ExampleSubject string          `json:"example_subject"`
	Example        json.RawMessage `json:"example"`

	goType reflect.Type
}

// Schema returns the type's JSON Schema as embedded in the binary.
func (t TypeInfo) Schema() json.RawMessage {
	b, err := SchemaJSON(t.Name)
	if err != nil {
		return nil
	}
	return b
}

// Types returns every command and event type, commands first, in a stable
// order.
func Types() []TypeInfo {
	return append([]TypeInfo(nil), registry...)
}

// DataSchema returns the dataschema attribute of events of CloudEvents
// type ceType: the $id of the JSON Schema of their data. It is "" for a
// type the catalog does not have.
func DataSchema(ceType string) string {
	return dataSchemas[ceType]
}

// dataSchemas maps each event's CloudEvents type to its DataSchema.
var dataSchemas = func() map[string]string {
	m := map[string]string{}
	for _, t := range registry {
		if t.CloudEventsType != "" {
			m[t.CloudEventsType] = t.DataSchema
		}
	}
	return m
}()

// LookupType finds a type by its short name ("orders.placed"), its
// CloudEvents type ("choreo.orders.placed.v1") or its command subject
// ("cmd.orders.place").
func LookupType(s string) (TypeInfo, bool) {
	for _, t := range registry {
		if s == t.Name || (t.CloudEventsType != "" && s == t.CloudEventsType) || (t.Kind == KindCommand && s == t.Subject) {
			return t, true
		}
	}
	return TypeInfo{}, false
}

// exampleTime is the time in every example envelope.
var exampleTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// Example ids. Every example acts on one order, exampleOrder: the command
// examples restock its SKU, place it and cancel it, and an event example
// published by hand reaches the services as if that order's saga had
// published it, so each has the effect it states instead of being
// dead-lettered as news of an order nobody placed.
const (
	exampleOrder = "ord-1001"
	exampleSKU   = "SKU-1"
)

type regEntry struct {
	name, kind, subject, ceType, stream, publisher, desc, effect, exampleSubject string
	exampleKey                                                                   string // the CloudEvents subject: the order id or SKU
	consumers                                                                    []string
	data                                                                         any
}

func command(service, action, desc, effect string, example any) regEntry {
	return regEntry{name: service + "." + action, kind: KindCommand, subject: CommandSubject(service, action),
		stream: StreamCommands, publisher: "clients (storefront, warehouse, operators)", desc: desc, effect: effect,
		consumers: []string{service}, data: example}
}

func event(service, name, ceType, key, exampleKey string, consumers []string, desc string, example any) regEntry {
	effect := "stored on the " + strings.ToUpper(service) + " stream; no service consumes it (it is for observers: nats sub, choreo trace)"
	if len(consumers) > 0 {
		effect = "stored on the " + strings.ToUpper(service) + " stream; " + strings.Join(consumers, " and ") +
			" handle it as if " + service + " had published it"
	}
	return regEntry{name: service + "." + name, kind: KindEvent, subject: EventSubject(service, name, key), ceType: ceType,
		stream: strings.ToUpper(service), publisher: service + " service", desc: desc, effect: effect, consumers: consumers,
		exampleSubject: EventSubject(service, name, exampleKey), exampleKey: exampleKey, data: example}
}

func by(services ...string) []string { return services }

// withEffect replaces the example effect event derives from the consumers
// where they check the example against what they know and refuse it.
func (e regEntry) withEffect(effect string) regEntry {
	e.effect = effect
	return e
}

var exampleLines = []LineItem{{SKU: exampleSKU, Quantity: 2, UnitPrice: 1250}}
var exampleStock = []StockLine{{SKU: exampleSKU, Quantity: 2}}
var exampleTotal = Money{Amount: 2500, Currency: "EUR"}

var registry = buildRegistry([]regEntry{
	command(Inventory, "restock", "Add received stock of one SKU. command_id makes a repeat harmless.",
		"the SKU's available stock grows by quantity (GET /inventory/"+exampleSKU+"); inventory publishes inventory.restocked.<sku>",
		Restock{CommandID: "restock-" + exampleSKU + "-0001", SKU: exampleSKU, Quantity: 10}),
	command(Orders, "place", "Place an order. Placing the same order_id twice creates one order.",
		"order "+exampleOrder+" exists (GET /orders/"+exampleOrder+"), PENDING and then CONFIRMED or CANCELLED by the saga; orders publishes orders.placed.<order-id>",
		PlaceOrder{CommandID: "place-" + exampleOrder, OrderID: exampleOrder, CustomerID: "cust-1", Currency: "EUR", Items: exampleLines}),
	command(Orders, "cancel", "Cancel an order that is not final.",
		"a PENDING order "+exampleOrder+" becomes CANCELLED (reason customer_cancelled); a CONFIRMED one stays CONFIRMED and orders publishes orders.cancel_rejected.<order-id> saying why; a CANCELLED one is left as it is",
		CancelOrder{CommandID: "cancel-" + exampleOrder, OrderID: exampleOrder}),

	event(Orders, EventPlaced, TypeOrderPlaced, "<order-id>", exampleOrder, by(Inventory, Payments),
		"A new order is PENDING. Inventory reserves its stock; payments charges once it is reserved.",
		OrderPlaced{OrderID: exampleOrder, CustomerID: "cust-1", Items: exampleLines, Total: exampleTotal, PlacedAt: exampleTime}),
	event(Orders, EventConfirmed, TypeOrderConfirmed, "<order-id>", exampleOrder, by(Inventory, Payments, Notifications),
		"The order is final and CONFIRMED. Inventory commits the reservation; payments will refund it no more; notifications tells the customer.",
		OrderConfirmed{OrderID: exampleOrder, CustomerID: "cust-1", Items: exampleLines, Total: exampleTotal}).
		withEffect("stored on the ORDERS stream; inventory, payments and notifications handle it as if orders had published it, " +
			"checked against what they know: payments dead-letters it unless it captured that amount for the order, " +
			"notifications if it was told the order is cancelled (as " + exampleOrder + " is when the cancel example found it pending)"),
	event(Orders, EventCancelled, TypeOrderCancelled, "<order-id>", exampleOrder, by(Inventory, Payments, Notifications),
		"The order is final and CANCELLED for reason (out_of_stock, payment_declined, customer_cancelled, timeout). Inventory releases its stock, payments refunds or voids, notifications tells the customer.",
		OrderCancelled{OrderID: exampleOrder, CustomerID: "cust-1", Reason: ReasonCustomerCancelled, Items: exampleLines, Total: exampleTotal}),
	event(Orders, EventCancelRejected, TypeOrderCancelRejected, "<order-id>", exampleOrder, nil,
		"A cancel arrived for an order that can no longer be cancelled; says why nothing happened.",
		OrderCancelRejected{OrderID: exampleOrder, Status: StatusConfirmed, Reason: "order is confirmed and can no longer be cancelled"}),
	event(Orders, EventDeadline, TypeOrderDeadline, "<order-id>", exampleOrder, by(Orders),
		"The order's deadline has come: orders cancels a still-PENDING order with reason timeout. Orders schedules it when the order is placed, as a message held on schedules.orders.deadline.<order-id> that the NATS server fires here at the deadline; the order's final event withdraws it, so it fires only for an order still pending. Orders takes it only when it names the time it scheduled and that time has come: one published by hand is dead-lettered.",
		OrderDeadline{OrderID: exampleOrder, Deadline: exampleTime}).
		withEffect("stored on the ORDERS stream; orders dead-letters it as not the order's deadline (it takes only the deadline it scheduled), and the order is unchanged"),
	event(Inventory, EventReserved, TypeStockReserved, "<order-id>", exampleOrder, by(Orders, Payments),
		"Every line of the order is reserved. Orders records it; payments charges the order.",
		StockReserved{OrderID: exampleOrder, Items: exampleStock}),
	event(Inventory, EventReservationFailed, TypeStockReservationFailed, "<order-id>", exampleOrder, by(Orders),
		"At least one line was short, so nothing is reserved. Orders cancels the order as out_of_stock.",
		StockReservationFailed{OrderID: exampleOrder, Reason: ReasonOutOfStock, Shortages: []Shortage{{SKU: exampleSKU, Requested: 1, Available: 0}}}),
	event(Inventory, EventCommitted, TypeReservationCommitted, "<order-id>", exampleOrder, nil,
		"The reserved stock of a confirmed order is sold.",
		ReservationCommitted{OrderID: exampleOrder, Items: exampleStock}),
	event(Inventory, EventReleased, TypeReservationReleased, "<order-id>", exampleOrder, nil,
		"The stock reserved for a cancelled order is available again.",
		ReservationReleased{OrderID: exampleOrder, Items: exampleStock}),
	event(Inventory, EventRestocked, TypeStockRestocked, "<sku>", exampleSKU, nil,
		"Stock of one SKU was received; available is the new available count.",
		StockRestocked{SKU: exampleSKU, Quantity: 10, Available: 10}),
	event(Payments, EventCaptured, TypePaymentCaptured, "<order-id>", exampleOrder, by(Orders),
		"The order's total was charged. Orders confirms a PENDING order.",
		PaymentCaptured{OrderID: exampleOrder, PaymentID: "pay-1001", Amount: exampleTotal}),
	event(Payments, EventDeclined, TypePaymentDeclined, "<order-id>", exampleOrder, by(Orders),
		"The provider refused the charge. Orders cancels the order as payment_declined.",
		PaymentDeclined{OrderID: exampleOrder, Reason: "card declined"}),
	event(Payments, EventRefunded, TypePaymentRefunded, "<order-id>", exampleOrder, nil,
		"Money captured for a cancelled order was returned.",
		PaymentRefunded{OrderID: exampleOrder, PaymentID: "pay-1001", Amount: exampleTotal}),
	event(Payments, EventVoided, TypePaymentVoided, "<order-id>", exampleOrder, nil,
		"The order was cancelled before any money was taken; the provider will refuse a late capture.",
		PaymentVoided{OrderID: exampleOrder}),
	event(Notifications, EventSent, TypeNotificationSent, "<order-id>", exampleOrder, nil,
		"The customer was told about the order's final state.",
		NotificationSent{NotificationID: "ntf-1001", OrderID: exampleOrder, CustomerID: "cust-1", Status: StatusConfirmed, Channel: "email"}),
})

func buildRegistry(entries []regEntry) []TypeInfo {
	out := make([]TypeInfo, 0, len(entries))
	for _, e := range entries {
		data, err := json.Marshal(e.data)
		if err != nil {
			panic(fmt.Sprintf("catalog: example of %s: %v", e.name, err))
		}
		t := TypeInfo{
			Name: e.name, Kind: e.kind, Subject: e.subject, CloudEventsType: e.ceType, DataSchema: schemaID(e.name), Stream: e.stream,
			GoType: reflect.TypeOf(e.data).String(), Publisher: e.publisher, Description: e.desc, Effect: e.effect,
			ExampleSubject: e.exampleSubject, Example: data, Consumers: e.consumers, goType: reflect.TypeOf(e.data),
		}
		if e.kind == KindCommand {
			t.ExampleSubject = e.subject
		} else {
			env := map[string]any{
				"specversion": "1.0", "id": "example-" + e.name + "-1", "source": Source(strings.SplitN(e.name, ".", 2)[0]) + "/example",
				"type": e.ceType, "subject": e.exampleKey, "time": exampleTime.Format(time.RFC3339),
				"datacontenttype": "application/json", "dataschema": t.DataSchema, "data": json.RawMessage(data),
			}
			// Marshal sorts the keys; build the envelope in CloudEvents order instead.
			t.Example = orderedEnvelope(env)
		}
		out = append(out, t)
	}
	return out
}

func orderedEnvelope(env map[string]any) json.RawMessage {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data"} {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(env[k])
		if err != nil {
			panic(err)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return json.RawMessage(b.String())
}
