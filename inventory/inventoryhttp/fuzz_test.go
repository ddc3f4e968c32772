package inventoryhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/inventory"
	"github.com/choreo-dev/choreo/inventory/inventoryhttp"
	"github.com/choreo-dev/choreo/inventory/stockdb"
)

func FuzzInventoryRoutesSQLite(f *testing.F) { fuzzInventoryRoutes(f, sqltest.SQLiteURL(f)) }

func FuzzInventoryRoutesPostgres(f *testing.F) { fuzzInventoryRoutes(f, sqltest.PostgresURL(f)) }

// fuzzInventoryRoutes sends a fuzzed SKU, body and Idempotency-Key to the
// inventory routes behind httpx.Edge over a real database: no answer is a
// 5xx, every error is a problem, and stock never goes negative.
func fuzzInventoryRoutes(f *testing.F, dbURL string) {
	db := sqltest.MustOpen(f, dbURL)
	if err := stockdb.Migrate(context.Background(), db); err != nil {
		f.Fatal(err)
	}
	svc, err := inventory.New(inventory.Config{Store: stockdb.New(db)})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	inventoryhttp.Register(mux, svc, idempotency.New(db), nil)
	h := httpx.Edge(mux)
	for _, s := range [][3]string{
		{"SKU-1", `{"quantity":5}`, ""},
		{"SKU-1", `{"command_id":"r-1","sku":"SKU-1","quantity":5}`, "r-1"},
		{"SKU-\x00", `{"quantity":5}`, ""},
		{"SKU-\xff", `{"quantity":5}`, "k\xff"},
		{"SKU-1", `{"sku":"SKU-2","quantity":5}`, ""},
		{"SKU-1", `{"quantity":-5}`, ""},
		{"SKU*", `{"quantity":1}`, ""},
		{"SKU 1", `{"quantity":1e3}`, ""},
		{strings.Repeat("S", 65), `{"quantity":1}`, strings.Repeat("k", 129)},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, sku, body, key string) {
		for _, rq := range []struct{ method, path, body string }{
			{http.MethodPost, "/inventory/" + sku + "/restock", body},
			{http.MethodGet, "/inventory/" + sku, ""},
		} {
			req := httptest.NewRequest(rq.method, "/", strings.NewReader(rq.body))
			req.URL = &url.URL{Path: rq.path}
			if rq.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %q %q: status %d: %s", rq.method, rq.path, rq.body, rec.Code, rec.Body)
			}
			if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s %q: %d with content type %q", rq.method, rq.path, rec.Code, rec.Header().Get("Content-Type"))
			}
		}
		if st, err := svc.Get(context.Background(), "SKU-1"); err == nil && (st.Available < 0 || st.Reserved < 0 || st.Sold < 0) {
			t.Fatalf("stock went negative: %+v", st)
		}
	})
}
