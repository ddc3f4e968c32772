package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// hostileIDs are ids and SKUs an attacker sends: each must be refused at
// the edge as permanent — a 4xx problem over HTTP, a dead letter after one
// delivery over NATS — and never reach a database.
var hostileIDs = map[string]string{
	"NUL":         "o-\x00-1",
	"Escape":      "o-\x1b[2J",
	"Newline":     "o-1\r\nX-Injected: 1",
	"InvalidUTF8": "o-\xff\xfe",
	"Replacement": "o-\ufffd",
	"BidiControl": "o-\u202e1",
	"TooLong":     strings.Repeat("o", catalog.MaxIDBytes+1),
	"Star":        "o-*",
	"GreaterThan": "o->",
	"Dot":         "o.1",
	"Space":       "o 1",
}

func TestBadInputIsRefusedAtTheEdgeSQLite(t *testing.T) {
	t.Parallel()
	runBadInput(t, startUp(t))
}

func TestBadInputIsRefusedAtTheEdgePostgres(t *testing.T) {
	t.Parallel()
	base := sqltest.RequirePostgres(t)
	runBadInput(t, startUp(t, "--db", freshPostgresDatabase(t, base)))
}

func runBadInput(t *testing.T, c *runningChoreo) {
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)

	// What must not change: one SKU with stock.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.httpURL+"/inventory/SKU-OK/restock", strings.NewReader(`{"quantity":10}`))
	req.Header.Set("Content-Type", "application/json")
	mustStatus(t, req, http.StatusAccepted)
	before := getStock(t, c, "SKU-OK")

	place := func(orderID, customerID, sku string) string {
		return fmt.Sprintf(`{"order_id":%s,"customer_id":%s,"currency":"EUR","items":[{"sku":%s,"quantity":1,"unit_price":100}]}`,
			rawJSON(orderID), rawJSON(customerID), rawJSON(sku))
	}
	// Idempotency keys become inbox keys: invalid UTF-8 (which an HTTP
	// header may carry, unlike control characters) and over-long keys
	// are refused too.
	for _, key := range []string{"k-\xff", strings.Repeat("k", catalog.MaxKeyBytes+1)} {
		wantProblem(t, ctx, c.httpURL, http.MethodPost, "/orders", place("o-ok", "cust-1", "SKU-OK"), map[string]string{"Idempotency-Key": key})
		wantProblem(t, ctx, c.httpURL, http.MethodPost, "/inventory/SKU-OK/restock", `{"quantity":1}`, map[string]string{"Idempotency-Key": key})
	}
	published := 0
	for name, bad := range hostileIDs {
		t.Run(name, func(t *testing.T) {
			p := url.PathEscape(bad)
			for _, tc := range []struct{ method, path, body string }{
				{http.MethodPost, "/orders", place(bad, "cust-1", "SKU-OK")},
				{http.MethodPost, "/orders", place("o-ok", bad, "SKU-OK")},
				{http.MethodPost, "/orders", place("o-ok", "cust-1", bad)},
				{http.MethodGet, "/orders/" + p, ""},
				{http.MethodPost, "/orders/" + p + "/cancel", ""},
				{http.MethodGet, "/inventory/" + p, ""},
				{http.MethodPost, "/inventory/" + p + "/restock", `{"quantity":1}`},
				{http.MethodPost, "/inventory/SKU-OK/restock", `{"sku":` + rawJSON(bad) + `,"quantity":1}`},
				{http.MethodGet, "/payments/" + p, ""},
				{http.MethodGet, "/notifications/" + p, ""},
			} {
				wantProblem(t, ctx, c.httpURL, tc.method, tc.path, tc.body, nil)
			}

			for subject, body := range map[string]string{
				catalog.SubjectPlaceOrder:  place(bad, "cust-1", "SKU-OK"),
				catalog.SubjectCancelOrder: `{"order_id":` + rawJSON(bad) + `}`,
				catalog.SubjectRestock:     `{"command_id":"r-bad","sku":` + rawJSON(bad) + `,"quantity":1}`,
			} {
				msg := &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{}}
				msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("bad-%s-%s", name, subject))
				if _, err := js.PublishMsg(ctx, msg); err != nil {
					t.Fatalf("publish %s: %v", subject, err)
				}
				published++
			}
		})
	}

	// A valid command under an idempotency key that cannot be an inbox key.
	for _, key := range []string{"k-\xff", strings.Repeat("k", catalog.MaxKeyBytes+1)} {
		msg := &nats.Msg{Subject: catalog.SubjectRestock, Data: []byte(`{"sku":"SKU-OK","quantity":1}`), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, key)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish restock with Nats-Msg-Id %q: %v", key, err)
		}
		published++
	}

	// Every bad command is dead-lettered at its first delivery, as
	// permanent, with a reason.
	dlqStream, err := js.Stream(ctx, catalog.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, fmt.Sprintf("%d dead letters", published), func() (bool, string) {
		info, err := dlqStream.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.State.Msgs == uint64(published), fmt.Sprintf("%d dead letters", info.State.Msgs)
	})
	for seq := uint64(1); seq <= uint64(published); seq++ {
		m, err := dlqStream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if n := m.Header.Get(dlq.HeaderDeliveryCount); n != "1" {
			t.Errorf("dead letter %d (%s): delivered %s times, want 1 (permanent, never retried); reason %q", seq, m.Subject, n, m.Header.Get(dlq.HeaderReason))
		}
		if m.Header.Get(dlq.HeaderReason) == "" {
			t.Errorf("dead letter %d (%s) has no reason", seq, m.Subject)
		}
	}

	// Nothing else changed: no order, no stock movement, no event but the
	// one restock.
	if n, _ := countSubjects(ctx, js, catalog.StreamOrders, "orders.>"); len(n) != 0 {
		t.Errorf("orders events %v, want none", n)
	}
	if n, _ := countSubjects(ctx, js, catalog.StreamInventory, "inventory.>"); len(n) != 1 || n["inventory.restocked.SKU-OK"] != 1 {
		t.Errorf("inventory events %v, want the one restock", n)
	}
	if after := getStock(t, c, "SKU-OK"); after != before {
		t.Errorf("stock of SKU-OK: got %+v, want %+v", after, before)
	}
	if code := getJSON(t, c.httpURL+"/orders/o-ok", &orderView{}); code != http.StatusNotFound {
		t.Errorf("GET /orders/o-ok: status %d, want 404 (no order placed)", code)
	}
	if strings.Contains(c.stderr.String(), "http: request failed") {
		t.Errorf("a bad request was logged as a failure:\n%s", c.stderr.String())
	}
}

// wantProblem sends a request and checks that the answer is a 4xx RFC
// 9457 problem with a documented type.
func wantProblem(t *testing.T, ctx context.Context, base, method, path, body string, header map[string]string) httpx.Problem {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		t.Fatalf("%s %q: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = []string{v}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %q: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("%s %q %q: status %d, want a 4xx: %s", method, path, body, resp.StatusCode, b)
	}
	var p httpx.Problem
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s %q: content type %q, want application/problem+json: %s", method, path, ct, b)
	} else if err := json.Unmarshal(b, &p); err != nil {
		t.Errorf("%s %q: problem %s: %v", method, path, b, err)
	} else if p.Status != resp.StatusCode || !strings.HasPrefix(p.Type, httpx.ProblemBase) {
		t.Errorf("%s %q: problem %+v, want status %d and a type under %s", method, path, p, resp.StatusCode, httpx.ProblemBase)
	}
	return p
}

// rawJSON quotes s as a JSON string, keeping invalid UTF-8 as raw bytes
// (json.Marshal would replace them) so that they reach the server as sent.
func rawJSON(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
