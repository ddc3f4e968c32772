package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/openapi"
	"github.com/choreo-dev/choreo/cmd/choreo/internal/openapi/openapitest"
	"github.com/choreo-dev/choreo/events/natstest"
)

// apiCheck is the tests' HTTP client transport (see TestMain): it checks
// every exchange with a choreo a test started against the description that
// choreo serves, and fails the test on a mismatch.
var apiCheck = &openapitest.Transport{}

// watchAPI has apiCheck check the exchanges with the choreo at base,
// started with args, until t ends.
func watchAPI(t *testing.T, base string, args []string) {
	t.Helper()
	auth := slices.ContainsFunc(args, func(a string) bool { return a == "--auth-key-file" || a == "--auth-jwks-url" })
	t.Cleanup(apiCheck.Watch(base, t, openapitest.Options{Auth: auth}))
}

// specOnly are the operations the description has and choreo does not
// serve yet, each with why: a route may be described before it lands, so
// that the branches adding it and its description meet. Empty today.
var specOnly = map[string]string{}

// TestOpenAPIDescribesEveryRoute starts every service, as choreo up does,
// and checks that the description has every route the HTTP API serves —
// and no route it does not serve, but for specOnly — with the security
// the route's authentication enforces: the scope scopeOf gives for a
// service's route, none for the platform's.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	ns := natstest.Start(t)
	ctx := natstest.Context(t)
	dir := t.TempDir()
	sys, err := startSystem(ctx, systemConfig{
		services: modules,
		dbURL:    func(service string) string { return dir + "/" + service + ".db" },
		natsURL:  ns.URL,
		httpAddr: "127.0.0.1:0",
		replicas: 1,
		opts:     serviceOptions{offline: true},
		log:      slog.New(slog.DiscardHandler),
		getenv:   func(string) string { return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.stop()

	undescribed, unserved, err := openapi.Compare(sys.routes.patterns)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range undescribed {
		t.Errorf("%s is served but not in the OpenAPI description (cmd/choreo/internal/openapi/openapi.json)", p)
	}
	for _, p := range unserved {
		if _, ok := specOnly[p]; !ok {
			t.Errorf("%s is in the OpenAPI description but not served", p)
		}
	}
	for p := range specOnly {
		if !slices.Contains(unserved, p) {
			t.Errorf("%s is served now: take it out of specOnly", p)
		}
	}

	ops, err := openapi.Operations()
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		service, ok := sys.routes.services[op.Pattern]
		if !ok {
			if _, pending := specOnly[op.Pattern]; pending {
				continue
			}
			if op.Secured || !slices.Equal(op.Tags, []string{"platform"}) {
				t.Errorf("%s is a platform route, open to anyone: want tag platform and no security, have tags %v, secured %v", op.Pattern, op.Tags, op.Secured)
			}
			continue
		}
		if want := []string{scopeOf(service, op.Pattern)}; !op.Secured || !slices.Equal(op.Scopes, want) {
			t.Errorf("%s: security scopes %v, want %v as the route enforces", op.Pattern, op.Scopes, want)
		}
		if !slices.Equal(op.Tags, []string{service}) {
			t.Errorf("%s: tags %v, want [%s]", op.Pattern, op.Tags, service)
		}
	}
}

// TestOpenAPIServedWithoutAToken checks that /openapi.json is served to
// anyone, as JSON, also with authentication on; that it describes the
// routes served; and that the tests' traffic is indeed checked against
// it, with the security requirements when authentication is on.
func TestOpenAPIServedWithoutAToken(t *testing.T) {
	idp := newTokenIssuer(t, "k1")
	c := startUp(t, "--auth-key-file", idp.jwksFile(t), "--auth-audience", "choreo")
	resp, err := http.Get(c.httpURL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || doc.OpenAPI != "3.1.0" {
		t.Fatalf("GET /openapi.json: %d %s, openapi %q", resp.StatusCode, resp.Header.Get("Content-Type"), doc.OpenAPI)
	}
	for _, path := range []string{"/orders", "/orders/{id}", "/payments/{order_id}", "/notifications/{order_id}", "/inventory/{sku}/restock", "/openapi.json"} {
		if _, ok := doc.Paths[path]; !ok {
			t.Errorf("the served description lacks %s", path)
		}
	}

	// Without a token, the description's security requirement is not
	// met: the validator sees a request it refuses, answered 401 as it
	// says. With the scope, the answer is the stock.
	for _, token := range []string{"", idp.token(t, "alice", "inventory:read", time.Minute)} {
		req, _ := http.NewRequest(http.MethodGet, c.httpURL+"/inventory/SKU-1", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := apiCheck.Checked(c.httpURL); n != 2 {
		t.Errorf("%d exchanges checked against the description, want 2", n)
	}
}
