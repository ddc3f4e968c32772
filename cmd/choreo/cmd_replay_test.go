package main

import (
	"bufio"
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqldb"
)

func runTool(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut strings.Builder
	code = run(context.Background(), args, &out, &errOut, func(string) string { return "" })
	return out.String(), errOut.String(), code
}

// TestReplayIntoReproducesTheLiveRun re-runs each service's real handlers
// on the events of a confirmed order, against an empty scratch store: what
// they would publish is what the live services did publish — the same
// event ids on the same subjects — and nothing is published.
func TestReplayIntoReproducesTheLiveRun(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-RP", 10)
	id := events.NewID()
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(id, "SKU-RP", 2)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, id)
	settled(t, ctx, c, js, id, 1000)
	wantStock(t, ctx, c, "SKU-RP", 8, 0, 2)

	lastSeqs := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, s := range catalog.Streams {
			st, err := js.Stream(ctx, s.Name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out[s.Name] = info.State.LastSeq
		}
		return out
	}
	before := lastSeqs()

	for _, tc := range []struct {
		service string
		stream  string // the stream its output lands on
	}{
		{catalog.Inventory, catalog.StreamInventory},
		{catalog.Payments, catalog.StreamPayments},
		{catalog.Notifications, catalog.StreamNotifications},
		{catalog.Orders, catalog.StreamOrders},
	} {
		t.Run(tc.service, func(t *testing.T) {
			stdout, stderr, code := runTool(t, "replay", "--nats-url", c.natsURL, "--into", tc.service, "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var would []string
			sc := bufio.NewScanner(strings.NewReader(stdout))
			for sc.Scan() {
				var line struct {
					Kind    string `json:"kind"`
					Subject string `json:"subject"`
					ID      string `json:"id"`
					Outcome string `json:"outcome"`
				}
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				// The deadline's schedule was published live too, but
				// the server removed it from the stream when the order
				// ended: it is not there to compare with.
				if line.Kind == "would_publish" && strings.HasSuffix(line.Subject, "."+id) && !strings.HasPrefix(line.Subject, catalog.SchedulePrefix+".") {
					would = append(would, line.Subject+" "+line.ID)
				}
				if line.Kind == "" && line.Outcome != "handled" && line.Outcome != outcomeNotConsumed {
					t.Errorf("%s: %s", line.Subject, line.Outcome)
				}
			}
			if tc.service == catalog.Inventory {
				wantStockChange(t, stdout)
			}
			live := liveEvents(t, ctx, c, tc.stream, id)
			slices.Sort(would)
			if !slices.Equal(would, live) {
				t.Errorf("replay would publish\n  %v\nthe live run published\n  %v", would, live)
			}
		})
	}
	if after := lastSeqs(); !maps.Equal(before, after) {
		t.Errorf("stream last sequences changed: before %v, after %v — replay published something", before, after)
	}

	// For people: a table, and the outcome of each message.
	stdout, _, code := runTool(t, "replay", "--nats-url", c.natsURL, "--stream", "ORDERS", "--subject", "orders.*."+id, "--into", "inventory")
	if code != 0 || !strings.Contains(stdout, "OUTCOME") || !strings.Contains(stdout, "handled") || !strings.Contains(stdout, "nothing was published") ||
		!strings.Contains(stdout, "state would change") {
		t.Errorf("table output (exit %d):\n%s", code, stdout)
	}
}

// TestReplayIntoACopiedStore replays into inventory on a copy of its live
// store, as the README shows (--db data/inventory.db): the messages the
// copy had already handled are duplicates and publish nothing again; the
// others are handled and would publish what the live run published. The
// table has its OUTCOME column and its "would publish" section even when
// every message is a duplicate.
func TestReplayIntoACopiedStore(t *testing.T) {
	data := t.TempDir()
	c := startUp(t, "--data", data)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-CP", 10)

	handled := events.NewID() // handled by the store before it is copied
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(handled, "SKU-CP", 1)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, handled)
	settled(t, ctx, c, js, handled, 500)
	copied := filepath.Join(t.TempDir(), "inventory.db")
	mustCopySQLite(t, ctx, filepath.Join(data, "inventory.db"), copied)

	later := events.NewID() // placed after the copy was taken
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(later, "SKU-CP", 2)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, later)
	settled(t, ctx, c, js, later, 1000)

	stdout, stderr, code := runTool(t, "replay", "--nats-url", c.natsURL, "--stream", "ORDERS",
		"--subject", "orders.*."+handled+",orders.*."+later, "--into", "inventory", "--db", copied, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	outcomes := map[string][]string{} // by order
	var would []string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var line struct{ Kind, Subject, ID, Outcome, Reason string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		switch {
		case line.Kind == "would_publish":
			would = append(would, line.Subject+" "+line.ID)
		case line.Kind == "" && line.Outcome != outcomeNotConsumed:
			order := line.Subject[strings.LastIndex(line.Subject, ".")+1:]
			outcomes[order] = append(outcomes[order], line.Outcome)
		}
	}
	for order, want := range map[string]string{handled: "duplicate", later: "handled"} {
		got := outcomes[order]
		if len(got) == 0 || slices.ContainsFunc(got, func(o string) bool { return o != want }) {
			t.Errorf("order %s: outcomes %v, want each %s\n%s", order, got, want, stdout)
		}
	}
	slices.Sort(would)
	if live := liveEvents(t, ctx, c, catalog.StreamInventory, later); !slices.Equal(would, live) {
		t.Errorf("replay would publish\n  %v\nthe live run published, for the order the copy had not handled,\n  %v", would, live)
	}

	// The README's example: every message already handled by the copy.
	stdout, stderr, code = runTool(t, "replay", "--nats-url", c.natsURL, "--stream", "ORDERS",
		"--subject", "orders.*."+handled, "--into", "inventory", "--db", copied)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(stdout, "\n")
	if !strings.Contains(lines[0], "OUTCOME") {
		t.Errorf("no OUTCOME column:\n%s", stdout)
	}
	if n := strings.Count(stdout, " duplicate\n"); n == 0 || strings.Contains(stdout, " handled\n") {
		t.Errorf("want every consumed message a duplicate:\n%s", stdout)
	}
	if !strings.Contains(stdout, "would publish nothing (nothing was published)") {
		t.Errorf("no \"would publish\" section:\n%s", stdout)
	}
}

// TestReplayIntoPaymentsFeedsTheRecordedProviderAnswers replays into
// payments two orders whose provider call failed live — one the provider
// declined, one whose captures met an outage until the deadline cancelled
// it — and the replay decides as the live run did, from the answers
// recorded on PAYMENTS: it would publish what the live run published
// (payments.declined; payments.voided), never captured and refunded, says
// plainly that the outage's capture has no recorded answer, and charges
// nothing at the provider.
func TestReplayIntoPaymentsFeedsTheRecordedProviderAnswers(t *testing.T) {
	c := startUp(t, "--order-timeout", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)

	declined := events.NewID()
	restock(t, ctx, js, "SKU-RD", 5)
	placeOrder(t, c, declined, "decline-cust", "SKU-RD", 1)
	wantOrder(t, waitFinal(t, ctx, c, declined), catalog.StatusCancelled, catalog.ReasonPaymentDeclined)
	settled(t, ctx, c, js, declined, 1000)

	timedOut := events.NewID()
	restock(t, ctx, js, "SKU-RO", 5)
	setProviderMode(t, c, "down", nil)
	placeOrder(t, c, timedOut, "cust-1", "SKU-RO", 1)
	wantOrder(t, waitFinal(t, ctx, c, timedOut), catalog.StatusCancelled, catalog.ReasonTimeout)
	setProviderMode(t, c, "normal", nil)
	settled(t, ctx, c, js, timedOut, 1000)

	for _, tc := range []struct {
		name, id string
		live     string // the event the live run ended the payment with
		unknown  bool   // a capture whose answer no event recorded
	}{
		{"Declined", declined, catalog.EventDeclined, false},
		{"OutageThenDeadline", timedOut, catalog.EventVoided, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := liveEvents(t, ctx, c, catalog.StreamPayments, tc.id)
			if len(live) != 1 || !strings.HasPrefix(live[0], catalog.EventSubject(catalog.Payments, tc.live, tc.id)+" ") {
				t.Fatalf("the live run published %v, want payments.%s only", live, tc.live)
			}
			stdout, stderr, code := runTool(t, "replay", "--nats-url", c.natsURL, "--into", "payments", "--subject", "*.*."+tc.id, "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var would, unanswered, retried []string
			sc := bufio.NewScanner(strings.NewReader(stdout))
			for sc.Scan() {
				var line struct {
					Kind, Subject, ID, Outcome, Reason, Operation string
					OrderID                                       string `json:"order_id"`
				}
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				switch {
				case line.Kind == "would_publish":
					would = append(would, line.Subject+" "+line.ID)
				case line.Kind == "unanswered_call":
					unanswered = append(unanswered, line.Operation+" "+line.OrderID)
				case line.Kind == "" && line.Outcome == "retried":
					if !strings.Contains(line.Reason, "no recorded answer") {
						t.Errorf("%s retried: %s, want the reason to say no answer was recorded", line.Subject, line.Reason)
					}
					retried = append(retried, line.Subject)
				case line.Kind == "" && line.Outcome != "handled" && line.Outcome != outcomeNotConsumed:
					t.Errorf("%s: %s %s", line.Subject, line.Outcome, line.Reason)
				}
			}
			slices.Sort(would)
			if !slices.Equal(would, live) {
				t.Errorf("replay would publish\n  %v\nthe live run published\n  %v\n%s", would, live, stdout)
			}
			wantUnknown := []string(nil)
			if tc.unknown {
				wantUnknown = []string{"capture " + tc.id}
			}
			if !slices.Equal(unanswered, wantUnknown) || len(retried) != len(wantUnknown) {
				t.Errorf("unanswered calls %v and retried messages %v, want %v and one retried message each", unanswered, retried, wantUnknown)
			}
			if providerHolds(t, c, tc.id) {
				t.Errorf("the provider holds a charge for %s after the replay", tc.id)
			}
		})
	}

	// For people: the outage's capture is said to be unknown.
	stdout, _, code := runTool(t, "replay", "--nats-url", c.natsURL, "--into", "payments", "--subject", "*.*."+timedOut)
	if code != 0 || !strings.Contains(stdout, "capture of order "+timedOut+":") || !strings.Contains(stdout, "the replay cannot know them") {
		t.Errorf("table output (exit %d):\n%s", code, stdout)
	}
}

// mustCopySQLite copies a SQLite database a running service writes to.
func mustCopySQLite(t *testing.T, ctx context.Context, src, dst string) {
	t.Helper()
	db, err := sqldb.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// wantStockChange checks that replaying into inventory reports how the
// stock would change: from an empty store, SKU-RP restocked 10, 2 reserved
// and then sold.
func wantStockChange(t *testing.T, stdout string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var c struct {
			Kind, Table, Change string
			After               map[string]string
		}
		if json.Unmarshal(sc.Bytes(), &c) == nil && c.Kind == "state_change" && c.Table == "stock" && c.After["sku"] == "SKU-RP" {
			if c.Change != "added" || c.After["available"] != "8" || c.After["reserved"] != "0" || c.After["sold"] != "2" {
				t.Errorf("stock change: %+v, want SKU-RP added with available 8, reserved 0, sold 2", c)
			}
			return
		}
	}
	t.Errorf("no state_change for stock SKU-RP in:\n%s", stdout)
}

// liveEvents lists "subject id" of the events the live run published on
// stream about order id, sorted.
func liveEvents(t *testing.T, ctx context.Context, c *runningChoreo, stream, id string) []string {
	t.Helper()
	stdout, stderr, code := runTool(t, "replay", "--nats-url", c.natsURL, "--stream", stream, "--subject", "*.*."+id, "--json")
	if code != 0 {
		t.Fatalf("replay --stream %s: exit %d: %s", stream, code, stderr)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var m struct{ Subject, ID string }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Subject+" "+m.ID)
	}
	slices.Sort(out)
	return out
}

func TestReplayBadInput(t *testing.T) {
	c := startUp(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"replay"}, 2, "--stream is required"},
		{[]string{"replay", "--stream", "NOPE"}, 1, `no stream "NOPE"`},
		{[]string{"replay", "--stream", "ORDERS", "--from-seq", "999999"}, 1, "past the end"},
		{[]string{"replay", "--stream", "ORDERS", "--since", "yesterday"}, 2, "--since"},
		{[]string{"replay", "--into", "billing"}, 2, "no such service"},
		{[]string{"replay", "--stream", "ORDERS", "--db", "x.db"}, 2, "--db only makes sense with --into"},
	} {
		args := append(tc.args, "--nats-url", c.natsURL)
		_, stderr, code := runTool(t, args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("choreo %v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	_, stderr, code := runTool(t, "replay", "--stream", "ORDERS", "--nats-url", "nats://127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "no NATS server") {
		t.Errorf("no server: exit %d, stderr %q", code, stderr)
	}
}
