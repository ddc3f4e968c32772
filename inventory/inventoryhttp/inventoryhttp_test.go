package inventoryhttp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/inventory"
	"github.com/choreo-dev/choreo/inventory/inventoryhttp"
	"github.com/choreo-dev/choreo/inventory/stockdb"
)

type server struct {
	*httptest.Server
	svc *inventory.Service
}

func newServer(t *testing.T) *server {
	t.Helper()
	db := sqltest.MustOpen(t, sqltest.SQLiteURL(t))
	if err := stockdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	svc, err := inventory.New(inventory.Config{Store: stockdb.New(db)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	inventoryhttp.Register(mux, svc, idempotency.New(db), nil)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &server{Server: srv, svc: svc}
}

// do sends a request and returns the status, the content type and the body.
func (s *server) do(t *testing.T, method, path, body string, header map[string]string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func (s *server) wantStock(t *testing.T, path string, want inventoryhttp.StockView) {
	t.Helper()
	status, _, body := s.do(t, http.MethodGet, path, "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, status, body)
	}
	var got inventoryhttp.StockView
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if got != want {
		t.Errorf("GET %s = %+v, want %+v", path, got, want)
	}
}

func TestGetUnknownSKUIsZero(t *testing.T) {
	s := newServer(t)
	status, _, body := s.do(t, http.MethodGet, "/inventory/NEVER", "", nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	// The documented shape, field for field.
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sku": "NEVER", "available": 0.0, "reserved": 0.0, "sold": 0.0}
	if len(raw) != len(want) {
		t.Errorf("body = %s, want exactly sku, available, reserved, sold", body)
	}
	for k, v := range want {
		if raw[k] != v {
			t.Errorf("%s = %v, want %v", k, raw[k], v)
		}
	}
}

func TestRestock(t *testing.T) {
	s := newServer(t)
	status, _, body := s.do(t, http.MethodPost, "/inventory/SKU-1/restock", `{"quantity":5}`, nil)
	if status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, body)
	}
	var got inventoryhttp.StockView
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if want := (inventoryhttp.StockView{SKU: "SKU-1", Available: 5}); got != want {
		t.Errorf("response = %+v, want %+v", got, want)
	}
	// Without a command id every request is a new restock.
	s.do(t, http.MethodPost, "/inventory/SKU-1/restock", `{"quantity":5}`, nil)
	s.wantStock(t, "/inventory/SKU-1", inventoryhttp.StockView{SKU: "SKU-1", Available: 10})
}

func TestRestockIdempotent(t *testing.T) {
	s := newServer(t)
	for range 2 {
		status, _, body := s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":3}`, map[string]string{"Idempotency-Key": "k-1"})
		if status != http.StatusAccepted {
			t.Fatalf("status %d: %s", status, body)
		}
		var got inventoryhttp.StockView
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Available != 3 {
			t.Errorf("response available = %d, want 3 (the repeat returns the current stock)", got.Available)
		}
	}
	for range 2 {
		s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":2,"command_id":"c-1"}`, nil)
	}
	s.wantStock(t, "/inventory/A", inventoryhttp.StockView{SKU: "A", Available: 5})

	// The same command id over NATS is the same command.
	body, _ := json.Marshal(catalog.Restock{CommandID: "c-1", SKU: "A", Quantity: 2})
	m := &consumer.Message{Subject: catalog.SubjectRestock, Data: body, Header: nats.Header{}, Stream: catalog.StreamCommands, Sequence: 1}
	if err := s.svc.Handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	s.wantStock(t, "/inventory/A", inventoryhttp.StockView{SKU: "A", Available: 5})
}

// An Idempotency-Key reused for another quantity is a 422 problem (the
// IETF Idempotency-Key draft's answer, as for POST /orders); a command_id
// reused so is a 409 naming the earlier command. Neither restocks.
func TestRestockKeyReusedIsAConflict(t *testing.T) {
	s := newServer(t)
	if status, _, body := s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":1}`, map[string]string{"Idempotency-Key": "k-1"}); status != http.StatusAccepted {
		t.Fatalf("first restock: status %d: %s", status, body)
	}
	status, _, body := s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":100}`, map[string]string{"Idempotency-Key": "k-1"})
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), "Idempotency-Key was used for a request with another body") {
		t.Errorf("restock of another quantity under the key: status %d %s, want 422 saying the key was used for another body", status, body)
	}
	status, _, body = s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":100,"command_id":"k-1"}`, nil)
	if status != http.StatusConflict || !strings.Contains(string(body), "was used by an earlier command") {
		t.Errorf("restock of another quantity under the command id: status %d %s, want 409 naming the earlier command", status, body)
	}
	s.wantStock(t, "/inventory/A", inventoryhttp.StockView{SKU: "A", Available: 1})
}

func TestRestockAcceptsTheCommandBody(t *testing.T) {
	s := newServer(t)
	status, _, body := s.do(t, http.MethodPost, "/inventory/A/restock", `{"command_id":"r-1","sku":"A","quantity":4}`, nil)
	if status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, body)
	}
	s.wantStock(t, "/inventory/A", inventoryhttp.StockView{SKU: "A", Available: 4})
}

func TestBadInputIsAProblem(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path, body string
		want       int
	}{
		{"MalformedJSON", http.MethodPost, "/inventory/A/restock", `{"quantity":`, http.StatusBadRequest},
		{"UnknownField", http.MethodPost, "/inventory/A/restock", `{"qty":1}`, http.StatusBadRequest},
		{"TrailingContent", http.MethodPost, "/inventory/A/restock", `{"quantity":1} {}`, http.StatusBadRequest},
		{"MissingQuantity", http.MethodPost, "/inventory/A/restock", `{}`, http.StatusUnprocessableEntity},
		{"NegativeQuantity", http.MethodPost, "/inventory/A/restock", `{"quantity":-1}`, http.StatusUnprocessableEntity},
		{"TooLargeQuantity", http.MethodPost, "/inventory/A/restock", `{"quantity":1000000000}`, http.StatusUnprocessableEntity},
		{"OtherSKUInBody", http.MethodPost, "/inventory/A/restock", `{"sku":"B","quantity":1}`, http.StatusUnprocessableEntity},
		{"BadSKUInPath", http.MethodPost, "/inventory/A.B/restock", `{"quantity":1}`, http.StatusUnprocessableEntity},
		{"BadSKUInGet", http.MethodGet, "/inventory/" + strings.Repeat("x", 65), "", http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			status, ctype, body := s.do(t, tt.method, tt.path, tt.body, nil)
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, body)
			}
			if ctype != "application/problem+json" {
				t.Errorf("content type %q, want application/problem+json", ctype)
			}
			var p httpx.Problem
			if err := json.Unmarshal(body, &p); err != nil || p.Status != tt.want || p.Detail == "" {
				t.Errorf("problem = %+v (%v), want status %d with a detail", p, err, tt.want)
			}
			s.wantStock(t, "/inventory/A", inventoryhttp.StockView{SKU: "A"})
		})
	}
}

// A restock retried with its Idempotency-Key gets the first response again,
// byte for byte, although the stock has changed since, and restocks once.
func TestRestockIdempotencyKeyReplaysTheFirstResponse(t *testing.T) {
	s := newServer(t)
	key := map[string]string{"Idempotency-Key": `"r-7"`}
	status1, ct1, body1 := s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":3}`, key)
	if status1 != http.StatusAccepted {
		t.Fatalf("first restock: status %d: %s", status1, body1)
	}
	s.do(t, http.MethodPost, "/inventory/A/restock", `{"quantity":10}`, nil)
	status2, ct2, body2 := s.do(t, http.MethodPost, "/inventory/A/restock", `{ "quantity": 3 }`, map[string]string{"Idempotency-Key": "r-7"})
	if status2 != status1 || ct2 != ct1 || string(body2) != string(body1) {
		t.Errorf("retry: got %d %q %s, want the first response %d %q %s", status2, ct2, body2, status1, ct1, body1)
	}
	s.wantStock(t, "/inventory/A", inventoryhttp.StockView{SKU: "A", Available: 13})
}
