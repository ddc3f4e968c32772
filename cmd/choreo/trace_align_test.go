package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
)

// TestTraceFollowRowsLineUpWithHistory prints a short history (one
// command) and then live rows far wider than it — a long subject, a gap of
// minutes, a long type, a big sequence — and checks that every cell of
// every line starts where the header's column does.
func TestTraceFollowRowsLineUpWithHistory(t *testing.T) {
	id := "0193b3c4-0000-7000-8000-000000000001"
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	p := &tracePrinter{w: &out, minWidths: traceMinWidths(id)}
	history := []traceRow{{Time: t0, Service: "orders", Subject: catalog.SubjectPlaceOrder, Stream: catalog.StreamCommands, Sequence: 1, Type: "command", Summary: "place"}}
	live := []traceRow{
		{Time: t0.Add(5 * time.Millisecond), Service: "orders", Subject: "orders.placed." + id, Stream: catalog.StreamOrders, Sequence: 12, Type: catalog.TypeOrderPlaced, Summary: "cust-1"},
		{Time: t0.Add(2*time.Minute + 1234*time.Millisecond), Service: "inventory", Subject: "inventory.reservation_failed." + id, Stream: catalog.StreamInventory, Sequence: 1234567, Type: catalog.TypeStockReservationFailed, Summary: "out_of_stock"},
		{Time: t0.Add(2 * time.Minute), Service: "notifications", Subject: "notifications.sent." + id, Stream: catalog.StreamNotifications, Sequence: 7, Type: catalog.TypeNotificationSent, Summary: "log, CANCELLED"},
	}
	if err := p.history(history); err != nil {
		t.Fatal(err)
	}
	for _, r := range live {
		if err := p.live(r); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 1+len(history)+len(live) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), 1+len(history)+len(live), out.String())
	}
	header := []rune(lines[0])
	var starts []int
	for _, name := range traceHeader {
		starts = append(starts, len([]rune(strings.SplitN(string(header), name, 2)[0])))
	}
	all := append(history, live...)
	p2 := &tracePrinter{}
	for i, l := range lines[1:] {
		r := all[i]
		p2.stamp(&r)
		want := p2.cells(r)
		rs := []rune(l)
		for c, start := range starts {
			end := len(rs)
			if c+1 < len(starts) {
				end = min(starts[c+1], len(rs))
			}
			if start > len(rs) {
				t.Errorf("line %d is too short for column %s:\n%s\n%s", i+1, traceHeader[c], lines[0], l)
				break
			}
			if got := strings.TrimRight(string(rs[start:end]), " "); got != want[c] {
				t.Errorf("line %d, column %s: got %q at the header's position, want %q:\n%s\n%s", i+1, traceHeader[c], got, want[c], lines[0], l)
			}
		}
	}
}
