package orderhttp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
	"github.com/choreo-dev/choreo/orders/orderhttp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type api struct {
	srv   *httptest.Server
	store *orderdb.Store
	db    *sqldb.DB
}

// newAPI serves the orders routes over a real SQLite file.
func newAPI(t *testing.T) *api {
	t.Helper()
	return newAPIOn(t, sqltest.SQLiteURL(t))
}

// newAPIOn serves the orders routes over the database at dbURL.
func newAPIOn(t *testing.T, dbURL string) *api {
	t.Helper()
	db := sqltest.MustOpen(t, dbURL)
	if err := orderdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	store := orderdb.New(db)
	svc, err := orders.New(orders.Config{Store: store, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	orderhttp.Register(mux, svc, idempotency.New(db), nil)
	// As choreo serves it: the request's trace context is taken in, and
	// the handlers work in it.
	srv := httptest.NewServer(otelhttp.NewHandler(mux, "orders", otelhttp.WithPropagators(propagation.TraceContext{})))
	t.Cleanup(srv.Close)
	return &api{srv: srv, store: store, db: db}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (a *api) do(t *testing.T, method, path, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{res.StatusCode, res.Header, b}
}

func (a *api) post(t *testing.T, body string, header map[string]string) response {
	t.Helper()
	return a.do(t, http.MethodPost, "/orders", body, header)
}

func (a *api) backlog(t *testing.T) int {
	t.Helper()
	n, _, err := a.store.Outbox().Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func view(t *testing.T, r response) orderhttp.OrderView {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	var v orderhttp.OrderView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode view %s: %v", r.body, err)
	}
	return v
}

// problem checks r is an RFC 9457 problem with the given status.
func problem(t *testing.T, r response, status int) httpx.Problem {
	t.Helper()
	if r.status != status {
		t.Errorf("status: got %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type: got %q, want application/problem+json", ct)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	for _, f := range []string{"type", "title", "status", "detail"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("problem %s: no %q member", r.body, f)
		}
	}
	var p httpx.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" {
		t.Errorf("problem: got %+v, want status %d and a type, title and detail", p, status)
	}
	return p
}

const placeBody = `{"order_id":"order-1","customer_id":"cust-1","currency":"EUR",
	"items":[{"sku":"SKU-1","quantity":2,"unit_price":1299},{"sku":"SKU-2","quantity":1,"unit_price":500}]}`

const noIDBody = `{"customer_id":"cust-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":1,"unit_price":100}]}`

func TestPostOrder(t *testing.T) {
	a := newAPI(t)
	r := a.post(t, placeBody, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202 (body %s)", r.status, r.body)
	}
	v := view(t, r)
	if v.OrderID != "order-1" || v.Status != catalog.StatusPending || v.Total != (catalog.Money{Amount: 3098, Currency: "EUR"}) ||
		len(v.Items) != 2 || v.CustomerID != "cust-1" || v.Reason != "" {
		t.Errorf("view: got %+v, want order-1 PENDING total 3098 EUR with 2 items", v)
	}
	if loc := r.header.Get("Location"); loc != "/orders/order-1" {
		t.Errorf("Location: got %q, want /orders/order-1", loc)
	}
	if n := a.backlog(t); n != 1 {
		t.Errorf("outbox: %d rows, want 1 orders.placed", n)
	}
}

func TestPostOrderRepeatedIsSameOrder(t *testing.T) {
	a := newAPI(t)
	first := view(t, a.post(t, placeBody, nil))
	for i := range 2 {
		r := a.post(t, placeBody, nil)
		if r.status != http.StatusAccepted {
			t.Errorf("repeat %d: status %d, want 202 like the first answer", i+1, r.status)
		}
		if v := view(t, r); v.OrderID != first.OrderID || !v.PlacedAt.Equal(first.PlacedAt) || v.Total != first.Total {
			t.Errorf("repeat %d: got %+v, want the first order %+v", i+1, v, first)
		}
	}
	if n := a.backlog(t); n != 1 {
		t.Errorf("outbox: %d rows, want still 1", n)
	}
}

// An Idempotency-Key reused for another order is a 422 problem (the IETF
// Idempotency-Key draft's answer) naming the order the earlier request
// placed, and places nothing.
func TestPostOrderIdempotencyKeyReusedIsAConflict(t *testing.T) {
	a := newAPI(t)
	key := map[string]string{"Idempotency-Key": "req-44"}
	first := view(t, a.post(t, noIDBody, key))
	other := strings.Replace(noIDBody, `"quantity":1`, `"quantity":7`, 1)
	if other == noIDBody {
		t.Fatalf("test bug: %s has no quantity 1", noIDBody)
	}
	p := problem(t, a.post(t, other, key), http.StatusUnprocessableEntity)
	if !strings.Contains(p.Detail, "Idempotency-Key was used for a request with another body") || !strings.Contains(p.Detail, "/orders/"+first.OrderID) {
		t.Errorf("detail %q: want it to name the order the earlier request placed (%s)", p.Detail, first.OrderID)
	}
	if n := a.backlog(t); n != 1 {
		t.Errorf("outbox: %d rows, want 1", n)
	}
}

func TestPostOrderIdempotencyKey(t *testing.T) {
	a := newAPI(t)
	key := map[string]string{"Idempotency-Key": "req-42"}
	r1 := a.post(t, noIDBody, key)
	r2 := a.post(t, noIDBody, key)
	if r1.status != http.StatusAccepted || r2.status != http.StatusAccepted {
		t.Fatalf("statuses: got %d and %d, want 202 twice", r1.status, r2.status)
	}
	v1, v2 := view(t, r1), view(t, r2)
	if v1.OrderID == "" || v1.OrderID != v2.OrderID {
		t.Errorf("order ids: got %q and %q, want one id for one Idempotency-Key", v1.OrderID, v2.OrderID)
	}
	if n := a.backlog(t); n != 1 {
		t.Errorf("outbox: %d rows, want 1", n)
	}

	// Another key is another order; no key at all is a new order each time.
	v3 := view(t, a.post(t, noIDBody, map[string]string{"Idempotency-Key": "req-43"}))
	v4 := view(t, a.post(t, noIDBody, nil))
	v5 := view(t, a.post(t, noIDBody, nil))
	ids := map[string]bool{v1.OrderID: true, v3.OrderID: true, v4.OrderID: true, v5.OrderID: true}
	if len(ids) != 4 {
		t.Errorf("order ids %q %q %q %q: want four distinct orders", v1.OrderID, v3.OrderID, v4.OrderID, v5.OrderID)
	}

	// The same key with another body is a client bug, not a retry.
	other := strings.Replace(noIDBody, `"quantity":1`, `"quantity":5`, 1)
	problem(t, a.post(t, other, key), http.StatusUnprocessableEntity)
}

// The header is a structured-field string: "K" and a bare K are one key;
// an empty, malformed or over-long one is a 422 that places nothing.
func TestPostOrderIdempotencyKeyIsAStructuredFieldString(t *testing.T) {
	a := newAPI(t)
	quoted := view(t, a.post(t, noIDBody, map[string]string{"Idempotency-Key": `"req-7"`}))
	bare := view(t, a.post(t, noIDBody, map[string]string{"Idempotency-Key": "req-7"}))
	if quoted.OrderID == "" || quoted.OrderID != bare.OrderID {
		t.Errorf(`"req-7" placed %q, req-7 placed %q: want one order`, quoted.OrderID, bare.OrderID)
	}
	escaped := view(t, a.post(t, noIDBody, map[string]string{"Idempotency-Key": `"a\"b"`}))
	if escaped.OrderID == quoted.OrderID {
		t.Error(`"a\"b" placed the order of req-7`)
	}
	for _, bad := range []string{"", `""`, `"open`, `"a"b"`, `"a\nb"`, strings.Repeat("k", 300)} {
		p := problem(t, a.post(t, noIDBody, map[string]string{"Idempotency-Key": bad}), http.StatusUnprocessableEntity)
		if !strings.Contains(p.Detail, "Idempotency-Key") {
			t.Errorf("key %q: detail %q does not name the header", bad, p.Detail)
		}
	}
	if n := a.backlog(t); n != 2 {
		t.Errorf("outbox: %d rows, want 2 (two orders)", n)
	}
}

func TestPostOrderSameIDDifferentOrderIsConflict(t *testing.T) {
	a := newAPI(t)
	a.post(t, placeBody, nil)
	other := strings.Replace(placeBody, `"cust-1"`, `"cust-2"`, 1)
	problem(t, a.post(t, other, nil), http.StatusConflict)
	if n := a.backlog(t); n != 1 {
		t.Errorf("outbox: %d rows, want 1", n)
	}
}

func TestPostOrderRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		header map[string]string
		status int
	}{
		{"MalformedJSON", `{"order_id":`, nil, http.StatusBadRequest},
		{"NotJSON", `order please`, nil, http.StatusBadRequest},
		{"UnknownField", strings.Replace(placeBody, `"currency"`, `"coupon":"X","currency"`, 1), nil, http.StatusBadRequest},
		{"TrailingContent", placeBody + `{}`, nil, http.StatusBadRequest},
		{"FloatPrice", strings.Replace(placeBody, `1299`, `12.99`, 1), nil, http.StatusBadRequest},
		{"WrongContentType", placeBody, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"NoItems", `{"order_id":"order-1","customer_id":"cust-1","currency":"EUR","items":[]}`, nil, http.StatusUnprocessableEntity},
		{"MissingItems", `{"order_id":"order-1","customer_id":"cust-1","currency":"EUR"}`, nil, http.StatusUnprocessableEntity},
		{"BadCurrency", strings.Replace(placeBody, `"EUR"`, `"EURO"`, 1), nil, http.StatusUnprocessableEntity},
		{"NegativeQuantity", strings.Replace(placeBody, `"quantity":2`, `"quantity":-2`, 1), nil, http.StatusUnprocessableEntity},
		{"MissingCustomer", strings.Replace(placeBody, `"customer_id":"cust-1",`, ``, 1), nil, http.StatusUnprocessableEntity},
		{"DuplicatedSKU", strings.Replace(placeBody, `SKU-2`, `SKU-1`, 1), nil, http.StatusUnprocessableEntity},
		{"TooLarge", `{"order_id":"order-1","customer_id":"` + strings.Repeat("c", httpx.MaxBodyBytes) + `"}`, nil, http.StatusRequestEntityTooLarge},
	}
	a := newAPI(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problem(t, a.post(t, tt.body, tt.header), tt.status)
		})
	}
	counts, err := a.store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 0 || a.backlog(t) != 0 {
		t.Errorf("after bad input: counts %v, outbox %d, want no order and no event", counts, a.backlog(t))
	}
}

func TestPostOrderPropagatesTraceParent(t *testing.T) {
	a := newAPI(t)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if r := a.post(t, placeBody, map[string]string{events.HeaderTraceParent: parent}); r.status != http.StatusAccepted {
		t.Fatalf("status %d", r.status)
	}
	pending, err := a.store.Outbox().Pending(context.Background())
	if err != nil || len(pending) != 1 {
		t.Fatalf("outbox: %d events (err %v), want 1", len(pending), err)
	}
	tp := pending[0].Header.Get(events.HeaderTraceParent)
	want, _ := events.TraceID(parent)
	if got, _ := events.TraceID(tp); got != want {
		t.Errorf("outbox traceparent %q: trace %q, want the request's trace %q", tp, got, want)
	}
}

func TestGetOrder(t *testing.T) {
	a := newAPI(t)
	a.post(t, placeBody, nil)

	r := a.do(t, http.MethodGet, "/orders/order-1", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status: got %d, want 200 (body %s)", r.status, r.body)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	for _, f := range []string{"order_id", "status", "total", "items"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("view %s: no %q field", r.body, f)
		}
	}
	if _, ok := fields["reason"]; ok {
		t.Errorf("view %s: reason present on a pending order, want it omitted", r.body)
	}
	var total map[string]any
	if err := json.Unmarshal(fields["total"], &total); err != nil || total["amount"] != float64(3098) || total["currency"] != "EUR" {
		t.Errorf("total: got %s, want {\"amount\":3098,\"currency\":\"EUR\"}", fields["total"])
	}
	v := view(t, r)
	want := []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1299}, {SKU: "SKU-2", Quantity: 1, UnitPrice: 500}}
	if v.OrderID != "order-1" || v.Status != catalog.StatusPending || len(v.Items) != 2 || v.Items[0] != want[0] || v.Items[1] != want[1] {
		t.Errorf("view: got %+v", v)
	}

	// Once cancelled, the reason shows.
	if _, err := a.store.Apply(context.Background(), inbox.Key{Consumer: catalog.Orders, EventID: "fail-1"}, "order-1",
		func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
			return o, o.OnStockReservationFailed(catalog.StockReservationFailed{OrderID: o.ID}, t0), nil
		}); err != nil {
		t.Fatal(err)
	}
	v = view(t, a.do(t, http.MethodGet, "/orders/order-1", "", nil))
	if v.Status != catalog.StatusCancelled || v.Reason != catalog.ReasonOutOfStock {
		t.Errorf("cancelled view: status=%q reason=%q, want CANCELLED out_of_stock", v.Status, v.Reason)
	}
}

func TestGetUnknownOrder(t *testing.T) {
	a := newAPI(t)
	p := problem(t, a.do(t, http.MethodGet, "/orders/no-such-order", "", nil), http.StatusNotFound)
	if p.Instance != "/orders/no-such-order" {
		t.Errorf("instance: got %q, want the request path", p.Instance)
	}
}

func TestCancelOrder(t *testing.T) {
	a := newAPI(t)
	id := view(t, a.post(t, placeBody, nil)).OrderID
	for i := range 2 { // a repeated cancel answers the same
		r := a.do(t, http.MethodPost, "/orders/"+id+"/cancel", "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("cancel #%d: status %d, want 200: %s", i+1, r.status, r.body)
		}
		if v := view(t, r); v.Status != catalog.StatusCancelled || v.Reason != catalog.ReasonCustomerCancelled {
			t.Errorf("cancel #%d: got %s %q, want CANCELLED customer_cancelled", i+1, v.Status, v.Reason)
		}
	}
	if got := a.backlog(t); got != 2 { // orders.placed and one orders.cancelled
		t.Errorf("outbox: %d events, want 2", got)
	}
}

func TestCancelConfirmedOrderIsConflict(t *testing.T) {
	a := newAPI(t)
	id := view(t, a.post(t, placeBody, nil)).OrderID
	svc, err := orders.New(orders.Config{Store: a.store})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := events.Encode(events.Envelope{SpecVersion: events.SpecVersion, ID: "cap-1", Source: catalog.Source(catalog.Payments),
		Type: catalog.TypePaymentCaptured, Time: t0, Data: []byte(`{"order_id":"` + id + `","payment_id":"p","amount":{"amount":3098,"currency":"EUR"}}`)})
	if err := svc.Handle(context.Background(), &consumer.Message{Subject: "payments.captured." + id, Data: body, Header: nats.Header{}}); err != nil {
		t.Fatal(err)
	}
	p := problem(t, a.do(t, http.MethodPost, "/orders/"+id+"/cancel", "", nil), http.StatusConflict)
	if !strings.Contains(p.Detail, "confirmed") {
		t.Errorf("detail %q: want it to say the order is confirmed", p.Detail)
	}
}

func TestCancelUnknownOrderIsNotFound(t *testing.T) {
	a := newAPI(t)
	problem(t, a.do(t, http.MethodPost, "/orders/nope/cancel", "", nil), http.StatusNotFound)
}

// A POST /orders retried with its Idempotency-Key gets the first response
// again, byte for byte — status, Location, body — although the order has
// been cancelled since; only one order is placed.
func TestPostOrderIdempotencyKeyReplaysTheFirstResponse(t *testing.T) {
	a := newAPI(t)
	key := map[string]string{"Idempotency-Key": "replay-1"}
	first := a.post(t, noIDBody, key)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: status %d: %s", first.status, first.body)
	}
	id := view(t, first).OrderID
	if r := a.do(t, http.MethodPost, "/orders/"+id+"/cancel", "", nil); r.status != http.StatusOK {
		t.Fatalf("cancel: status %d: %s", r.status, r.body)
	}
	// The same body, spaced otherwise, is the same request.
	retry := a.post(t, strings.ReplaceAll(noIDBody, ",", ", "), key)
	if retry.status != first.status || string(retry.body) != string(first.body) ||
		retry.header.Get("Location") != first.header.Get("Location") || retry.header.Get("Content-Type") != first.header.Get("Content-Type") {
		t.Errorf("retry: got %d Location %q %s, want the first response %d Location %q %s",
			retry.status, retry.header.Get("Location"), retry.body, first.status, first.header.Get("Location"), first.body)
	}
	if v := view(t, a.do(t, http.MethodGet, "/orders/"+id, "", nil)); v.Status != catalog.StatusCancelled {
		t.Errorf("order %s: %s, want CANCELLED (the replay changed nothing)", id, v.Status)
	}
}

// A retry that arrives while the first request is still being answered
// gets 409 (the draft's answer), and places nothing; once the first is
// answered, a retry gets its response. On PostgreSQL, where a test can
// hold the first request inside the store: another transaction inserts
// the very order row the request is about to insert, so the request's
// insert waits for it.
func TestPostOrderIdempotencyKeyInFlightIs409(t *testing.T) {
	a := newAPIOn(t, sqltest.PostgresURL(t))
	ctx := context.Background()
	orderID := events.DerivedID("http:inflight-1", "order")
	blocker, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.ExecContext(ctx, `INSERT INTO orders (order_id, customer_id, status, currency, total_amount, items,
		placed_unix_ms, updated_unix_ms) VALUES ($1, 'cust-1', 'PENDING', 'EUR', 100, '[]', 0, 0)`, orderID); err != nil {
		t.Fatal(err)
	}
	key := map[string]string{"Idempotency-Key": "inflight-1"}
	firstDone := make(chan response, 1)
	go func() {
		// Not a.post: a goroutine may not end the test.
		req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/orders", strings.NewReader(noIDBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key["Idempotency-Key"])
		res, err := a.srv.Client().Do(req)
		if err != nil {
			firstDone <- response{body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		firstDone <- response{status: res.StatusCode, header: res.Header, body: body}
	}()
	// Wait until the first request holds the key (and is waiting on the
	// blocker), then retry.
	giveUp := time.Now().Add(time.Minute)
	for claimed := 0; claimed == 0; {
		if err := a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM idempotent_responses WHERE status = 0`).Scan(&claimed); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(giveUp) {
			t.Fatal("the first request never claimed its key")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := a.post(t, noIDBody, key)
	problem(t, r, http.StatusConflict)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("409 without Retry-After")
	}
	if err := blocker.Rollback(); err != nil {
		t.Fatal(err)
	}
	first := <-firstDone
	if first.status != http.StatusAccepted || view(t, first).OrderID != orderID {
		t.Fatalf("first request: got %d %s, want 202 with order %s", first.status, first.body, orderID)
	}
	if retry := a.post(t, noIDBody, key); retry.status != first.status || string(retry.body) != string(first.body) {
		t.Errorf("retry after the first answered: got %d %s, want %d %s", retry.status, retry.body, first.status, first.body)
	}
	if n := a.backlog(t); n != 1 {
		t.Errorf("outbox: %d rows, want 1 orders.placed", n)
	}
}
