package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
)

// Every log record about a message — the consumer's outcome records at
// debug level, a dead letter, a service's own record while it handles
// one — names the service, the message's event id, its subject and its
// trace; durations are readable strings.
func TestLogRecordsAboutMessagesSayWhichAndWhere(t *testing.T) {
	c := startUp(t, "--log-level", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-L", 10)
	placeOrder(t, c, "log-http", "cust-1", "SKU-L", 1)
	body := `{"command_id":"log-nats","order_id":"log-nats","customer_id":"decline-1","currency":"EUR","items":[{"sku":"SKU-L","quantity":1,"unit_price":1000}]}`
	if err := nc.Publish(catalog.SubjectPlaceOrder, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(catalog.SubjectPlaceOrder, []byte("poison")); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ctx, c, "log-http")
	waitFinal(t, ctx, c, "log-nats")
	waitFor(t, ctx, "the poison dead-lettered", func() (bool, string) {
		n, err := countSubjects(ctx, js, catalog.StreamDLQ, "dlq.>")
		return err == nil && len(n) == 1, fmt.Sprint(n)
	})
	c.stop()

	outcomes := map[string]int{}
	about := 0
	sc := bufio.NewScanner(strings.NewReader(c.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %s", sc.Text())
			continue
		}
		if _, ok := rec["subject"]; !ok {
			continue // not about a message
		}
		about++
		for _, key := range []string{"service", "event_id", "subject", "trace_id"} {
			if s, _ := rec[key].(string); s == "" {
				t.Errorf("record about a message without %s: %s", key, sc.Text())
			}
		}
		if o, ok := rec["outcome"].(string); ok {
			outcomes[o]++
			if _, ok := rec["took"].(string); !ok {
				t.Errorf("outcome record whose duration is not a readable string: %s", sc.Text())
			}
		}
		if subject, _ := rec["subject"].(string); strings.HasPrefix(subject, "orders.") || strings.HasPrefix(subject, "payments.") {
			if s, _ := rec["order_id"].(string); s == "" {
				t.Errorf("record about an order's event without order_id: %s", sc.Text())
			}
		}
	}
	if about == 0 {
		t.Fatalf("no record about a message in:\n%s", c.stderr.String())
	}
	if outcomes["handled"] == 0 || outcomes["dead_lettered"] != 1 {
		t.Errorf("outcome records %v, want handled ones and one dead_lettered", outcomes)
	}
}
