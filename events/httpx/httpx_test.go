package httpx_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/httpx"
)

func decodeProblem(t testing.TB, rec *httptest.ResponseRecorder) httpx.Problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type: got %q, want application/problem+json", ct)
	}
	var p httpx.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body.String(), err)
	}
	return p
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantDetail string // "" means: the cause must not be shown
	}{
		{"Permanent", events.Permanent(errors.New("quantity must be positive")), http.StatusUnprocessableEntity, "quantity must be positive"},
		{"NotFound", fmt.Errorf("orders: %w", events.NotFound(errors.New("order o-1 not found"))), http.StatusNotFound, "order o-1 not found"},
		{"Conflict", events.Conflict(errors.New("order o-1 is confirmed")), http.StatusConflict, "order o-1 is confirmed"},
		{"Transient", errors.New("dial tcp 10.0.0.7:5432: connection refused"), http.StatusInternalServerError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/orders/o-1/cancel", nil)
			httpx.WriteError(rec, req, nil, tt.err)
			if rec.Code != tt.wantStatus {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantStatus)
			}
			p := decodeProblem(t, rec)
			if p.Status != tt.wantStatus || p.Instance != "/orders/o-1/cancel" || p.Title == "" {
				t.Errorf("problem: got %+v, want status %d, instance /orders/o-1/cancel and a title", p, tt.wantStatus)
			}
			if tt.wantDetail != "" && !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail: got %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
			if tt.wantDetail == "" && strings.Contains(p.Detail, "10.0.0.7") {
				t.Errorf("detail: got %q, want the internal cause hidden", p.Detail)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	type body struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	tests := []struct {
		name        string
		contentType string
		body        string
		wantOK      bool
		wantStatus  int
	}{
		{"Valid", "application/json", `{"sku":"SKU-1","quantity":2}`, true, 0},
		{"ValidWithCharset", "application/json; charset=utf-8", `{"sku":"SKU-1"}`, true, 0},
		{"CloudEventsType", "application/cloudevents+json", `{"sku":"SKU-1"}`, true, 0},
		{"NoContentType", "", `{"sku":"SKU-1"}`, false, http.StatusUnsupportedMediaType},
		{"Form", "application/x-www-form-urlencoded", `{"sku":"SKU-1"}`, false, http.StatusUnsupportedMediaType},
		{"Multipart", "multipart/form-data; boundary=x", `{"sku":"SKU-1"}`, false, http.StatusUnsupportedMediaType},
		{"InvalidUTF8", "application/json", "{\"sku\":\"SKU-\xff\"}", false, http.StatusBadRequest},
		{"UnknownField", "application/json", `{"sku":"SKU-1","qty":2}`, false, http.StatusBadRequest},
		{"Trailing", "application/json", `{"sku":"SKU-1"}{}`, false, http.StatusBadRequest},
		{"Malformed", "application/json", `{"sku":`, false, http.StatusBadRequest},
		{"WrongType", "text/plain", `{"sku":"SKU-1"}`, false, http.StatusUnsupportedMediaType},
		{"TooLarge", "application/json", `{"sku":"` + strings.Repeat("x", httpx.MaxBodyBytes) + `"}`, false, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/inventory/SKU-1/restock", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			var v body
			ok := httpx.DecodeJSON(rec, req, &v)
			if ok != tt.wantOK {
				t.Fatalf("DecodeJSON: got %v, want %v (response %d %s)", ok, tt.wantOK, rec.Code, rec.Body)
			}
			if !ok {
				if rec.Code != tt.wantStatus {
					t.Errorf("status: got %d, want %d", rec.Code, tt.wantStatus)
				}
				decodeProblem(t, rec)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	httpx.WriteJSON(rec, http.StatusAccepted, map[string]string{"order_id": "o-1"})
	if rec.Code != http.StatusAccepted {
		t.Errorf("status: got %d, want %d", rec.Code, http.StatusAccepted)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type: got %q, want application/json", ct)
	}
	if got := strings.TrimSpace(rec.Body.String()); got != `{"order_id":"o-1"}` {
		t.Errorf("body: got %s, want %s", got, `{"order_id":"o-1"}`)
	}
}
