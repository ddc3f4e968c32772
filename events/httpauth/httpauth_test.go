package httpauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/choreo-dev/choreo/events/httpauth"
	"github.com/choreo-dev/choreo/events/httpx"
)

type signer struct {
	kid    string
	method jwt.SigningMethod
	key    crypto.Signer
}

func newRSA(t testing.TB, kid string) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid, jwt.SigningMethodRS256, k}
}

func newEC(t testing.TB, kid string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid, jwt.SigningMethodES256, k}
}

func newEd(t testing.TB, kid string) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid, jwt.SigningMethodEdDSA, k}
}

func (s signer) token(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	str, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s signer) jwk() map[string]string {
	switch pub := s.key.Public().(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": s.kid, "use": "sig", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := pub.Bytes()
		return map[string]string{"kty": "EC", "kid": s.kid, "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": s.kid, "crv": "Ed25519", "x": b64(pub)}
	}
	panic("unknown key")
}

func jwks(signers ...signer) []byte {
	var keys []map[string]string
	for _, s := range signers {
		keys = append(keys, s.jwk())
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

func pemOf(t testing.TB, s signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func claims(scope string, exp time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sub": "client-1", "scope": scope, "exp": time.Now().Add(exp).Unix(), "iss": "https://id.example", "aud": "choreo"}
}

// serve sends one request with token to a route requiring orders:write.
func serve(t *testing.T, v *httpauth.Verifier, token string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	var sub string
	h := v.Require("orders:write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub = httpauth.SubjectOf(r.Context())
		w.WriteHeader(http.StatusAccepted)
	}))
	req := httptest.NewRequest(http.MethodPost, "/orders", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, sub
}

func TestRequire(t *testing.T) {
	rsaKey, ecKey, edKey, stranger := newRSA(t, "r1"), newEC(t, "e1"), newEd(t, "d1"), newRSA(t, "r1")
	v, err := httpauth.New(context.Background(), httpauth.Config{KeyFile: writeFile(t, jwks(rsaKey, ecKey, edKey)), Issuer: "https://id.example", Audience: "choreo"})
	if err != nil {
		t.Fatal(err)
	}
	hmac := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("orders:write", time.Hour))
	hmac.Header["kid"] = "r1"
	hmacToken, _ := hmac.SignedString(x509.MarshalPKCS1PublicKey(rsaKey.key.Public().(*rsa.PublicKey)))
	unsigned, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("orders:write", time.Hour)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp := claims("orders:write", time.Hour)
	delete(noExp, "exp")
	otherAud := claims("orders:write", time.Hour)
	otherAud["aud"] = "someone-else"
	scpArray := claims("", time.Hour)
	scpArray["scp"] = []string{"orders:read", "orders:write"}

	tests := []struct {
		name   string
		token  string
		status int
	}{
		{"RSA", rsaKey.token(t, claims("orders:read orders:write", time.Hour)), http.StatusAccepted},
		{"EC", ecKey.token(t, claims("orders:write", time.Hour)), http.StatusAccepted},
		{"Ed25519", edKey.token(t, claims("orders:write", time.Hour)), http.StatusAccepted},
		{"ScpArray", rsaKey.token(t, scpArray), http.StatusAccepted},
		{"Missing", "", http.StatusUnauthorized},
		{"Garbage", "not.a.jwt", http.StatusUnauthorized},
		{"Expired", rsaKey.token(t, claims("orders:write", -time.Hour)), http.StatusUnauthorized},
		{"NoExpiry", rsaKey.token(t, noExp), http.StatusUnauthorized},
		{"Unsigned", unsigned, http.StatusUnauthorized},
		{"WrongKeySameKid", stranger.token(t, claims("orders:write", time.Hour)), http.StatusUnauthorized},
		{"UnknownKid", newEC(t, "nobody").token(t, claims("orders:write", time.Hour)), http.StatusUnauthorized},
		{"HMACWithThePublicKey", hmacToken, http.StatusUnauthorized},
		{"OtherAudience", rsaKey.token(t, otherAud), http.StatusUnauthorized},
		{"MissingScope", rsaKey.token(t, claims("orders:read inventory:write", time.Hour)), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, sub := serve(t, v, tt.token)
			if rec.Code != tt.status {
				t.Fatalf("status: got %d, want %d (%s)", rec.Code, tt.status, rec.Body)
			}
			if tt.status != http.StatusAccepted {
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("no WWW-Authenticate header")
				}
				var p httpx.Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Type != httpx.ProblemType(tt.status) {
					t.Errorf("problem %s: %v, want type %s", rec.Body, err, httpx.ProblemType(tt.status))
				}
				if sub != "" {
					t.Errorf("the route ran")
				}
			} else if sub != "client-1" {
				t.Errorf("subject: got %q, want client-1", sub)
			}
		})
	}
}

func TestPEMKeyFile(t *testing.T) {
	k := newEC(t, "")
	v, err := httpauth.New(context.Background(), httpauth.Config{KeyFile: writeFile(t, pemOf(t, k))})
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := serve(t, v, k.token(t, claims("orders:write", time.Hour))); rec.Code != http.StatusAccepted {
		t.Errorf("status: got %d, want 202 (%s)", rec.Code, rec.Body)
	}
	if rec, _ := serve(t, v, newEC(t, "").token(t, claims("orders:write", time.Hour))); rec.Code != http.StatusUnauthorized {
		t.Errorf("another key: got %d, want 401", rec.Code)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	priv := newRSA(t, "")
	der, _ := x509.MarshalPKCS8PrivateKey(priv.key)
	for name, cfg := range map[string]httpauth.Config{
		"Neither":    {},
		"Both":       {KeyFile: "x", JWKSURL: "http://x"},
		"NoFile":     {KeyFile: filepath.Join(t.TempDir(), "absent")},
		"PrivatePEM": {KeyFile: writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))},
		"EmptyJWKS":  {KeyFile: writeFile(t, []byte(`{"keys":[]}`))},
		"PrivateJWK": {KeyFile: writeFile(t, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"`+b64(make([]byte, 32))+`","d":"x"}]}`))},
	} {
		if _, err := httpauth.New(context.Background(), cfg); err == nil {
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
}

// TestJWKSURLRotation: a key the provider publishes after start is trusted
// as soon as a token names it, without a restart.
func TestJWKSURLRotation(t *testing.T) {
	old, rotated := newRSA(t, "k1"), newEd(t, "k2")
	var doc atomic.Pointer[[]byte]
	first := jwks(old)
	doc.Store(&first)
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*doc.Load())
	}))
	t.Cleanup(idp.Close)
	v, err := httpauth.New(context.Background(), httpauth.Config{JWKSURL: idp.URL, Client: idp.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := serve(t, v, old.token(t, claims("orders:write", time.Hour))); rec.Code != http.StatusAccepted {
		t.Fatalf("old key: got %d, want 202", rec.Code)
	}
	next := jwks(old, rotated)
	doc.Store(&next)
	if rec, _ := serve(t, v, rotated.token(t, claims("orders:write", time.Hour))); rec.Code != http.StatusAccepted {
		t.Fatalf("rotated key: got %d, want 202 (%s)", rec.Code, rec.Body)
	}
	// Made-up key ids do not make the verifier hammer the provider.
	before := fetches.Load()
	for i := range 20 {
		serve(t, v, newEd(t, "bogus-"+strconv.Itoa(i)).token(t, claims("orders:write", time.Hour)))
	}
	if n := fetches.Load() - before; n > 1 {
		t.Errorf("%d JWKS fetches for 20 unknown key ids, want at most 1", n)
	}
}

// TestLimiter: one client flooding gets 429 with Retry-After; another
// client is unaffected. The rate is so low that no token comes back during
// the test, so nothing depends on timing.
func TestLimiter(t *testing.T) {
	l := httpauth.NewLimiter(0.001, 3)
	ok := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	send := func(addr string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/orders/o-1", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		ok.ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if rec := send("192.0.2.1:1000"); rec.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: got %d, want 200", i, rec.Code)
		}
	}
	for i := range 5 {
		rec := send("192.0.2.1:" + strconv.Itoa(2000+i)) // another port, the same client
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("flood request %d: got %d, want 429", i, rec.Code)
		}
		if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After %q, want a whole number of seconds ≥ 1", rec.Header().Get("Retry-After"))
		}
		var p httpx.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Type != httpx.ProblemType(http.StatusTooManyRequests) {
			t.Errorf("problem %s: %v", rec.Body, err)
		}
	}
	if rec := send("192.0.2.2:1000"); rec.Code != http.StatusOK {
		t.Errorf("another client: got %d, want 200", rec.Code)
	}
	if httpauth.NewLimiter(0, 0) != nil {
		t.Errorf("NewLimiter(0, 0) limits; want nil (off)")
	}
}

// TestLimiterBySubject: behind one address, clients with tokens are
// limited apart.
func TestLimiterBySubject(t *testing.T) {
	k := newEd(t, "k")
	v, err := httpauth.New(context.Background(), httpauth.Config{KeyFile: writeFile(t, jwks(k))})
	if err != nil {
		t.Fatal(err)
	}
	h := v.Require("orders:read", httpauth.NewLimiter(0.001, 1).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	send := func(sub string) int {
		c := jwt.MapClaims{"sub": sub, "scope": "orders:read", "exp": time.Now().Add(time.Hour).Unix()}
		req := httptest.NewRequest(http.MethodGet, "/orders/o-1", nil)
		req.Header.Set("Authorization", "Bearer "+k.token(t, c))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if a1, a2, b1 := send("alice"), send("alice"), send("bob"); a1 != 200 || a2 != 429 || b1 != 200 {
		t.Errorf("alice, alice, bob: got %d %d %d, want 200 429 200", a1, a2, b1)
	}
}

func TestClaimsScopes(t *testing.T) {
	c := httpauth.Claims{Scope: " a  b ", Scp: []any{"c", 1}}
	if got := strings.Join(c.Scopes(), ","); got != "a,b,c" {
		t.Errorf("scopes: got %s, want a,b,c", got)
	}
}
