package orders_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
)

// fixture is a Service on a fresh store, with what tests inspect.
type fixture struct {
	svc   *orders.Service
	store *orderdb.Store
	db    *sqldb.DB
	seq   uint64
	// clock is the service's time, for fixtures that move it (see
	// sagaFixture).
	clock time.Time
}

func newFixture(t *testing.T, b sqltest.Backend) *fixture {
	t.Helper()
	db := b.Open(t)
	if err := orderdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	store := orderdb.New(db)
	svc, err := orders.New(orders.Config{Store: store, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &fixture{svc: svc, store: store, db: db}
}

// handle delivers body on subject as the consumer runner would.
func (f *fixture) handle(ctx context.Context, subject string, body []byte, header nats.Header) error {
	f.seq++
	stream := catalog.StreamCommands
	switch {
	case strings.HasPrefix(subject, "inventory."):
		stream = catalog.StreamInventory
	case strings.HasPrefix(subject, "payments."):
		stream = catalog.StreamPayments
	}
	if header == nil {
		header = nats.Header{}
	}
	return f.svc.Handle(ctx, &consumer.Message{
		Subject: subject, Data: body, Header: header, Stream: stream, Sequence: f.seq, Delivered: 1, Time: t0,
	})
}

type outboxRow struct {
	Subject string
	Headers map[string]string
	Env     events.Envelope
}

func (f *fixture) outbox(t *testing.T) []outboxRow {
	t.Helper()
	pending, err := outbox.New(f.db).Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []outboxRow
	for _, m := range pending {
		r := outboxRow{Subject: m.Subject, Headers: map[string]string{}}
		for k := range m.Header {
			r.Headers[k] = m.Header.Get(k)
		}
		if r.Env, err = events.Decode(m.Data); err != nil {
			t.Fatalf("outbox payload %s: %v", m.Data, err)
		}
		out = append(out, r)
	}
	return out
}

func (f *fixture) subjects(t *testing.T) []string {
	t.Helper()
	var s []string
	for _, r := range f.outbox(t) {
		s = append(s, r.Subject)
	}
	return s
}

func (f *fixture) counts(t *testing.T) map[orders.Status]int {
	t.Helper()
	c, err := f.store.Counts(context.Background())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}

func (f *fixture) order(t *testing.T, id string) *orders.Order {
	t.Helper()
	o, err := f.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return o
}

const placeBody = `{"command_id":"cmd-1","order_id":"order-1","customer_id":"cust-1","currency":"EUR",
	"items":[{"sku":"SKU-1","quantity":2,"unit_price":1299},{"sku":"SKU-2","quantity":1,"unit_price":500}]}`

// cloudEvent wraps data in a CloudEvents envelope with the given id and
// type, as a producer's relay would publish it.
func cloudEvent(t *testing.T, id, typ, source string, data any) []byte {
	t.Helper()
	raw, ok := data.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			t.Fatal(err)
		}
	}
	b, err := events.Encode(events.Envelope{
		SpecVersion: events.SpecVersion, ID: id, Source: source, Type: typ, Time: t0, Data: raw,
	})
	if err != nil {
		t.Fatalf("encode cloudevent: %v", err)
	}
	return b
}

func captured(t *testing.T, eventID, orderID string) []byte {
	return cloudEvent(t, eventID, catalog.TypePaymentCaptured, catalog.Source(catalog.Payments), catalog.PaymentCaptured{
		OrderID: orderID, PaymentID: "pay-" + orderID, Amount: catalog.Money{Amount: 3098, Currency: "EUR"},
	})
}

func TestNewRequiresStore(t *testing.T) {
	if _, err := orders.New(orders.Config{}); err == nil {
		t.Error("New without a store: got nil error")
	}
}

func TestHandle(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("PlaceBareJSON", func(t *testing.T) { testPlaceBareJSON(t, b) })
			t.Run("PlaceCloudEvent", func(t *testing.T) { testPlaceCloudEvent(t, b) })
			t.Run("SameCommandTwiceCreatesOneOrder", func(t *testing.T) { testSameCommandTwice(t, b) })
			t.Run("SameOrderIDDifferentItemsIsConflict", func(t *testing.T) { testDifferentOrderSameID(t, b) })
			t.Run("CommandKeyReusedWithAnotherBodyIsConflict", func(t *testing.T) { testCommandKeyReused(t, b) })
			t.Run("InvalidCommandIsPermanent", func(t *testing.T) { testInvalidCommands(t, b) })
			t.Run("UnknownSubjectIsPermanent", func(t *testing.T) { testUnknownSubject(t, b) })
			t.Run("CaptureForUnknownOrderIsPermanent", func(t *testing.T) { testCaptureUnknownOrder(t, b) })
			t.Run("CaptureTwiceConfirmsOnce", func(t *testing.T) { testCaptureTwice(t, b) })
			t.Run("ReservationFailedCancels", func(t *testing.T) { testReservationFailed(t, b) })
			t.Run("StockReservedIsRecorded", func(t *testing.T) { testStockReserved(t, b) })
			t.Run("MalformedEventIsPermanent", func(t *testing.T) { testMalformedEvents(t, b) })
		})
	}
}

func testPlaceBareJSON(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := events.ExtractTrace(context.Background(), nats.Header{events.HeaderTraceParent: {parent}})
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	o := f.order(t, "order-1")
	if o.Status != orders.Pending || o.CustomerID != "cust-1" || o.Total != (catalog.Money{Amount: 3098, Currency: "EUR"}) || len(o.Items) != 2 {
		t.Errorf("order: got %+v, want PENDING cust-1 3098 EUR with 2 lines", o)
	}
	rows := f.outbox(t)
	if len(rows) != 1 {
		t.Fatalf("outbox: %d rows, want 1", len(rows))
	}
	r := rows[0]
	if r.Subject != "orders.placed.order-1" || r.Env.Type != catalog.TypeOrderPlaced || r.Env.Subject != "order-1" ||
		r.Env.ID != events.DerivedID("order-1", "orders.placed") {
		t.Errorf("outbox row: subject=%q type=%q ce-subject=%q id=%q", r.Subject, r.Env.Type, r.Env.Subject, r.Env.ID)
	}
	var data catalog.OrderPlaced
	if err := json.Unmarshal(r.Env.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.OrderID != "order-1" || data.Total.Amount != 3098 || data.Total.Currency != "EUR" {
		t.Errorf("placed data: got %+v", data)
	}
	wantTrace, _ := events.TraceID(parent)
	if got, _ := events.TraceID(r.Headers[events.HeaderTraceParent]); got != wantTrace {
		t.Errorf("traceparent header %q: trace %q, want the incoming trace %q", r.Headers[events.HeaderTraceParent], got, wantTrace)
	}
}

func testPlaceCloudEvent(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	body := cloudEvent(t, "ce-1", "choreo.cmd.orders.place.v1", "/storefront", []byte(placeBody))
	if err := f.handle(context.Background(), catalog.SubjectPlaceOrder, body, nil); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if o := f.order(t, "order-1"); o.Status != orders.Pending || o.Total.Amount != 3098 {
		t.Errorf("order: got %+v", o)
	}
	if got := f.subjects(t); !reflect.DeepEqual(got, []string{"orders.placed.order-1"}) {
		t.Errorf("outbox: got %v", got)
	}
}

func testSameCommandTwice(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	bodies := map[string][]byte{
		"bare":       []byte(placeBody),
		"cloudevent": cloudEvent(t, "ce-1", "choreo.cmd.orders.place.v1", "/storefront", []byte(placeBody)),
	}
	// The same command: twice bare, then in an envelope, then with a
	// Nats-Msg-Id header. Each is a redelivery or a retry of one placement.
	for _, m := range []struct {
		body   []byte
		header nats.Header
	}{
		{bodies["bare"], nil},
		{bodies["bare"], nil},
		{bodies["cloudevent"], nil},
		{bodies["bare"], nats.Header{"Nats-Msg-Id": []string{"msg-1"}}},
	} {
		if err := f.handle(ctx, catalog.SubjectPlaceOrder, m.body, m.header); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	if got, want := f.counts(t), map[orders.Status]int{orders.Pending: 1}; !maps.Equal(got, want) {
		t.Errorf("counts: got %v, want %v", got, want)
	}
	if got := f.subjects(t); !reflect.DeepEqual(got, []string{"orders.placed.order-1"}) {
		t.Errorf("outbox: got %v, want one orders.placed", got)
	}
}

func testDifferentOrderSameID(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
		t.Fatalf("first place: %v", err)
	}
	before := f.order(t, "order-1")
	other := `{"command_id":"cmd-2","order_id":"order-1","customer_id":"cust-1","currency":"EUR",
		"items":[{"sku":"SKU-9","quantity":1,"unit_price":1}]}`
	err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(other), nil)
	if events.KindOf(err) != events.KindConflict || !events.IsPermanent(err) {
		t.Fatalf("place with reused id: got %v (kind %v), want a conflict (dead-lettered)", err, events.KindOf(err))
	}
	if !errors.Is(err, orders.ErrDifferentOrder) {
		t.Errorf("place with reused id: %v does not match ErrDifferentOrder", err)
	}
	if want := `an earlier command placed it at 2025-03-01T12:00:00Z for customer "cust-1", 2 lines, total 3098 EUR`; !strings.Contains(err.Error(), want) {
		t.Errorf("place with reused id: reason %q does not name the earlier command (%s)", err, want)
	}
	if got := f.order(t, "order-1"); !reflect.DeepEqual(got, before) {
		t.Errorf("order changed by a conflicting place:\n got %+v\nwant %+v", got, before)
	}
	if n := len(f.subjects(t)); n != 1 {
		t.Errorf("outbox: %d rows, want 1", n)
	}
	// The conflicting command did not claim its key: once fixed it is not
	// mistaken for a duplicate. (Here: the same key with a valid new order.)
	fixed := strings.Replace(other, `"order_id":"order-1"`, `"order_id":"order-2"`, 1)
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(fixed), nil); err != nil {
		t.Fatalf("fixed command: %v", err)
	}
	if o := f.order(t, "order-2"); o.Items[0].SKU != "SKU-9" {
		t.Errorf("order-2: got %+v", o)
	}
}

func testInvalidCommands(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	tests := []struct{ name, body string }{
		{"MalformedJSON", `{"order_id":"order-1",`},
		{"NotAnObject", `[1,2,3]`},
		{"Empty", ``},
		{"TrailingContent", `{"order_id":"order-1","customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":1}]} {}`},
		{"UnknownField", `{"order_id":"order-1","customer_id":"c","currency":"EUR","coupon":"X","items":[{"sku":"S","quantity":1,"unit_price":1}]}`},
		{"MisspeltField", `{"order_id":"order-1","customer":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":1}]}`},
		{"MissingItems", `{"order_id":"order-1","customer_id":"c","currency":"EUR"}`},
		{"NegativeQuantity", `{"order_id":"order-1","customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":-1,"unit_price":1}]}`},
		{"FractionalQuantity", `{"order_id":"order-1","customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1.5,"unit_price":1}]}`},
		{"FloatMoney", `{"order_id":"order-1","customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":12.99}]}`},
		{"BadCurrency", `{"order_id":"order-1","customer_id":"c","currency":"EURO","items":[{"sku":"S","quantity":1,"unit_price":1}]}`},
		{"MissingOrderID", `{"customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":1}]}`},
		{"CloudEventWithInvalidData", string(cloudEvent(t, "ce-bad", "choreo.cmd.orders.place.v1", "/x",
			[]byte(`{"order_id":"order-1","customer_id":"c","currency":"EUR","items":[]}`)))},
		{"CloudEventMissingID", `{"specversion":"1.0","source":"/x","type":"t","time":"2025-03-01T12:00:00Z","data":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.handle(context.Background(), catalog.SubjectPlaceOrder, []byte(tt.body), nil)
			if !events.IsPermanent(err) {
				t.Errorf("Handle(%s): got %v (kind %v), want a permanent error", tt.body, err, events.KindOf(err))
			}
		})
	}
	if c := f.counts(t); len(c) != 0 {
		t.Errorf("counts after invalid commands: got %v, want no orders", c)
	}
	if s := f.subjects(t); len(s) != 0 {
		t.Errorf("outbox after invalid commands: got %v, want empty", s)
	}
}

func testUnknownSubject(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	for _, subject := range []string{"cmd.orders.refund", "orders.placed.order-1", "payments.refunded.order-1", "cmd.orders.place.extra"} {
		err := f.handle(context.Background(), subject, []byte(placeBody), nil)
		if !events.IsPermanent(err) || !errors.Is(err, catalog.ErrUnknownSubject) {
			t.Errorf("Handle on %q: got %v, want a permanent ErrUnknownSubject", subject, err)
		}
	}
	if c := f.counts(t); len(c) != 0 {
		t.Errorf("counts: got %v, want no orders", c)
	}
}

func testCaptureUnknownOrder(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	err := f.handle(context.Background(), "payments.captured.ghost", captured(t, "evt-1", "ghost"), nil)
	if !events.IsPermanent(err) || !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("capture of unknown order: got %v (kind %v), want a permanent ErrNotFound", err, events.KindOf(err))
	}
	if c := f.counts(t); len(c) != 0 {
		t.Errorf("counts: got %v, want no orders (a capture must not create one)", c)
	}
	if s := f.subjects(t); len(s) != 0 {
		t.Errorf("outbox: got %v, want empty", s)
	}
}

func testCaptureTwice(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
		t.Fatal(err)
	}
	msg := captured(t, "evt-cap-1", "order-1")
	for i := range 2 {
		if err := f.handle(ctx, "payments.captured.order-1", msg, nil); err != nil {
			t.Fatalf("capture delivery %d: %v", i+1, err)
		}
	}
	// A second, distinct capture event (a provider retry) changes nothing.
	if err := f.handle(ctx, "payments.captured.order-1", captured(t, "evt-cap-2", "order-1"), nil); err != nil {
		t.Fatalf("second capture: %v", err)
	}
	o := f.order(t, "order-1")
	if o.Status != orders.Confirmed || o.PaymentID != "pay-order-1" || !o.StockReserved {
		t.Errorf("order: status=%q payment=%q stock_reserved=%v, want CONFIRMED pay-order-1 true", o.Status, o.PaymentID, o.StockReserved)
	}
	want := []string{"orders.placed.order-1", "orders.confirmed.order-1"}
	if got := f.subjects(t); !reflect.DeepEqual(got, want) {
		t.Errorf("outbox: got %v, want %v", got, want)
	}
	if got := sagaEnds(t, f.svc); !reflect.DeepEqual(got, map[string]uint64{"CONFIRMED/": 1}) {
		t.Errorf("saga durations observed: %v, want one CONFIRMED (duplicates do not count)", got)
	}
}

// sagaEnds returns how many saga durations the service observed, by
// "state/reason".
func sagaEnds(t *testing.T, svc *orders.Service) map[string]uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(svc.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["state"]+"/"+labels["reason"]] += m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func testReservationFailed(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
		t.Fatal(err)
	}
	failed := cloudEvent(t, "evt-fail-1", catalog.TypeStockReservationFailed, catalog.Source(catalog.Inventory), catalog.StockReservationFailed{
		OrderID: "order-1", Reason: "insufficient stock", Shortages: []catalog.Shortage{{SKU: "SKU-1", Requested: 2, Available: 1}},
	})
	for range 2 {
		if err := f.handle(ctx, "inventory.reservation_failed.order-1", failed, nil); err != nil {
			t.Fatalf("reservation_failed: %v", err)
		}
	}
	// A capture arriving after the cancellation does not revive the order.
	if err := f.handle(ctx, "payments.captured.order-1", captured(t, "evt-cap-1", "order-1"), nil); err != nil {
		t.Fatalf("late capture: %v", err)
	}
	o := f.order(t, "order-1")
	if o.Status != orders.Cancelled || o.Reason != catalog.ReasonOutOfStock || o.PaymentID != "" {
		t.Errorf("order: status=%q reason=%q payment=%q, want CANCELLED out_of_stock and no payment", o.Status, o.Reason, o.PaymentID)
	}
	rows := f.outbox(t)
	if len(rows) != 2 || rows[1].Subject != "orders.cancelled.order-1" {
		t.Fatalf("outbox: got %v, want placed then one cancelled", f.subjects(t))
	}
	var data catalog.OrderCancelled
	if err := json.Unmarshal(rows[1].Env.Data, &data); err != nil || data.Reason != catalog.ReasonOutOfStock {
		t.Errorf("cancelled data: got %s (%v), want reason out_of_stock", rows[1].Env.Data, err)
	}
	if got := sagaEnds(t, f.svc); !reflect.DeepEqual(got, map[string]uint64{"CANCELLED/out_of_stock": 1}) {
		t.Errorf("saga durations observed: %v, want one CANCELLED out_of_stock", got)
	}
}

func testStockReserved(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
		t.Fatal(err)
	}
	reserved := cloudEvent(t, "evt-res-1", catalog.TypeStockReserved, catalog.Source(catalog.Inventory), catalog.StockReserved{
		OrderID: "order-1", Items: []catalog.StockLine{{SKU: "SKU-1", Quantity: 2}, {SKU: "SKU-2", Quantity: 1}},
	})
	if err := f.handle(ctx, "inventory.reserved.order-1", reserved, nil); err != nil {
		t.Fatalf("reserved: %v", err)
	}
	if o := f.order(t, "order-1"); !o.StockReserved || o.Status != orders.Pending {
		t.Errorf("order: stock_reserved=%v status=%q, want true PENDING", o.StockReserved, o.Status)
	}
	if n := len(f.subjects(t)); n != 1 {
		t.Errorf("outbox: %d rows, want 1 (a reservation publishes nothing)", n)
	}
}

func testMalformedEvents(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, subject string
		body          []byte
	}{
		{"BareJSONNotCloudEvent", "payments.captured.order-1", []byte(`{"order_id":"order-1","payment_id":"p"}`)},
		{"WrongType", "payments.captured.order-1", cloudEvent(t, "e1", catalog.TypeStockReserved, "/x", catalog.StockReserved{OrderID: "order-1"})},
		{"InvalidData", "payments.captured.order-1", cloudEvent(t, "e2", catalog.TypePaymentCaptured, "/x", map[string]any{"order_id": "order-1", "amount": map[string]any{"amount": 1, "currency": "EURO"}})},
		{"MissingOrderID", "inventory.reservation_failed.order-1", cloudEvent(t, "e3", catalog.TypeStockReservationFailed, "/x", map[string]any{"reason": "x"})},
		{"Garbage", "inventory.reserved.order-1", []byte("not json")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := f.handle(ctx, tt.subject, tt.body, nil); !events.IsPermanent(err) {
				t.Errorf("Handle: got %v (kind %v), want permanent", err, events.KindOf(err))
			}
		})
	}
	if o := f.order(t, "order-1"); o.Status != orders.Pending || o.StockReserved {
		t.Errorf("order changed by malformed events: %+v", o)
	}
}

// A command key (Nats-Msg-Id or command_id) arriving again with another
// body is a conflict naming the earlier command, dead-lettered, and
// changes nothing — cancel and place alike; the same body is a duplicate.
func testCommandKeyReused(t *testing.T, b sqltest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
	mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(strings.NewReplacer(`"order-1"`, `"order-2"`, `"cmd-1"`, `"cmd-2"`).Replace(placeBody)))
	before := f.subjects(t)
	wantConflict := func(what string, err error) {
		t.Helper()
		if events.KindOf(err) != events.KindConflict || !errors.Is(err, inbox.ErrKeyReused) || !strings.Contains(err.Error(), "earlier command (COMMANDS:") {
			t.Errorf("%s: got %v, want a conflict wrapping inbox.ErrKeyReused naming the earlier command", what, err)
		}
	}
	// cmd-1 placed order-1: a place of order-3 under the same key.
	wantConflict("place under a used key", f.handle(ctx, catalog.SubjectPlaceOrder, []byte(strings.ReplaceAll(placeBody, `"order-1"`, `"order-3"`)), nil))
	if _, err := f.svc.Get(ctx, "order-3"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("order-3: got %v, want none", err)
	}
	// c-1 cancels order-1; the same key cannot cancel order-2.
	mustHandle(t, f, catalog.SubjectCancelOrder, cancelBody("order-1", "c-1"))
	before = append(before, "orders.cancelled.order-1")
	wantConflict("cancel of another order under a used key", f.handle(ctx, catalog.SubjectCancelOrder, cancelBody("order-2", "c-1"), nil))
	// A Nats-Msg-Id is a key like command_id.
	h := nats.Header{}
	h.Set("Nats-Msg-Id", "c-1")
	wantConflict("cancel under a used Nats-Msg-Id", f.handle(ctx, catalog.SubjectCancelOrder, cancelBody("order-2", ""), h))
	mustHandle(t, f, catalog.SubjectCancelOrder, cancelBody("order-1", "c-1")) // the same body: a duplicate
	if o := f.order(t, "order-2"); o.Status != orders.Pending {
		t.Errorf("order-2: got %s, want PENDING", o.Status)
	}
	if got := f.subjects(t); !slices.Equal(got, before) {
		t.Errorf("outbox: got %v, want %v", got, before)
	}
}
