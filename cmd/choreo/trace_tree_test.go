package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
)

// TestTraceTree places an order over NATS that runs out of stock and
// checks `choreo trace --tree` draws each message under its cause: the
// command, the placement it caused, the failed reservation, the
// cancellation, and the two things the cancellation caused.
func TestTraceTree(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-TREE", 1)
	id := "tree-" + events.NewID()
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(id, "SKU-TREE", 5)); err != nil {
		t.Fatal(err)
	}
	traceWant(t, ctx, c.natsURL, id, []string{
		"<T> +<G> payments payments.voided." + id + " PAYMENTS:<N> " + catalog.TypePaymentVoided + " voided",
		"<T> +<G> notifications notifications.sent." + id + " NOTIFICATIONS:<N> " + catalog.TypeNotificationSent + " log, CANCELLED (out_of_stock)",
	}, "state: CANCELLED (out_of_stock)")

	code, out, errOut := traceRun(ctx, c.natsURL, id, "--tree")
	if code != 0 {
		t.Fatalf("trace --tree: exit %d, stderr %s", code, errOut)
	}
	t.Logf("trace --tree:\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "TIME AFTER STREAM:SEQ CAUSAL TREE" {
		t.Errorf("header %q", got)
	}
	// The tree column starts where its header does.
	col := len([]rune(strings.SplitN(lines[0], "CAUSAL TREE", 2)[0]))
	var tree []string
	for _, l := range lines[1 : len(lines)-2] {
		cell := string([]rune(l)[col:])
		tree = append(tree, cell[:strings.Index(cell, ":")])
	}
	want := []string{
		"cmd.orders.place",
		"└─ orders.placed",
		"   └─ inventory.reservation_failed",
		"      └─ orders.cancelled",
	}
	if len(tree) != 6 || strings.Join(tree[:4], "\n") != strings.Join(want, "\n") {
		t.Fatalf("tree:\n%s\nwant it to start\n%s\nthen the cancellation's two children", strings.Join(tree, "\n"), strings.Join(want, "\n"))
	}
	kids := map[string]bool{tree[4]: true, tree[5]: true}
	if !(kids["         ├─ notifications.sent"] && kids["         └─ payments.voided"]) && !(kids["         ├─ payments.voided"] && kids["         └─ notifications.sent"]) {
		t.Errorf("the cancellation's children: got %q and %q, want notifications.sent and payments.voided under it", tree[4], tree[5])
	}
	if lines[len(lines)-1] != "state: CANCELLED (out_of_stock)" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}

	// --json --tree: the same order, with depth and each event's cause.
	code, out, errOut = traceRun(ctx, c.natsURL, id, "--tree", "--json")
	if code != 0 {
		t.Fatalf("trace --tree --json: exit %d, stderr %s", code, errOut)
	}
	type treeJSON struct {
		Kind        string `json:"kind"`
		Subject     string `json:"subject"`
		ID          string `json:"id"`
		CausationID string `json:"causation_id"`
		Depth       int    `json:"depth"`
	}
	var rows []treeJSON
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r treeJSON
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 7 || rows[6].Kind != "state" {
		t.Fatalf("got %d lines, want 6 events and the state:\n%s", len(rows), out)
	}
	// Every event below the placement names the row above it at one
	// depth less as its cause.
	for i, r := range rows[:6] {
		if r.Depth < 2 {
			continue
		}
		for j := i - 1; j >= 0; j-- {
			if rows[j].Depth == r.Depth-1 {
				if r.CausationID != rows[j].ID {
					t.Errorf("%s at depth %d: causation_id %q, want its parent %s's id %q", r.Subject, r.Depth, r.CausationID, rows[j].Subject, rows[j].ID)
				}
				break
			}
		}
	}
	if rows[0].Depth != 0 || rows[1].Depth != 1 || rows[5].Depth != 4 {
		t.Errorf("depths: got %d, %d … %d, want 0, 1 … 4", rows[0].Depth, rows[1].Depth, rows[5].Depth)
	}

	code, _, errOut = traceRun(ctx, c.natsURL, id, "--tree", "--follow")
	if code != 2 || !strings.Contains(errOut, "--tree") {
		t.Errorf("--tree --follow: exit %d, stderr %q; want a usage error", code, errOut)
	}
}

// TestTraceTreeLinks checks the links the live test cannot easily make: a
// dead letter hangs under the message it holds (found by its stream
// position, since it lost the Nats-Msg-Id), a deadline's children under
// the fired deadline rather than its schedule, an event whose cause is
// gone starts its own branch, and colliding ids lose no row.
func TestTraceTreeLinks(t *testing.T) {
	rows := []traceRow{
		{Subject: "cmd.orders.place", Stream: "COMMANDS", Sequence: 2, key: "cmd.orders.place:c1"},
		{Subject: "dlq.orders.cmd.orders.place", Stream: "DLQ", Sequence: 1, cause: traceSeqKey("COMMANDS", "2")},
		{Subject: "schedules.orders.deadline.o", Stream: "ORDERS", Sequence: 2, key: "d1", cause: "p1"},
		{Subject: "orders.placed.o", Stream: "ORDERS", Sequence: 1, key: "p1", cause: "http:1"},
		{Subject: "orders.deadline.o", Stream: "ORDERS", Sequence: 3, key: "d1", cause: "p1"},
		{Subject: "orders.cancelled.o", Stream: "ORDERS", Sequence: 4, key: "x1", cause: "d1"},
		{Subject: "a.loop.o", Stream: "ORDERS", Sequence: 5, key: "l1", cause: "l2"},
		{Subject: "b.loop.o", Stream: "ORDERS", Sequence: 6, key: "l2", cause: "l1"},
	}
	var lines []string
	var walk func(n *traceNode, depth int)
	walk = func(n *traceNode, depth int) {
		lines = append(lines, strings.Repeat("  ", depth)+n.row.Subject)
		for _, c := range n.children {
			walk(c, depth+1)
		}
	}
	for _, r := range traceTree(rows) {
		walk(r, 0)
	}
	want := []string{
		"cmd.orders.place",
		"  dlq.orders.cmd.orders.place",
		"orders.placed.o",
		"  schedules.orders.deadline.o",
		"  orders.deadline.o",
		"    orders.cancelled.o",
		// Each names the other as its cause: one of them must be a root.
		"b.loop.o",
		"  a.loop.o",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
