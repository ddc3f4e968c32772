package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
)

// serverConsumers is every consumer the server has, per stream, by name.
func serverConsumers(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, spec := range catalog.Streams {
		s, err := js.Stream(ctx, spec.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", spec.Name, err)
		}
		names := []string{}
		l := s.ConsumerNames(ctx)
		for n := range l.Name() {
			names = append(names, n)
		}
		if err := l.Err(); err != nil {
			t.Fatalf("stream %s: consumer names: %v", spec.Name, err)
		}
		slices.Sort(names)
		out[spec.Name] = names
	}
	return out
}

// TestToolsLeaveNoConsumerBehind runs every reading tool against a running
// system and checks that the server's consumers are exactly those it had
// before, on every stream: the tools read through consumers of their own
// and must delete them, not leave them to expire minutes later.
func TestToolsLeaveNoConsumerBehind(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-C", 5)
	order := "consumers-" + events.NewID()
	placeOrder(t, c, order, "cust-C", "SKU-C", 1)
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, []byte(`{"order_id": oops`)); err != nil {
		t.Fatal(err)
	}
	dead := waitDLQ(t, ctx, c.natsURL, catalog.SubjectPlaceOrder)
	traceWant(t, ctx, c.natsURL, order, nil, "state: CONFIRMED")

	before := serverConsumers(t, ctx, js)
	if len(before[catalog.StreamOrders]) == 0 {
		t.Fatalf("no durable consumer on %s: the system is not running", catalog.StreamOrders)
	}
	for _, args := range [][]string{
		{"trace", order},
		{"trace", order, "--json"},
		{"trace", order, "--tree"},
		// Final and notified: --follow prints the history, then returns.
		{"trace", order, "--follow"},
		{"replay", "--stream", catalog.StreamOrders},
		{"replay", "--stream", catalog.StreamCommands, "--subject", "cmd.orders.>"},
		{"dlq", "ls"},
		{"dlq", "show", fmt.Sprint(dead.ID)},
		{"dlq", "retry", "--all", "--dry-run"},
		{"dlq", "discard", "--all", "--subject", "cmd.nothing.>"},
		{"status"},
	} {
		var out, errb bytes.Buffer
		code := run(ctx, append(args, "--nats-url", c.natsURL), &out, &errb, func(string) string { return "" })
		if code != 0 {
			t.Fatalf("choreo %s: exit %d, stderr %s", strings.Join(args, " "), code, errb.String())
		}
		if after := serverConsumers(t, ctx, js); !equalConsumers(before, after) {
			t.Errorf("after choreo %s the server's consumers changed:\n before %v\n after  %v", strings.Join(args, " "), before, after)
		}
	}
}

func equalConsumers(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
