package simulator_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/payments/provider/simulator"
)

// TestAdminToken: with a token configured, /admin refuses a request
// without it, or with another, and changes nothing; with it, it works.
func TestAdminToken(t *testing.T) {
	s := simulator.New(simulator.Config{AdminToken: "s3cret"})
	send := func(method, path, auth, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: 401 without a problem body", method, path)
		}
		return rec.Code
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cre", "Basic s3cret", "s3cret"} {
		if code := send(http.MethodPost, "/admin/mode", auth, `{"mode":"down"}`); code != http.StatusUnauthorized {
			t.Errorf("POST /admin/mode with %q: got %d, want 401", auth, code)
		}
		for _, path := range []string{"/admin/mode", "/admin/rules", "/admin/stats", "/admin/captures"} {
			if code := send(http.MethodGet, path, auth, ""); code != http.StatusUnauthorized {
				t.Errorf("GET %s with %q: got %d, want 401", path, auth, code)
			}
		}
	}
	if m := s.Mode(); m.Mode != simulator.ModeNormal {
		t.Fatalf("mode after refused requests: %+v, want normal", m)
	}
	if code := send(http.MethodPost, "/admin/mode", "Bearer s3cret", `{"mode":"down"}`); code != http.StatusOK {
		t.Fatalf("POST /admin/mode with the token: got %d, want 200", code)
	}
	if m := s.Mode(); m.Mode != simulator.ModeDown {
		t.Errorf("mode: got %+v, want down", m)
	}
	if code := send(http.MethodGet, "/healthz", "", ""); code != http.StatusOK {
		t.Errorf("GET /healthz without a token: got %d, want 200", code)
	}
	// Without a token configured, /admin stays open.
	open := simulator.New(simulator.Config{})
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/mode", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("open simulator: GET /admin/mode got %d, want 200", rec.Code)
	}
}
