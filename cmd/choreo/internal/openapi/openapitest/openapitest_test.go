package openapitest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/openapi"
	"github.com/choreo-dev/choreo/cmd/choreo/internal/openapi/openapitest"
	"github.com/choreo-dev/choreo/events/httpx"
)

type recorder struct {
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.errs
	r.errs = nil
	return out
}

const goodOrder = `{"order_id":"o-1","customer_id":"c-1","status":"PENDING","total":{"amount":1299,"currency":"EUR"},` +
	`"items":[{"sku":"SKU-1","quantity":1,"unit_price":1299}],"placed_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`

// TestTransportFindsEveryKindOfMismatch runs a server that answers some
// requests as the description says and others not, and checks that the
// transport reports exactly the mismatches.
func TestTransportFindsEveryKindOfMismatch(t *testing.T) {
	described := []string{"GET /orders/{id}", "POST /orders", "GET /healthz"}
	doc, err := openapi.Document(append(described, "GET /openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "o-1":
			httpx.WriteJSON(w, http.StatusOK, rawJSON(goodOrder))
		case "extra-field":
			httpx.WriteJSON(w, http.StatusOK, rawJSON(strings.Replace(goodOrder, `"status"`, `"secret":1,"status"`, 1)))
		case "teapot":
			httpx.WriteProblem(w, r, http.StatusTeapot, "Teapot", "")
		default:
			httpx.WriteJSON(w, http.StatusOK, rawJSON(`{"order_id":5}`))
		}
	})
	// Accepts whatever it is sent: the description does not.
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/orders/o-1")
		httpx.WriteJSON(w, http.StatusAccepted, rawJSON(goodOrder))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /undescribed", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	srv := httptest.NewServer(httpx.Edge(mux))
	defer srv.Close()

	check := &openapitest.Transport{}
	var rec recorder
	stop := check.Watch(srv.URL, &rec, openapitest.Options{})
	defer stop()
	client := &http.Client{Transport: check}

	for _, tt := range []struct {
		method, path, body string
		want               string // in the reported mismatch; "" for none
	}{
		{"GET", "/orders/o-1", "", ""},
		{"GET", "/healthz", "", ""},
		{"GET", "/no-such-route", "", ""}, // 404 problem from the edge
		{"DELETE", "/orders/o-1", "", ""}, // 405 problem from the edge
		{"GET", "/orders/wrong-shape", "", "the response is not one the description lists"},
		{"GET", "/orders/extra-field", "", "the response is not one the description lists"},
		{"GET", "/orders/teapot", "", "the response is not one the description lists"},
		{"GET", "/undescribed", "", "no operation of the description is this request"},
		{"POST", "/orders", `{"customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":1}]}`, ""},
		{"POST", "/orders", `{"customer_id":"c-1","currency":"EURO","items":[]}`, "the description refuses the request, the server accepted it"},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
		if tt.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		errs := rec.take()
		switch {
		case tt.want == "" && len(errs) > 0:
			t.Errorf("%s %s: reported %q, want nothing", tt.method, tt.path, errs)
		case tt.want != "" && (len(errs) != 1 || !strings.Contains(errs[0], tt.want)):
			t.Errorf("%s %s: reported %q, want one mismatch saying %q", tt.method, tt.path, errs, tt.want)
		}
	}
	if n := check.Checked(srv.URL); n != 10 {
		t.Errorf("%d exchanges checked, want 10", n)
	}

	// A server not watched is not checked.
	stop()
	resp, err := client.Get(srv.URL + "/undescribed")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if errs := rec.take(); len(errs) > 0 {
		t.Errorf("a server no longer watched: reported %q", errs)
	}
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }
