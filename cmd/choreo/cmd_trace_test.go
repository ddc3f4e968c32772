package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
)

// traceRun runs `choreo trace args...` against natsURL.
func traceRun(ctx context.Context, natsURL string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(ctx, append([]string{"trace", "--nats-url", natsURL}, args...), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

var (
	traceTimeRE = regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\b`)
	traceSeqRE  = regexp.MustCompile(`\b([A-Z]+):\d+\b`)
	tracePayRE  = regexp.MustCompile(`\(payment [^)]*\)`)
)

// normaliseTrace replaces times, gaps (but the first row's, which must be
// +0s), sequences and payment ids, and collapses the table's padding, so
// lines can be compared exactly.
func normaliseTrace(out string) []string {
	var lines []string
	for i, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		f := strings.Fields(l)
		if i > 1 && len(f) > 1 && (strings.HasPrefix(f[1], "+") || strings.HasPrefix(f[1], "-")) {
			f[1] = "+<G>"
		}
		l = strings.Join(f, " ")
		l = traceTimeRE.ReplaceAllString(l, "<T>")
		l = traceSeqRE.ReplaceAllString(l, "$1:<N>")
		l = tracePayRE.ReplaceAllString(l, "(payment <P>)")
		lines = append(lines, l)
	}
	return lines
}

// traceWant waits until `choreo trace id` prints every wanted row (after
// normalisation) and the wanted state, and returns the normalised lines.
func traceWant(t *testing.T, ctx context.Context, natsURL, id string, rows []string, state string) []string {
	t.Helper()
	var lines []string
	waitFor(t, ctx, "trace of "+id, func() (bool, string) {
		code, out, errOut := traceRun(ctx, natsURL, id)
		if code != 0 {
			return false, fmt.Sprintf("exit %d: %s", code, errOut)
		}
		lines = normaliseTrace(out)
		have := map[string]bool{}
		for _, l := range lines {
			have[l] = true
		}
		for _, r := range rows {
			if !have[r] {
				return false, fmt.Sprintf("no row %q in\n%s", r, strings.Join(lines, "\n"))
			}
		}
		return lines[len(lines)-1] == state, "last line " + lines[len(lines)-1]
	})
	return lines
}

// checkTraceTable checks the header, that rows are sorted by time, that
// the first gap is zero, and that a blank line precedes the state.
func checkTraceTable(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "TIME GAP SERVICE SUBJECT STREAM:SEQ TYPE SUMMARY" {
		t.Errorf("header %q", got)
	}
	if lines[len(lines)-2] != "" || !strings.HasPrefix(lines[len(lines)-1], "state: ") {
		t.Errorf("want a blank line then the state at the end:\n%s", out)
	}
	var prev time.Time
	for i, l := range lines[1 : len(lines)-2] {
		f := strings.Fields(l)
		ts, err := time.Parse(traceTimeFormat, f[0])
		if err != nil {
			t.Fatalf("row %q: time: %v", l, err)
		}
		if i == 0 && f[1] != "+0s" {
			t.Errorf("first row's gap %q, want +0s", f[1])
		}
		if i > 0 {
			if ts.Before(prev) {
				t.Errorf("row %q is before the previous row", l)
			}
			gap, err := time.ParseDuration(strings.TrimPrefix(f[1], "+"))
			if err != nil || (gap-ts.Sub(prev)).Abs() > time.Millisecond {
				t.Errorf("row %q: gap %s, want %s", l, f[1], ts.Sub(prev))
			}
		}
		prev = ts
	}
}

// TestTrace drives real sagas through a `choreo up` — one confirmed (and
// followed live while it runs), one cancelled for lack of stock, one dead
// letter — and traces each of them.
func TestTrace(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, js := c.operator(t) // it forges an event too
	restock(t, ctx, js, "SKU-T", 5)

	// --follow starts before the order exists and must return by itself
	// once the order is final and notified.
	followed := "trace-f-" + events.NewID()
	var followOut, followErr lockedBuffer
	followDone := make(chan int, 1)
	go func() {
		followDone <- run(ctx, []string{"trace", followed, "--follow", "--nats-url", c.natsURL}, &followOut, &followErr, func(string) string { return "" })
	}()
	waitFor(t, ctx, "--follow to print its header", func() (bool, string) {
		return strings.HasPrefix(followOut.String(), "TIME"), followOut.String()
	})

	confirmed := "trace-c-" + events.NewID()
	placeOrder(t, c, confirmed, "cust-A", "SKU-T", 2)
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(followed, "SKU-T", 1)); err != nil {
		t.Fatal(err)
	}
	cancelled := "trace-x-" + events.NewID()
	placeOrder(t, c, cancelled, "cust-B", "SKU-NONE", 3)
	dead := "trace-d-" + events.NewID()
	if _, err := js.Publish(ctx, "orders.placed."+dead, []byte(`{"specversion":"1.0","data":{"order_id":"`+dead+`"}}`)); err != nil {
		t.Fatal(err)
	}
	// A command for an order is found by its body, and so is its dead
	// letter.
	badCommand := "trace-b-" + events.NewID()
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, []byte(`{"command_id":"cmd-`+badCommand+`","order_id":"`+badCommand+`","customer_id":"c","currency":"EURO","items":[{"sku":"A","quantity":1,"unit_price":1}]}`)); err != nil {
		t.Fatal(err)
	}

	t.Run("follow", func(t *testing.T) {
		select {
		case code := <-followDone:
			if code != 0 {
				t.Fatalf("exit %d; stderr %s", code, followErr.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("--follow did not return once the order was final; stdout:\n%s", followOut.String())
		}
		lines := normaliseTrace(followOut.String())
		want := []string{
			"<T> +0s orders cmd.orders.place COMMANDS:<N> command place: cust-1, 1 line, total 5.00 EUR",
			"<T> +<G> orders orders.placed." + followed + " ORDERS:<N> " + catalog.TypeOrderPlaced + " cust-1, 1 line, total 5.00 EUR",
			"<T> +<G> inventory inventory.reserved." + followed + " INVENTORY:<N> " + catalog.TypeStockReserved + " SKU-T×1",
			"<T> +<G> payments payments.captured." + followed + " PAYMENTS:<N> " + catalog.TypePaymentCaptured + " 5.00 EUR (payment <P>)",
			"<T> +<G> orders orders.confirmed." + followed + " ORDERS:<N> " + catalog.TypeOrderConfirmed + " total 5.00 EUR",
			"<T> +<G> notifications notifications.sent." + followed + " NOTIFICATIONS:<N> " + catalog.TypeNotificationSent + " log, CONFIRMED",
		}
		have := strings.Join(lines, "\n")
		for _, w := range want {
			if !strings.Contains(have, w) {
				t.Errorf("--follow printed no %q; got\n%s", w, have)
			}
		}
		if last := lines[len(lines)-1]; last != "state: CONFIRMED" {
			t.Errorf("last line %q, want state: CONFIRMED", last)
		}
		if strings.Count(have, catalog.TypeOrderPlaced) != 1 {
			t.Errorf("orders.placed printed %d times, want once:\n%s", strings.Count(have, catalog.TypeOrderPlaced), have)
		}
	})

	t.Run("confirmed", func(t *testing.T) {
		traceWant(t, ctx, c.natsURL, confirmed, []string{
			"TIME GAP SERVICE SUBJECT STREAM:SEQ TYPE SUMMARY",
			"<T> +0s orders orders.placed." + confirmed + " ORDERS:<N> " + catalog.TypeOrderPlaced + " cust-A, 1 line, total 20.00 EUR",
			"<T> +<G> inventory inventory.reserved." + confirmed + " INVENTORY:<N> " + catalog.TypeStockReserved + " SKU-T×2",
			"<T> +<G> payments payments.captured." + confirmed + " PAYMENTS:<N> " + catalog.TypePaymentCaptured + " 20.00 EUR (payment <P>)",
			"<T> +<G> orders orders.confirmed." + confirmed + " ORDERS:<N> " + catalog.TypeOrderConfirmed + " total 20.00 EUR",
			"<T> +<G> inventory inventory.committed." + confirmed + " INVENTORY:<N> " + catalog.TypeReservationCommitted + " SKU-T×2",
			"<T> +<G> notifications notifications.sent." + confirmed + " NOTIFICATIONS:<N> " + catalog.TypeNotificationSent + " log, CONFIRMED",
		}, "state: CONFIRMED")
		_, out, _ := traceRun(ctx, c.natsURL, confirmed)
		checkTraceTable(t, out)
		if strings.Contains(out, "dead letter") || strings.Contains(out, "command") {
			t.Errorf("an order placed over HTTP with no failure has no command and no dead letter:\n%s", out)
		}

		// --follow on an order already final and notified prints its
		// history and returns by itself.
		start := time.Now()
		code, fout, errOut := traceRun(ctx, c.natsURL, "--follow", confirmed)
		if code != 0 || time.Since(start) > 5*time.Second {
			t.Errorf("--follow on a final order: exit %d after %s; stderr %s", code, time.Since(start), errOut)
		}
		if a, b := normaliseTrace(fout), normaliseTrace(out); strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Errorf("--follow on a final order printed\n%s\nwant\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
	})

	t.Run("cancelled-json", func(t *testing.T) {
		traceWant(t, ctx, c.natsURL, cancelled, []string{
			"<T> +<G> inventory inventory.reservation_failed." + cancelled + " INVENTORY:<N> " + catalog.TypeStockReservationFailed + " out_of_stock: SKU-NONE requested 3, available 0",
			"<T> +<G> orders orders.cancelled." + cancelled + " ORDERS:<N> " + catalog.TypeOrderCancelled + " out_of_stock",
			"<T> +<G> notifications notifications.sent." + cancelled + " NOTIFICATIONS:<N> " + catalog.TypeNotificationSent + " log, CANCELLED (out_of_stock)",
		}, "state: CANCELLED (out_of_stock)")

		code, out, errOut := traceRun(ctx, c.natsURL, "--json", cancelled)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		var prev time.Time
		types := map[string]bool{}
		for i, l := range lines[:len(lines)-1] {
			var e struct {
				Kind     string          `json:"kind"`
				Time     time.Time       `json:"time"`
				GapMS    *int64          `json:"gap_ms"`
				Service  string          `json:"service"`
				Subject  string          `json:"subject"`
				Stream   string          `json:"stream"`
				Sequence uint64          `json:"sequence"`
				Type     string          `json:"type"`
				ID       string          `json:"id"`
				Summary  *string         `json:"summary"`
				Data     json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %d %q: %v", i, l, err)
			}
			if e.Kind != "event" || e.GapMS == nil || e.Summary == nil || e.Sequence == 0 || e.ID == "" || e.Type == "" {
				t.Errorf("line %d: a field is missing: %s", i, l)
			}
			if e.Time.Location() != time.UTC && e.Time.Format("Z07:00") != "Z" {
				t.Errorf("line %d: time %v is not UTC", i, e.Time)
			}
			if !strings.HasPrefix(e.Subject, e.Service+".") || !strings.HasSuffix(e.Subject, "."+cancelled) {
				t.Errorf("line %d: service %q, subject %q", i, e.Service, e.Subject)
			}
			if want := strings.ToUpper(e.Service); e.Stream != want {
				t.Errorf("line %d: stream %q, want %q", i, e.Stream, want)
			}
			var data struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal(e.Data, &data); err != nil || data.OrderID != cancelled {
				t.Errorf("line %d: data %s (%v), want the event's data", i, e.Data, err)
			}
			if i == 0 && *e.GapMS != 0 {
				t.Errorf("first gap_ms %d, want 0", *e.GapMS)
			}
			if i > 0 && *e.GapMS != e.Time.Sub(prev).Milliseconds() {
				t.Errorf("line %d: gap_ms %d, want %d", i, *e.GapMS, e.Time.Sub(prev).Milliseconds())
			}
			if e.Time.Before(prev) {
				t.Errorf("line %d is out of order", i)
			}
			prev = e.Time
			types[e.Type] = true
			if e.Type == catalog.TypeOrderCancelled && *e.Summary != "out_of_stock" {
				t.Errorf("cancelled summary %q", *e.Summary)
			}
		}
		for _, typ := range []string{catalog.TypeOrderPlaced, catalog.TypeStockReservationFailed, catalog.TypeOrderCancelled, catalog.TypeNotificationSent} {
			if !types[typ] {
				t.Errorf("no %s line in\n%s", typ, out)
			}
		}
		var st map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &st); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"kind": "state", "order_id": cancelled, "state": "CANCELLED", "reason": "out_of_stock"}
		if fmt.Sprint(st) != fmt.Sprint(want) {
			t.Errorf("state line %v, want %v", st, want)
		}
	})

	t.Run("dead-letter", func(t *testing.T) {
		lines := traceWant(t, ctx, c.natsURL, dead, []string{
			"<T> +0s orders orders.placed." + dead + " ORDERS:<N> invalid invalid cloudevent: id is missing; source is missing; type is missing",
			"<T> +<G> inventory dlq.inventory.orders.placed." + dead + " DLQ:<N> dead letter invalid cloudevent: id is missing; source is missing; type is missing",
			"<T> +<G> payments dlq.payments.orders.placed." + dead + " DLQ:<N> dead letter invalid cloudevent: id is missing; source is missing; type is missing",
		}, "state: UNKNOWN (no valid orders.placed event)")
		if len(lines) != 6 {
			t.Errorf("want a header, 3 rows, a blank line and the state:\n%s", strings.Join(lines, "\n"))
		}
		code, out, _ := traceRun(ctx, c.natsURL, dead, "--json")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		var dls int
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var e struct {
				Type      string          `json:"type"`
				DLQReason string          `json:"dlq_reason"`
				Data      json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatal(err)
			}
			if e.Type == "dead letter" {
				dls++
				if !strings.Contains(e.DLQReason, "invalid cloudevent") || !strings.Contains(string(e.Data), `"specversion":"1.0"`) {
					t.Errorf("dead letter line %s: want the reason and the original body", l)
				}
			}
		}
		if dls != 2 {
			t.Errorf("%d dead letter lines, want 2:\n%s", dls, out)
		}

		// --follow on an order that never ends stops at Ctrl-C, with the
		// state so far.
		fctx, fcancel := context.WithCancel(ctx)
		var fout, ferr lockedBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(fctx, []string{"trace", "--follow", "--json", "--nats-url", c.natsURL, dead}, &fout, &ferr, func(string) string { return "" })
		}()
		waitFor(t, ctx, "--follow --json to print the history", func() (bool, string) {
			return strings.Count(fout.String(), "\n") >= 3, fout.String()
		})
		fcancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d after Ctrl-C; stderr %s", code, ferr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("--follow did not stop on Ctrl-C")
		}
		fl := strings.Split(strings.TrimSpace(fout.String()), "\n")
		if want := `{"kind":"state","order_id":"` + dead + `","state":"UNKNOWN","reason":"no valid orders.placed event"}`; fl[len(fl)-1] != want {
			t.Errorf("last line %s, want %s", fl[len(fl)-1], want)
		}
	})

	t.Run("dead-command", func(t *testing.T) {
		lines := traceWant(t, ctx, c.natsURL, badCommand, []string{
			"<T> +0s orders cmd.orders.place COMMANDS:<N> command place: c, 1 line, total 0.01 EURO",
		}, "state: UNKNOWN (no valid orders.placed event)")
		if len(lines) != 5 || !strings.HasPrefix(lines[2], "<T> +<G> orders dlq.orders.cmd.orders.place DLQ:<N> dead letter ") || !strings.Contains(lines[2], "ISO 4217") {
			t.Errorf("want the command, then its dead letter with the reason:\n%s", strings.Join(lines, "\n"))
		}
		code, out, _ := traceRun(ctx, c.natsURL, "--json", badCommand)
		if code != 0 || !strings.Contains(out, `"id":"cmd-`+badCommand+`"`) {
			t.Errorf("exit %d; want the command's id in\n%s", code, out)
		}
	})

	t.Run("unknown-order", func(t *testing.T) {
		code, out, errOut := traceRun(ctx, c.natsURL, "no-such-order")
		if code != 1 || out != "" || errOut != "choreo: no events for order no-such-order\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, one line", code, out, errOut)
		}
	})
}

func TestTraceUsageAndConnectErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{}, {"a", "b"}, {"a.b"}, {"--bogus", "a"}} {
		code, _, errOut := traceRun(ctx, "nats://127.0.0.1:1", args...)
		if code != 2 || errOut == "" {
			t.Errorf("trace %v: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
	code, _, errOut := traceRun(ctx, "nats://127.0.0.1:1", "-h")
	if code != 0 || !strings.Contains(errOut, "Example:\n  choreo trace ") || !strings.Contains(errOut, `{"kind":"state"`) || !strings.Contains(errOut, "-follow") {
		t.Errorf("trace -h: exit %d, stderr:\n%s", code, errOut)
	}
	code, out, errOut := traceRun(ctx, "nats://127.0.0.1:1", "some-order")
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no NATS server at nats://127.0.0.1:1") {
		t.Errorf("no server: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestTraceSummaries(t *testing.T) {
	for _, c := range []struct{ typ, data, want string }{
		{catalog.TypeOrderPlaced, `{"customer_id":"cust-1","items":[{"sku":"A","quantity":1,"unit_price":999},{"sku":"B","quantity":2,"unit_price":800}],"total":{"amount":2598,"currency":"EUR"}}`, "cust-1, 2 lines, total 25.98 EUR"},
		{catalog.TypeStockReserved, `{"items":[{"sku":"SKU-1","quantity":2},{"sku":"SKU-2","quantity":1}]}`, "SKU-1×2, SKU-2×1"},
		{catalog.TypeReservationReleased, `{"items":[{"sku":"SKU-1","quantity":2}]}`, "SKU-1×2"},
		{catalog.TypeStockReservationFailed, `{"reason":"out_of_stock","shortages":[{"sku":"A","requested":3,"available":1},{"sku":"B","requested":1,"available":0}]}`, "out_of_stock: A requested 3, available 1; B requested 1, available 0"},
		{catalog.TypePaymentRefunded, `{"payment_id":"p1","amount":{"amount":5,"currency":"USD"}}`, "0.05 USD (payment p1)"},
		{catalog.TypePaymentDeclined, `{"reason":"insufficient_funds"}`, "insufficient_funds"},
		{catalog.TypePaymentVoided, `{}`, "voided"},
		{catalog.TypeOrderCancelled, `{"reason":"timeout"}`, "timeout"},
		{catalog.TypeNotificationSent, `{"channel":"email","status":"CANCELLED","reason":"payment_declined"}`, "email, CANCELLED (payment_declined)"},
		{catalog.TypeOrderCancelRejected, `{"status":"CONFIRMED","reason":"order is final"}`, "CONFIRMED: order is final"},
		{"choreo.unknown.v1", `{}`, ""},
	} {
		if got := summarize(c.typ, []byte(c.data)); got != c.want {
			t.Errorf("%s: %q, want %q", c.typ, got, c.want)
		}
	}
	if got := formatMoney(catalog.Money{Amount: -1205, Currency: "EUR"}); got != "-12.05 EUR" {
		t.Errorf("negative money: %q", got)
	}
	if got := formatGap(-1500 * time.Microsecond); got != "-2ms" {
		t.Errorf("negative gap: %q", got)
	}
}

// When the streams' limits have dropped an order's first events, trace
// and replay say so, and say what the streams keep.
func TestToolsSayWhatRetentionAllows(t *testing.T) {
	c := startUp(t, "--stream-max-msgs", "20")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-RET", 100)
	// One saga at a time: a stream of 20 messages evicts the oldest, and
	// with a dozen sagas in flight on a slow machine it would evict
	// messages no consumer had read yet (which is what the limit means,
	// but not what this test is about).
	var ids []string
	for range 12 {
		id := events.NewID()
		ids = append(ids, id)
		placeOrder(t, c, id, "cust-1", "SKU-RET", 1)
		waitFinal(t, ctx, c, id)
	}
	_, stderr, code := runTool(t, "trace", "--nats-url", c.natsURL, ids[0])
	if code != 0 || !strings.Contains(stderr, "placement is not in the streams any more") || !strings.Contains(stderr, "at most 20 messages") {
		t.Errorf("trace of an order whose start was dropped (exit %d): stderr %q, want a note naming the limit", code, stderr)
	}
	_, stderr, code = runTool(t, "trace", "--nats-url", c.natsURL, "no-such-order")
	if code != 1 || !strings.Contains(stderr, "no events for order no-such-order; the streams keep only their newest messages") || !strings.Contains(stderr, "ORDERS holds") {
		t.Errorf("trace of an unknown order (exit %d): stderr %q, want the history the streams hold", code, stderr)
	}
	_, stderr, code = runTool(t, "replay", "--nats-url", c.natsURL, "--stream", "ORDERS", "--from-seq", "1")
	if code != 0 || !strings.Contains(stderr, "older messages are gone: ORDERS holds") {
		t.Errorf("replay from sequence 1 (exit %d): stderr %q, want a note that older messages are gone", code, stderr)
	}
}
