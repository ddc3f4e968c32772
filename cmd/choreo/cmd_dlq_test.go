package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/dlq"
)

// dlqRun runs `choreo dlq args...` as a user would, against natsURL.
func dlqRun(natsURL string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		switch k {
		case "NATS_URL":
			return natsURL
		case "CHOREO_DATA": // where the tools find the operator's credentials
			return dataDirOf(natsURL)
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = run(ctx, append([]string{"dlq"}, args...), &out, &errb, getenv)
	return code, out.String(), errb.String()
}

// dlqJSON is the shape `choreo dlq ls --json` promises.
type dlqJSON struct {
	ID               uint64              `json:"id"`
	FailedAt         time.Time           `json:"failed_at"`
	Consumer         string              `json:"consumer"`
	OriginalSubject  string              `json:"original_subject"`
	OriginalStream   string              `json:"original_stream"`
	OriginalSequence uint64              `json:"original_sequence"`
	DeliveryCount    uint64              `json:"delivery_count"`
	RetryCount       int                 `json:"retry_count"`
	TraceID          string              `json:"trace_id"`
	Reason           string              `json:"reason"`
	Data             json.RawMessage     `json:"data"`
	Subject          string              `json:"subject"`
	Headers          map[string][]string `json:"headers"`
}

func dlqList(t *testing.T, natsURL string, args ...string) []dlqJSON {
	t.Helper()
	code, out, errOut := dlqRun(natsURL, append([]string{"ls", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("dlq ls --json: exit %d; stderr: %s", code, errOut)
	}
	var es []dlqJSON
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e dlqJSON
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("dlq ls --json: %v in %q", err, out)
		}
		es = append(es, e)
	}
	return es
}

// waitDLQ waits until an entry for subject other than the ids in not
// appears, and returns it.
func waitDLQ(t *testing.T, ctx context.Context, natsURL, subject string, not ...uint64) dlqJSON {
	t.Helper()
	var found dlqJSON
	waitFor(t, ctx, "a dead letter for "+subject, func() (bool, string) {
		es := dlqList(t, natsURL)
	next:
		for _, e := range es {
			if e.OriginalSubject != subject {
				continue
			}
			for _, id := range not {
				if e.ID == id {
					continue next
				}
			}
			found = e
			return true, ""
		}
		return false, fmt.Sprintf("%d entries: %+v", len(es), es)
	})
	return found
}

// dlqLastSeq is the last sequence of a stream: it moves when anything is
// (re)published to it.
func dlqLastSeq(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

const dlqTestTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

func TestDLQ(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, js := c.operator(t) // it forges an event too

	// Before anything failed: a friendly line, exit 0.
	code, out, errOut := dlqRun(c.natsURL, "ls")
	if code != 0 || !strings.Contains(out, "DLQ is empty") {
		t.Fatalf("ls on an empty DLQ: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Poison: a restock with a negative quantity, carrying a trace, and a
	// malformed order.
	restockBody := `{"command_id":"bad","sku":"SKU-1","quantity":-5}`
	m := nats.NewMsg(catalog.SubjectRestock)
	m.Data = []byte(restockBody)
	m.Header.Set("traceparent", "00-"+dlqTestTraceID+"-00f067aa0ba902b7-01")
	m.Header.Set("X-Operator", "alice")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, []byte(`{"order_id": oops`)); err != nil {
		t.Fatal(err)
	}
	restock := waitDLQ(t, ctx, c.natsURL, catalog.SubjectRestock)
	order := waitDLQ(t, ctx, c.natsURL, catalog.SubjectPlaceOrder)

	t.Run("ls json", func(t *testing.T) {
		// Each command kind has a durable consumer of its own.
		if restock.Consumer != catalog.CommandDurable(catalog.Inventory, "restock") || restock.OriginalStream != catalog.StreamCommands ||
			restock.OriginalSequence == 0 || restock.DeliveryCount < 1 || restock.RetryCount != 0 ||
			restock.TraceID != dlqTestTraceID || !strings.Contains(restock.Reason, "quantity -5") ||
			string(restock.Data) != restockBody || restock.FailedAt.IsZero() || restock.ID == 0 {
			t.Errorf("restock entry: %+v", restock)
		}
		if restock.Headers != nil || restock.Subject != "" {
			t.Errorf("ls --json carries show-only fields: %+v", restock)
		}
		var s string
		if err := json.Unmarshal(order.Data, &s); err != nil || s != `{"order_id": oops` {
			t.Errorf("malformed body should be a JSON string, got %s", order.Data)
		}
		if order.Consumer != catalog.CommandDurable(catalog.Orders, "place") || order.TraceID != "" || order.Reason == "" {
			t.Errorf("order entry: %+v", order)
		}
		// Field names are an interface: check the raw keys too.
		code, out, _ := dlqRun(c.natsURL, "ls", "--json", "--subject", catalog.SubjectRestock)
		var raw map[string]any
		if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &raw) != nil {
			t.Fatalf("ls --json --subject: exit %d, %q", code, out)
		}
		for _, k := range []string{"id", "failed_at", "consumer", "original_subject", "original_stream", "original_sequence",
			"delivery_count", "retry_count", "trace_id", "reason", "data"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("ls --json has no %q: %s", k, out)
			}
		}
		if _, ok := raw["data"].(map[string]any); !ok {
			t.Errorf("a JSON body should be raw JSON in data: %s", out)
		}
	})

	t.Run("ls table", func(t *testing.T) {
		code, out, errOut := dlqRun(c.natsURL, "ls")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("want a header and 2 rows, got:\n%s", out)
		}
		header := regexp.MustCompile(`^ID\s+FAILED AT\s+CONSUMER\s+ORIGINAL SUBJECT\s+STREAM:SEQ\s+DELIVERIES\s+RETRIES\s+TRACE ID\s+REASON$`)
		if !header.MatchString(lines[0]) {
			t.Errorf("header: %q", lines[0])
		}
		col := strings.Index(lines[0], "ORIGINAL SUBJECT")
		time3339 := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
		for _, e := range []dlqJSON{restock, order} {
			var row string
			for _, l := range lines[1:] {
				if strings.HasPrefix(l, strconv.FormatUint(e.ID, 10)+" ") {
					row = l
				}
			}
			if strings.Index(row, e.OriginalSubject) != col {
				t.Errorf("row for %d not aligned under ORIGINAL SUBJECT:\n%s", e.ID, out)
			}
			norm := time3339.ReplaceAllString(row, "<time>")
			norm = strings.Join(strings.Fields(norm), " ")
			trace := "-"
			if e.TraceID != "" {
				trace = e.TraceID
			}
			want := fmt.Sprintf("%d <time> %s %s %s:%d %d 0 %s ", e.ID, e.Consumer, e.OriginalSubject, e.OriginalStream, e.OriginalSequence, e.DeliveryCount, trace)
			if !strings.HasPrefix(norm, want) {
				t.Errorf("row:\n got %q\nwant prefix %q", norm, want)
			}
		}
		// --subject filters on the original subject, wildcards allowed.
		code, out, _ = dlqRun(c.natsURL, "ls", "--subject", "cmd.orders.>")
		if code != 0 || !strings.Contains(out, catalog.SubjectPlaceOrder) || strings.Contains(out, catalog.SubjectRestock) {
			t.Errorf("ls --subject cmd.orders.>: exit %d\n%s", code, out)
		}
		code, out, _ = dlqRun(c.natsURL, "ls", "--subject", "payments.>")
		if code != 0 || !strings.Contains(out, "No dead letters") {
			t.Errorf("ls --subject with no match: exit %d %q", code, out)
		}
	})

	t.Run("show", func(t *testing.T) {
		id := strconv.FormatUint(restock.ID, 10)
		code, out, errOut := dlqRun(c.natsURL, "show", id)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "\n  \"quantity\": -5\n") {
			t.Errorf("show does not pretty-print the JSON body:\n%s", out)
		}
		norm := regexp.MustCompile(` {2,}`).ReplaceAllString(out, " ")
		for _, want := range []string{
			"\nConsumer inventory-restock\n", "\nOriginal subject cmd.inventory.restock\n", "\nOriginal stream COMMANDS\n",
			fmt.Sprintf("\nOriginal sequence %d\n", restock.OriginalSequence), "\nRetries 0 (at most 3)\n",
			"\nTrace ID " + dlqTestTraceID + "\n", "quantity -5", "\nDLQ subject dlq.inventory.cmd.inventory.restock\n",
			"Choreo-Dlq-Reason: ", "Choreo-Failed-At: ", "X-Operator: alice", "traceparent: 00-" + dlqTestTraceID,
			"Body (JSON",
		} {
			if !strings.Contains(norm, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = dlqRun(c.natsURL, "show", "--json", id)
		var e dlqJSON
		if code != 0 || json.Unmarshal([]byte(out), &e) != nil {
			t.Fatalf("show --json: exit %d %q", code, out)
		}
		if e.ID != restock.ID || e.Subject != "dlq.inventory.cmd.inventory.restock" || e.Headers["X-Operator"][0] != "alice" ||
			string(e.Data) != restockBody {
			t.Errorf("show --json: %+v", e)
		}
		code, out, _ = dlqRun(c.natsURL, "show", strconv.FormatUint(order.ID, 10))
		if code != 0 || !strings.Contains(out, "Body (not JSON") || !strings.Contains(out, `{"order_id": oops`) {
			t.Errorf("show of a malformed body: exit %d\n%s", code, out)
		}
	})

	t.Run("retry dry-run changes nothing", func(t *testing.T) {
		before := dlqList(t, c.natsURL)
		cmds := dlqLastSeq(t, ctx, js, catalog.StreamCommands)
		code, out, errOut := dlqRun(c.natsURL, "retry", "--dry-run", strconv.FormatUint(restock.ID, 10))
		if code != 0 || !strings.Contains(out, "would retry "+strconv.FormatUint(restock.ID, 10)) || !strings.Contains(out, "Choreo-Retry-Count: 1") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		code, out, _ = dlqRun(c.natsURL, "retry", "--all", "--dry-run")
		if code != 0 || strings.Count(out, "would retry") != 2 {
			t.Errorf("retry --all --dry-run: exit %d\n%s", code, out)
		}
		after := dlqList(t, c.natsURL)
		if len(after) != len(before) || after[0].ID != before[0].ID || after[1].ID != before[1].ID {
			t.Errorf("dry run changed the DLQ: before %+v after %+v", before, after)
		}
		if got := dlqLastSeq(t, ctx, js, catalog.StreamCommands); got != cmds {
			t.Errorf("dry run republished: COMMANDS last seq %d → %d", cmds, got)
		}
	})

	t.Run("retry until the loop guard", func(t *testing.T) {
		cur := restock
		for n := 1; n <= dlq.DefaultMaxRetries; n++ {
			code, out, errOut := dlqRun(c.natsURL, "retry", strconv.FormatUint(cur.ID, 10))
			if code != 0 || !strings.Contains(out, fmt.Sprintf("retried %d", cur.ID)) {
				t.Fatalf("retry %d: exit %d\n%s%s", n, code, out, errOut)
			}
			for _, e := range dlqList(t, c.natsURL) {
				if e.ID == cur.ID {
					t.Fatalf("entry %d still in the DLQ after retry", cur.ID)
				}
			}
			// Redelivered, failed again, dead-lettered again with its count.
			next := waitDLQ(t, ctx, c.natsURL, catalog.SubjectRestock, cur.ID)
			if next.RetryCount != n || next.OriginalSequence == cur.OriginalSequence || string(next.Data) != restockBody ||
				next.TraceID != dlqTestTraceID || next.Consumer != catalog.CommandDurable(catalog.Inventory, "restock") {
				t.Fatalf("after retry %d: %+v", n, next)
			}
			if n == 1 {
				_, out, _ := dlqRun(c.natsURL, "ls", "--subject", catalog.SubjectRestock)
				row := strings.Fields(strings.Split(out, "\n")[1])
				if row[6] != "1" { // ID, FAILED AT, CONSUMER, SUBJECT, STREAM:SEQ, DELIVERIES, RETRIES
					t.Errorf("RETRIES column after one retry: %q in\n%s", row[6], out)
				}
				_, show, _ := dlqRun(c.natsURL, "show", strconv.FormatUint(next.ID, 10))
				if !strings.Contains(show, "Choreo-Retry-Count: 1") {
					t.Errorf("new dead letter lacks its retry count:\n%s", show)
				}
			}
			cur = next
		}
		before := dlqList(t, c.natsURL)
		cmds := dlqLastSeq(t, ctx, js, catalog.StreamCommands)
		code, out, errOut := dlqRun(c.natsURL, "retry", strconv.FormatUint(order.ID, 10), strconv.FormatUint(cur.ID, 10))
		if code != 1 || !strings.Contains(errOut, fmt.Sprintf("entry %d was already retried 3 times", cur.ID)) ||
			strings.Count(strings.TrimSpace(errOut), "\n") != 0 || out != "" {
			t.Errorf("loop guard: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		after := dlqList(t, c.natsURL)
		if len(after) != len(before) {
			t.Errorf("loop guard changed the DLQ: %+v → %+v", before, after)
		}
		if got := dlqLastSeq(t, ctx, js, catalog.StreamCommands); got != cmds {
			t.Errorf("loop guard republished: COMMANDS last seq %d → %d", cmds, got)
		}
		restock = cur
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{nil, 2, "Usage: choreo dlq"},
			{[]string{"frob"}, 2, `unknown dlq command "frob"`},
			{[]string{"show"}, 2, "one id"},
			{[]string{"show", "abc"}, 2, `"abc" is not a dead-letter id`},
			{[]string{"show", "999999"}, 1, "no dead letter with id 999999"},
			{[]string{"retry"}, 2, "--all"},
			{[]string{"discard"}, 2, "--all"},
			{[]string{"retry", "--all", "3"}, 2, "not both"},
			{[]string{"discard", "x1"}, 2, `"x1" is not a dead-letter id`},
			{[]string{"discard", "999999"}, 1, "no dead letter with id 999999"},
			{[]string{"retry", "999999"}, 1, "no dead letter with id 999999"},
			{[]string{"ls", "--subject", "a..b"}, 2, "empty token"},
			{[]string{"ls", "--bogus"}, 2, "flag provided but not defined"},
			{[]string{"ls", "--nats-url", "nats://127.0.0.1:1"}, 1, "no NATS server at nats://127.0.0.1:1"},
		} {
			code, _, errOut := dlqRun(c.natsURL, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "goroutine") {
				t.Errorf("dlq %v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.want)
			}
		}
		if n := len(dlqList(t, c.natsURL)); n != 2 {
			t.Errorf("bad input changed the DLQ: %d entries", n)
		}
	})

	t.Run("help", func(t *testing.T) {
		for _, sub := range []string{"ls", "show", "retry", "discard"} {
			code, _, errOut := dlqRun(c.natsURL, sub, "--help")
			if code != 0 || !strings.Contains(errOut, "Example:\n  choreo dlq "+sub) || !strings.Contains(errOut, "-nats-url") {
				t.Errorf("dlq %s --help: exit %d\n%s", sub, code, errOut)
			}
		}
		_, _, errOut := dlqRun(c.natsURL, "retry", "-h")
		if !strings.Contains(errOut, "every consumer of that\nstream") || !strings.Contains(errOut, "deduplicate by event id") {
			t.Errorf("retry -h lacks the note on consumers:\n%s", errOut)
		}
	})

	t.Run("discard", func(t *testing.T) {
		code, out, _ := dlqRun(c.natsURL, "discard", "--all", "--subject", "cmd.orders.>", "--dry-run")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("would discard %d", order.ID)) {
			t.Errorf("discard --dry-run: exit %d %q", code, out)
		}
		if n := len(dlqList(t, c.natsURL)); n != 2 {
			t.Fatalf("dry run discarded: %d entries left", n)
		}
		code, out, _ = dlqRun(c.natsURL, "discard", strconv.FormatUint(restock.ID, 10))
		if code != 0 || !strings.Contains(out, fmt.Sprintf("discarded %d", restock.ID)) {
			t.Errorf("discard: exit %d %q", code, out)
		}
		es := dlqList(t, c.natsURL)
		if len(es) != 1 || es[0].ID != order.ID {
			t.Fatalf("after discard: %+v", es)
		}
		code, out, _ = dlqRun(c.natsURL, "discard", "--all", "--subject", "cmd.orders.>", "--json")
		var r map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r["action"] != "discarded" || r["id"] != float64(order.ID) {
			t.Errorf("discard --all --json: exit %d %q", code, out)
		}
		code, out, _ = dlqRun(c.natsURL, "ls")
		if code != 0 || !strings.Contains(out, "DLQ is empty") {
			t.Errorf("ls after discarding everything: exit %d %q", code, out)
		}
		code, out, _ = dlqRun(c.natsURL, "retry", "--all")
		if code != 0 || !strings.Contains(out, "Nothing to retry") {
			t.Errorf("retry --all on an empty DLQ: exit %d %q", code, out)
		}
	})

	// An event both inventory and payments dead-lettered is republished
	// once, and each of them dead-letters it again once.
	t.Run("retry a fanned-out event once", func(t *testing.T) {
		if _, err := js.Publish(ctx, "orders.placed.zzz", []byte(`{"specversion":"1.0"}`)); err != nil {
			t.Fatal(err)
		}
		var es []dlqJSON
		waitFor(t, ctx, "two dead letters of orders.placed.zzz", func() (bool, string) {
			es = dlqList(t, c.natsURL, "--subject", "orders.>")
			return len(es) == 2, fmt.Sprintf("%+v", es)
		})
		code, out, errOut := dlqRun(c.natsURL, "retry", "--all", "--subject", "orders.placed.*", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var rs []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r map[string]any
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%v: %q", err, out)
			}
			rs = append(rs, r)
		}
		if len(rs) != 2 || rs[0]["action"] != "retried" || rs[1]["action"] != "retried" || rs[0]["sequence"] != rs[1]["sequence"] {
			t.Fatalf("want both entries retried by one publish: %s", out)
		}
		seq := uint64(rs[0]["sequence"].(float64))
		waitFor(t, ctx, "both consumers dead-letter the retried event", func() (bool, string) {
			es = dlqList(t, c.natsURL, "--subject", "orders.>")
			n := 0
			for _, e := range es {
				if e.OriginalSequence == seq && e.RetryCount == 1 {
					n++
				}
			}
			return n == 2 && len(es) == 2, fmt.Sprintf("%+v", es)
		})
		if es[0].Consumer == es[1].Consumer {
			t.Errorf("want one entry per consumer: %+v", es)
		}
	})
}
