package orderhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
	"github.com/choreo-dev/choreo/orders/orderhttp"
)

func FuzzOrderRoutesSQLite(f *testing.F) { fuzzOrderRoutes(f, sqltest.SQLiteURL(f)) }

func FuzzOrderRoutesPostgres(f *testing.F) { fuzzOrderRoutes(f, sqltest.PostgresURL(f)) }

// fuzzOrderRoutes sends a fuzzed body, path id, Idempotency-Key and
// content type to every orders route, as choreo serves them (behind
// httpx.Edge), over a real database: no answer is a 5xx, every error is a
// problem, and a Location header never carries a control character.
func fuzzOrderRoutes(f *testing.F, dbURL string) {
	db := sqltest.MustOpen(f, dbURL)
	if err := orderdb.Migrate(context.Background(), db); err != nil {
		f.Fatal(err)
	}
	svc, err := orders.New(orders.Config{Store: orderdb.New(db), Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	orderhttp.Register(mux, svc, idempotency.New(db), nil)
	h := httpx.Edge(mux)

	place := `{"order_id":"o-1","customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":2,"unit_price":1299}]}`
	for _, s := range []struct{ body, id, key, ct string }{
		{place, "o-1", "", "application/json"},
		{`{"customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":1,"unit_price":1}]}`, "o-1", "checkout-42", "application/json; charset=utf-8"},
		{"{\"order_id\":\"o-\\u0000\",\"customer_id\":\"c\",\"currency\":\"EUR\",\"items\":[{\"sku\":\"S\",\"quantity\":1,\"unit_price\":1}]}", "o-\x00", "k\xff", "application/json"},
		{"{\"order_id\":\"o-\xff\",\"customer_id\":\"c\",\"currency\":\"EUR\",\"items\":[]}", "o-\xff", "", "application/json"},
		{place, "o*", "", "application/x-www-form-urlencoded"},
		{place, "o>", "", "text/plain"},
		{place, "o.1", "", ""},
		{place, strings.Repeat("o", 200), strings.Repeat("k", 200), "application/json"},
		{`{"order_id":"o-1"}{}`, "o\u202e1", "", "application/json"},
		{`{"order_id":"o-2","customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","quantity":1,"unit_price":1000000000}]}`, "o-2", "", "application/json"},
	} {
		f.Add(s.body, s.id, s.key, s.ct)
	}
	f.Fuzz(func(t *testing.T, body, id, key, ct string) {
		for _, rq := range []struct{ method, path, body string }{
			{http.MethodPost, "/orders", body},
			{http.MethodGet, "/orders/" + id, ""},
			{http.MethodPost, "/orders/" + id + "/cancel", ""},
			{http.MethodPost, "/orders/" + id + "/cancel", body},
		} {
			req := httptest.NewRequest(rq.method, "/", strings.NewReader(rq.body))
			req.URL = &url.URL{Path: rq.path}
			if ct != "" {
				req.Header.Set("Content-Type", ct)
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
			if loc := rec.Header().Get("Location"); strings.ContainsFunc(loc, unicode.IsControl) {
				t.Fatalf("Location %q carries a control character", loc)
			}
		}
	})
}
