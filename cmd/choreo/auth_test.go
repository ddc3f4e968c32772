package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/choreo-dev/choreo/events/httpx"
)

type tokenIssuer struct {
	kid string
	key ed25519.PrivateKey
}

func newTokenIssuer(t *testing.T, kid string) tokenIssuer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return tokenIssuer{kid, k}
}

// jwksFile writes the issuer's public key as a JWKS document.
func (i tokenIssuer) jwksFile(t *testing.T) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": i.kid, "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(i.key.Public().(ed25519.PublicKey)),
	}}})
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (i tokenIssuer) token(t *testing.T, sub, scope string, ttl time.Duration) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": sub, "scope": scope, "exp": time.Now().Add(ttl).Unix(), "aud": "choreo"})
	tok.Header["kid"] = i.kid
	s, err := tok.SignedString(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHTTPAuthAndRateLimits runs choreo up with authentication on and a
// rate so low that no token returns during the test: each route needs its
// scope, bad tokens get 401 and missing scopes 403, a flooding client gets
// 429 with Retry-After while another is unaffected, and a refused request
// changes nothing.
func TestHTTPAuthAndRateLimits(t *testing.T) {
	t.Parallel()
	idp, stranger := newTokenIssuer(t, "k1"), newTokenIssuer(t, "k1")
	c := startUp(t, "--auth-key-file", idp.jwksFile(t), "--auth-audience", "choreo", "--rate-limit", "0.001", "--rate-burst", "5")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()

	do := func(method, path, token, body string) (int, http.Header, httpx.Problem) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, c.httpURL+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p httpx.Problem
		if resp.StatusCode >= 400 {
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s %s: %d with content type %q, want a problem", method, path, resp.StatusCode, ct)
			}
			_ = json.NewDecoder(resp.Body).Decode(&p)
		}
		return resp.StatusCode, resp.Header, p
	}
	restock := `{"quantity":5}`
	place := `{"order_id":"o-auth","customer_id":"c","currency":"EUR","items":[{"sku":"SKU-A","quantity":1,"unit_price":1}]}`

	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"NoToken", http.MethodGet, "/inventory/SKU-A", "", "", http.StatusUnauthorized},
		{"Expired", http.MethodPost, "/inventory/SKU-A/restock", idp.token(t, "ops-1", "inventory:write", -time.Hour), restock, http.StatusUnauthorized},
		{"WrongKey", http.MethodPost, "/inventory/SKU-A/restock", stranger.token(t, "ops-2", "inventory:write", time.Hour), restock, http.StatusUnauthorized},
		{"Unsigned", http.MethodPost, "/orders", unsignedToken(t, "shop-1", "orders:write"), place, http.StatusUnauthorized},
		{"ReadScopeCannotWrite", http.MethodPost, "/inventory/SKU-A/restock", idp.token(t, "ops-3", "inventory:read", time.Hour), restock, http.StatusForbidden},
		{"OrdersScopeCannotRestock", http.MethodPost, "/inventory/SKU-A/restock", idp.token(t, "ops-4", "orders:write orders:read", time.Hour), restock, http.StatusForbidden},
		{"WriteScopeCannotRead", http.MethodGet, "/orders/o-auth", idp.token(t, "shop-2", "orders:write", time.Hour), "", http.StatusForbidden},
		{"CancelNeedsWrite", http.MethodPost, "/orders/o-auth/cancel", idp.token(t, "shop-3", "orders:read", time.Hour), "", http.StatusForbidden},
		{"ListNeedsRead", http.MethodGet, "/orders?limit=1", idp.token(t, "shop-4", "orders:write", time.Hour), "", http.StatusForbidden},
	} {
		code, h, p := do(tc.method, tc.path, tc.token, tc.body)
		if code != tc.want || p.Type != httpx.ProblemType(tc.want) {
			t.Errorf("%s: got %d %q, want %d %s", tc.name, code, p.Type, tc.want, httpx.ProblemType(tc.want))
		}
		if h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", tc.name)
		}
	}
	// Nothing the refused requests asked for happened.
	reader := idp.token(t, "auditor", "inventory:read orders:read", time.Hour)
	if code, _, _ := do(http.MethodGet, "/inventory/SKU-A", reader, ""); code != http.StatusOK {
		t.Fatalf("GET /inventory/SKU-A as auditor: %d", code)
	}
	if code, _, _ := do(http.MethodGet, "/orders/o-auth", reader, ""); code != http.StatusNotFound {
		t.Errorf("GET /orders/o-auth: %d, want 404 (never placed)", code)
	}

	// The right scope works.
	if code, _, p := do(http.MethodGet, "/orders?limit=1", idp.token(t, "lister", "orders:read", time.Hour), ""); code != http.StatusOK {
		t.Errorf("GET /orders with orders:read: %d %+v", code, p)
	}
	ops := idp.token(t, "ops-5", "inventory:write", time.Hour)
	if code, _, p := do(http.MethodPost, "/inventory/SKU-A/restock", ops, restock); code != http.StatusAccepted {
		t.Fatalf("restock with inventory:write: %d %+v", code, p)
	}

	// A flood from one client: its burst of 5 (the auditor spent 2), then
	// 429 with Retry-After; another client is unaffected.
	flooded := 0
	for range 20 {
		code, h, p := do(http.MethodGet, "/inventory/SKU-A", reader, "")
		if code == http.StatusTooManyRequests {
			flooded++
			if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 with Retry-After %q, want whole seconds ≥ 1", h.Get("Retry-After"))
			}
			if p.Type != httpx.ProblemType(http.StatusTooManyRequests) {
				t.Errorf("429 problem type %q", p.Type)
			}
		}
	}
	if flooded != 17 {
		t.Errorf("flood: %d of 20 requests refused, want 17 (burst 5, 2 spent before)", flooded)
	}
	other := idp.token(t, "auditor-2", "inventory:read", time.Hour)
	if code, _, _ := do(http.MethodGet, "/inventory/SKU-A", other, ""); code != http.StatusOK {
		t.Errorf("another client during the flood: %d, want 200", code)
	}
	// Health and metrics stay open to probes and scrapers.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, _ := do(http.MethodGet, path, "", ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, code)
		}
	}
}

func unsignedToken(t *testing.T, sub, scope string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": sub, "scope": scope, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCrossSiteFormPost: what an HTML form on another site can send is
// refused before any route runs.
func TestCrossSiteFormPost(t *testing.T) {
	t.Parallel()
	c := startUp(t)
	for _, ct := range []string{"application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"} {
		for _, path := range []string{"/orders", "/orders/o-1/cancel", "/inventory/SKU-X/restock"} {
			req, _ := http.NewRequest(http.MethodPost, c.httpURL+path, strings.NewReader(`{"quantity":1}`))
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s as %s: %d %s, want a 415 problem", path, ct, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
	}
	if s := getStock(t, c, "SKU-X"); s.Available != 0 {
		t.Errorf("SKU-X restocked by a cross-site form: %+v", s)
	}
}

// With authentication on, an Idempotency-Key is its client's: two clients
// that pick the same key place two orders, and each client's retry finds
// its own.
func TestIdempotencyKeysAreEachClients(t *testing.T) {
	t.Parallel()
	idp := newTokenIssuer(t, "k1")
	c := startUp(t, "--auth-key-file", idp.jwksFile(t))
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	place := func(sub string) string {
		t.Helper()
		body := `{"customer_id":"c","currency":"EUR","items":[{"sku":"SKU-K","quantity":1,"unit_price":1}]}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.httpURL+"/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", `"checkout-1"`)
		req.Header.Set("Authorization", "Bearer "+idp.token(t, sub, "orders:write", time.Hour))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct {
			OrderID string `json:"order_id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusAccepted || v.OrderID == "" {
			t.Fatalf("POST /orders as %s: %d %v", sub, resp.StatusCode, err)
		}
		return v.OrderID
	}
	a1, b, a2 := place("shop-a"), place("shop-b"), place("shop-a")
	if a1 != a2 || a1 == b {
		t.Errorf("orders %s (shop-a), %s (shop-b), %s (shop-a again): want shop-a's retry to find its order and shop-b's to be another", a1, b, a2)
	}
}
