package sagacheck_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/sagacheck"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/streams"
)

// world is what a fabricated choreo shows the checker: its HTTP answers,
// its streams' messages, its outboxes.
type world struct {
	orders   map[string]sagacheck.OrderView
	payments map[string]string
	stock    map[string]sagacheck.StockView
	provider map[string][2]int64 // captured, refunded per key
	events   []message
	backlog  map[string]int64
}

type message struct {
	subject, id string
	amount      int64
}

// healthy is a quiet choreo that kept every promise: o-1 confirmed, o-2
// cancelled out of stock.
func healthy() (world, []sagacheck.Order, map[string]int64) {
	w := world{
		orders: map[string]sagacheck.OrderView{
			"o-1": {OrderID: "o-1", Status: catalog.StatusConfirmed},
			"o-2": {OrderID: "o-2", Status: catalog.StatusCancelled, Reason: catalog.ReasonOutOfStock},
		},
		payments: map[string]string{"o-1": "CAPTURED", "o-2": "VOIDED"},
		stock:    map[string]sagacheck.StockView{"SKU-A": {SKU: "SKU-A", Available: 8, Sold: 2}},
		provider: map[string][2]int64{"o-1": {2000, 0}},
		events: []message{
			{subject: "orders.confirmed.o-1", id: "e-1"},
			{subject: "orders.cancelled.o-2", id: "e-2"},
			{subject: "payments.captured.o-1", id: "e-3", amount: 2000},
			{subject: "notifications.sent.o-1", id: "e-4"},
			{subject: "notifications.sent.o-2", id: "e-5"},
		},
		backlog: map[string]int64{catalog.Orders: 0, catalog.Inventory: 0, catalog.Payments: 0, catalog.Notifications: 0},
	}
	orders := []sagacheck.Order{
		{ID: "o-1", Customer: "cust-1", SKU: "SKU-A", Qty: 2, UnitPrice: 1000},
		{ID: "o-2", Customer: "cust-2", SKU: "SKU-A", Qty: 20, UnitPrice: 1000},
	}
	return w, orders, map[string]int64{"SKU-A": 10}
}

// serve stands the world up: an HTTP server with the services' and the
// provider's read APIs, a NATS server whose streams hold its events.
func (w world) serve(t *testing.T) sagacheck.System {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(rw http.ResponseWriter, r *http.Request) {
		if o, ok := w.orders[r.PathValue("id")]; ok {
			httpx.WriteJSON(rw, http.StatusOK, o)
			return
		}
		http.NotFound(rw, r)
	})
	mux.HandleFunc("GET /payments/{id}", func(rw http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(rw, http.StatusOK, map[string]string{"status": w.payments[r.PathValue("id")]})
	})
	mux.HandleFunc("GET /inventory/{sku}", func(rw http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(rw, http.StatusOK, w.stock[r.PathValue("sku")])
	})
	mux.HandleFunc("GET /admin/captures", func(rw http.ResponseWriter, r *http.Request) {
		var states []map[string]any
		for key, m := range w.provider {
			states = append(states, map[string]any{"key": key,
				"captured": catalog.Money{Amount: m[0], Currency: "EUR"}, "refunded": catalog.Money{Amount: m[1], Currency: "EUR"}})
		}
		httpx.WriteJSON(rw, http.StatusOK, states)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns.URL)
	ctx := natstest.Context(t)
	if err := streams.Ensure(ctx, js, catalog.Streams, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range w.events {
		data, _ := json.Marshal(map[string]any{"order_id": m.subject[strings.LastIndexByte(m.subject, '.')+1:],
			"amount": catalog.Money{Amount: m.amount, Currency: "EUR"}})
		env, _ := json.Marshal(events.Envelope{SpecVersion: events.SpecVersion, ID: m.id, Source: "test", Type: "test",
			Time: time.Now(), Data: data})
		if _, err := js.Publish(ctx, m.subject, env); err != nil {
			t.Fatal(err)
		}
	}
	return sagacheck.System{OrdersURL: srv.URL, InventoryURL: srv.URL, PaymentsURL: srv.URL, ProviderURL: srv.URL, JS: js,
		Outbox: func(context.Context) (map[string]int64, error) { return w.backlog, nil }}
}

func TestHealthySystemPasses(t *testing.T) {
	w, orders, received := healthy()
	r, err := w.serve(t).Check(natstest.Context(t), orders, received)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) != 0 {
		t.Errorf("violations in a healthy system: %q", r.Violations)
	}
	if r.Outcomes["confirmed"] != 1 || r.Outcomes[catalog.ReasonOutOfStock] != 1 {
		t.Errorf("outcomes %v, want one confirmed and one out of stock", r.Outcomes)
	}
}

// Each broken promise is reported: a checker that misses one would let
// the chaos test pass a system that broke it.
func TestEveryBrokenInvariantIsReported(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(w *world, orders []sagacheck.Order, received map[string]int64)
		want   string
	}{
		{"order not final", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.orders["o-2"] = sagacheck.OrderView{OrderID: "o-2", Status: catalog.StatusPending}
		}, "order o-2 is PENDING, not final"},
		{"order lost", func(w *world, _ []sagacheck.Order, _ map[string]int64) { delete(w.orders, "o-2") }, "order o-2 is HTTP 404"},
		{"unknown reason", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.orders["o-2"] = sagacheck.OrderView{OrderID: "o-2", Status: catalog.StatusCancelled, Reason: "bored"}
		}, `reason "bored"`},
		{"cancelled by a customer who never asked", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.orders["o-2"] = sagacheck.OrderView{OrderID: "o-2", Status: catalog.StatusCancelled, Reason: catalog.ReasonCustomerCancelled}
		}, "who never asked"},
		{"accepted cancel not applied", func(_ *world, orders []sagacheck.Order, _ map[string]int64) {
			orders[0].CancelAsked, orders[0].CancelAccepted = true, true
		}, "though its cancel was accepted"},
		{"declining customer confirmed", func(_ *world, orders []sagacheck.Order, _ map[string]int64) {
			orders[0].Customer = "decline-1"
		}, "declining customer"},
		{"payment not terminal", func(w *world, _ []sagacheck.Order, _ map[string]int64) { w.payments["o-1"] = "PENDING" }, `its payment "PENDING"`},
		{"stock not conserved", func(_ *world, _ []sagacheck.Order, received map[string]int64) { received["SKU-A"] = 11 }, "SKU-A: stock"},
		{"stock left reserved", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.stock["SKU-A"] = sagacheck.StockView{SKU: "SKU-A", Available: 7, Reserved: 1, Sold: 2}
		}, "want available 8, reserved 0"},
		{"negative stock", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.stock["SKU-A"] = sagacheck.StockView{SKU: "SKU-A", Available: -1, Reserved: 9, Sold: 2}
		}, "negative stock"},
		{"money kept after a refund at the provider", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.provider["o-2"] = [2]int64{1000, 0}
		}, "o-2 is CANCELLED: the provider captured 1000 refunded 0, want net 0"},
		{"money refunded on a confirmed order", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.events = append(w.events, message{subject: "payments.refunded.o-1", id: "e-6", amount: 2000})
		}, "o-1 is CONFIRMED: events captured 2000 refunded 2000, want net 2000"},
		{"notified twice", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.events = append(w.events, message{subject: "notifications.sent.o-1", id: "e-6"})
		}, "order o-1: 2 notifications"},
		{"never notified", func(w *world, _ []sagacheck.Order, _ map[string]int64) { w.events = w.events[:4] }, "order o-2: 0 notifications"},
		{"event id twice in a stream", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.events = append(w.events, message{subject: "orders.placed.o-1", id: "e-1"})
		}, "ORDERS: event e-1 at sequences 1 and"},
		{"confirmed twice", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.events = append(w.events, message{subject: "orders.confirmed.o-1", id: "e-6"})
		}, "orders.confirmed.o-1: 2 messages"},
		{"confirmation missing", func(w *world, _ []sagacheck.Order, _ map[string]int64) { w.events = w.events[1:] }, "orders.confirmed.>: 0 orders, want 1"},
		{"outbox not empty", func(w *world, _ []sagacheck.Order, _ map[string]int64) { w.backlog[catalog.Payments] = 3 }, "outbox of payments: 3 rows"},
		{"outbox unknown", func(w *world, _ []sagacheck.Order, _ map[string]int64) { delete(w.backlog, catalog.Notifications) }, "outbox of notifications"},
		{"dead letter", func(w *world, _ []sagacheck.Order, _ map[string]int64) {
			w.events = append(w.events, message{subject: catalog.DLQPrefix + ".orders.x", id: "d-1"})
		}, "dead letters on dlq.orders.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, orders, received := healthy()
			tc.mutate(&w, orders, received)
			r, err := w.serve(t).Check(natstest.Context(t), orders, received)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range r.Violations {
				if strings.Contains(v, tc.want) {
					return
				}
			}
			t.Errorf("no violation says %q; got %q", tc.want, r.Violations)
		})
	}
}

// Settle gives up, with the reason, on a system that never goes quiet.
func TestSettleWaitsForQuiet(t *testing.T) {
	w, orders, received := healthy()
	w.backlog[catalog.Orders] = 1
	ctx, cancel := context.WithTimeout(natstest.Context(t), 2*time.Second)
	defer cancel()
	if _, err := w.serve(t).Settle(ctx, orders, received); err == nil || !strings.Contains(err.Error(), "outbox backlog") {
		t.Errorf("Settle: %v, want not quiet for the outbox backlog", err)
	}
}
