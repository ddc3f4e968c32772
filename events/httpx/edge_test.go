package httpx_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/httpx"
)

func edgeMux(hits *int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) { *hits++; httpx.WriteJSON(w, 200, "ok") })
	mux.HandleFunc("POST /orders/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if !httpx.RequireNoBody(w, r) {
			return
		}
		*hits++
		httpx.WriteJSON(w, 200, "ok")
	})
	mux.HandleFunc("GET /dir/", func(w http.ResponseWriter, r *http.Request) { *hits++ })
	return httpx.Edge(mux)
}

// TestEdge: whatever no route answers is still an RFC 9457 problem with
// a documented type, and a browser's cross-site POST never reaches a route.
func TestEdge(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		body       string
		wantStatus int
		wantAllow  string
	}{
		{"UnknownRoute", http.MethodGet, "/nowhere", nil, "", http.StatusNotFound, ""},
		{"WrongMethod", http.MethodDelete, "/orders/o-1", nil, "", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"CrossSiteFormPost", http.MethodPost, "/orders/o-1/cancel", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, "a=b", http.StatusUnsupportedMediaType, ""},
		{"CrossSiteMultipartPost", http.MethodPost, "/nowhere", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "multipart/form-data; boundary=x"}, "--x--", http.StatusUnsupportedMediaType, ""},
		{"CrossSiteBodilessPost", http.MethodPost, "/orders/o-1/cancel", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", http.StatusForbidden, ""},
		{"CrossOriginPost", http.MethodPost, "/orders/o-1/cancel", map[string]string{"Origin": "https://evil.example", "Content-Type": "application/json"}, "{}", http.StatusForbidden, ""},
		{"FormPostWithoutFetchHeaders", http.MethodPost, "/orders/o-1/cancel", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b", http.StatusUnsupportedMediaType, ""},
		{"TextPlainPost", http.MethodPost, "/orders/o-1/cancel", map[string]string{"Content-Type": "text/plain"}, "{}", http.StatusUnsupportedMediaType, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := 0
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			edgeMux(&hits).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status: got %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			p := decodeProblem(t, rec)
			if p.Type != httpx.ProblemType(tt.wantStatus) || !strings.HasPrefix(p.Type, httpx.ProblemBase) || p.Status != tt.wantStatus {
				t.Errorf("problem: got %+v, want type %s", p, httpx.ProblemType(tt.wantStatus))
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow: got %q, want %q", got, tt.wantAllow)
			}
			if hits != 0 {
				t.Errorf("the route ran %d times, want 0", hits)
			}
		})
	}
}

func TestEdgePassesRoutesAndRedirects(t *testing.T) {
	hits := 0
	h := edgeMux(&hits)
	for _, tc := range []struct {
		method, path, ct string
		want             int
	}{
		{http.MethodGet, "/orders/o-1", "", http.StatusOK},
		{http.MethodPost, "/orders/o-1/cancel", "", http.StatusOK},
		{http.MethodPost, "/orders/o-1/cancel", "application/json", http.StatusOK},
		{http.MethodGet, "/dir", "", http.StatusMovedPermanently}, // any redirect
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want && !(tc.want/100 == 3 && rec.Code/100 == 3) {
			t.Errorf("%s %s: got %d, want %d (%s)", tc.method, tc.path, rec.Code, tc.want, rec.Body)
		}
	}
	if hits != 3 {
		t.Errorf("routes ran %d times, want 3", hits)
	}
}

type sqlStateError string

func (e sqlStateError) Error() string {
	return "ERROR: invalid byte sequence (SQLSTATE " + string(e) + ")"
}
func (e sqlStateError) SQLState() string { return string(e) }

// TestWriteErrorDatabaseRefusals: a database refusing the data is not an
// error worth retrying; one that is busy or down still is.
func TestWriteErrorDatabaseRefusals(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("orders: get: %w", sqlStateError("22021")), http.StatusUnprocessableEntity},
		{fmt.Errorf("orders: insert: %w", sqlStateError("23505")), http.StatusUnprocessableEntity},
		{fmt.Errorf("orders: get: %w", sqlStateError("40001")), http.StatusInternalServerError},
		{events.Unavailable(errors.New("provider down")), http.StatusServiceUnavailable},
	} {
		rec := httptest.NewRecorder()
		httpx.WriteError(rec, httptest.NewRequest(http.MethodGet, "/orders/o-1", nil), nil, tc.err)
		if rec.Code != tc.want && !(tc.want/100 == 3 && rec.Code/100 == 3) {
			t.Errorf("%v: got %d, want %d", tc.err, rec.Code, tc.want)
		}
		if p := decodeProblem(t, rec); strings.Contains(p.Detail, "SQLSTATE") {
			t.Errorf("%v: detail %q shows the database's message", tc.err, p.Detail)
		}
	}
}
