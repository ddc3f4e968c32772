package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// runStatusCmd runs `choreo status args...` against natsURL.
func runStatusCmd(t *testing.T, natsURL string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"status", "--nats-url", natsURL}, args...), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

// statusJSON runs `choreo status --json` and splits its lines by kind,
// each line a map of its fields.
func statusJSON(t *testing.T, natsURL string) map[string][]map[string]any {
	t.Helper()
	code, out, errs := runStatusCmd(t, natsURL, "--json")
	if code != 0 {
		t.Fatalf("choreo status --json: exit %d; stderr:\n%s", code, errs)
	}
	rows := map[string][]map[string]any{}
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		kind, _ := m["kind"].(string)
		rows[kind] = append(rows[kind], m)
	}
	return rows
}

func statusNum(m map[string]any, k string) float64 {
	f, _ := m[k].(float64)
	return f
}

func statusKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestStatus(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, js := natstest.Connect(t, c.natsURL)

	restock(t, ctx, js, "SKU-ST", 10)
	ids := []string{events.NewID(), events.NewID(), events.NewID()}
	for _, id := range ids {
		if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(id, "SKU-ST", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, []byte(`{"order_id": oops`)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, c, ids...)

	// Quiescence: one dead letter, every outbox empty, nothing pending.
	var rows map[string][]map[string]any
	waitFor(t, ctx, "status at rest", func() (bool, string) {
		rows = statusJSON(t, c.natsURL)
		if d := rows["dlq"]; len(d) != 1 || statusNum(d[0], "depth") != 1 {
			return false, fmt.Sprintf("dlq %v", d)
		}
		for _, s := range rows["service"] {
			if statusNum(s, "instances") != 1 || statusNum(s, "outbox_backlog") != 0 {
				return false, fmt.Sprintf("service %v", s)
			}
		}
		for _, co := range rows["consumer"] {
			if statusNum(co, "pending") != 0 || statusNum(co, "ack_pending") != 0 {
				return false, fmt.Sprintf("consumer %v", co)
			}
		}
		return true, ""
	})

	t.Run("json", func(t *testing.T) {
		var names []string
		consumersPerStream := map[string]int{}
		for _, co := range rows["consumer"] {
			if got, want := statusKeys(co), []string{"ack_pending", "consumer", "kind", "pending", "redelivered", "stream"}; !slices.Equal(got, want) {
				t.Errorf("consumer fields %v, want %v", got, want)
			}
			consumersPerStream[co["stream"].(string)]++
		}
		for _, s := range rows["stream"] {
			if got, want := statusKeys(s), []string{"bytes", "consumers", "first_seq", "kind", "last_seq", "messages", "name"}; !slices.Equal(got, want) {
				t.Errorf("stream fields %v, want %v", got, want)
			}
			name := s["name"].(string)
			names = append(names, name)
			info, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			st := info.CachedInfo().State
			if statusNum(s, "messages") != float64(st.Msgs) || statusNum(s, "bytes") != float64(st.Bytes) ||
				statusNum(s, "first_seq") != float64(st.FirstSeq) || statusNum(s, "last_seq") != float64(st.LastSeq) {
				t.Errorf("stream %s: %v, server says %+v", name, s, st)
			}
			if int(statusNum(s, "consumers")) != consumersPerStream[name] || st.Consumers != consumersPerStream[name] {
				t.Errorf("stream %s: consumers %v, %d consumer rows, server says %d", name, s["consumers"], consumersPerStream[name], st.Consumers)
			}
		}
		want := []string{"ORDERS", "INVENTORY", "PAYMENTS", "NOTIFICATIONS", "COMMANDS", "DLQ"}
		if !slices.Equal(names, want) {
			t.Errorf("streams %v, want %v", names, want)
		}
		if st := rows["stream"][0]; statusNum(st, "messages") < 3 || statusNum(st, "last_seq") < statusNum(st, "first_seq") {
			t.Errorf("ORDERS after three orders: %v", st)
		}
		found := false
		for _, co := range rows["consumer"] {
			found = found || co["stream"] == "ORDERS" && co["consumer"] == "inventory"
		}
		if !found {
			t.Errorf("no ORDERS/inventory consumer in %v", rows["consumer"])
		}
		var services []string
		for _, s := range rows["service"] {
			if got, want := statusKeys(s), []string{"instance_ids", "instances", "kind", "outbox_backlog", "outbox_oldest_age_seconds", "service", "stores"}; !slices.Equal(got, want) {
				t.Errorf("service fields %v, want %v", got, want)
			}
			if statusNum(s, "outbox_oldest_age_seconds") != 0 {
				t.Errorf("empty outbox with an age: %v", s)
			}
			if ids, _ := s["instance_ids"].([]any); len(ids) != 1 || ids[0] == "" {
				t.Errorf("instance ids %v", s["instance_ids"])
			}
			services = append(services, s["service"].(string))
		}
		if want := []string{"orders", "inventory", "payments", "notifications"}; !slices.Equal(services, want) {
			t.Errorf("services %v, want %v", services, want)
		}
		if d := rows["dlq"][0]; d["stream"] != "DLQ" || len(d) != 3 {
			t.Errorf("dlq row %v", d)
		}
	})

	t.Run("tables", func(t *testing.T) {
		code, out, errs := runStatusCmd(t, c.natsURL)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, errs)
		}
		for _, header := range []string{
			"NAME  MESSAGES  BYTES  FIRST SEQ  LAST SEQ  CONSUMERS",
			"STREAM  CONSUMER  PENDING  ACK PENDING  REDELIVERED",
			"SERVICE  INSTANCES  OUTBOX BACKLOG  OLDEST ROW AGE",
		} {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(header), " ")) {
				t.Errorf("no header %q in:\n%s", header, out)
			}
		}
		lines := strings.Split(out, "\n")
		hasRow := func(fields ...string) bool {
			for _, l := range lines {
				f := strings.Fields(l)
				if len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
					return true
				}
			}
			return false
		}
		for _, s := range []string{"ORDERS", "INVENTORY", "PAYMENTS", "NOTIFICATIONS", "COMMANDS", "DLQ"} {
			if !hasRow(s) {
				t.Errorf("no stream row %s in:\n%s", s, out)
			}
		}
		if !hasRow("ORDERS", "inventory", "0", "0") {
			t.Errorf("no ORDERS/inventory consumer row in:\n%s", out)
		}
		for _, s := range []string{"orders", "inventory", "payments", "notifications"} {
			if !hasRow(s, "1", "0", "-") {
				t.Errorf("no service row for %s in:\n%s", s, out)
			}
		}
		if !strings.Contains(out, "DLQ depth: 1\n") || strings.Contains(out, "\x1b[") {
			t.Errorf("want a plain DLQ depth: 1 in:\n%q", out)
		}
	})

	t.Run("micro discovery", func(t *testing.T) {
		replies, err := statusGather(ctx, nc, "$SRV.PING", time.Second, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range replies {
			var p micro.Ping
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(p.Name, "choreo-") {
				got = append(got, p.Name)
				if p.Version != "0.1.0" || p.ID == "" {
					t.Errorf("ping %+v", p)
				}
			}
		}
		slices.Sort(got)
		if want := []string{"choreo-inventory", "choreo-notifications", "choreo-orders", "choreo-payments"}; !slices.Equal(got, want) {
			t.Errorf("$SRV.PING: %v, want %v", got, want)
		}
		msg, err := nc.Request("choreo.orders.status", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var st microStatus
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			t.Fatal(err)
		}
		if st.Service != "orders" || st.Instance == "" || st.OutboxBacklog != 0 || st.Error != "" {
			t.Errorf("choreo.orders.status: %s", msg.Data)
		}

		// The stats say what the service did: a row per subject its
		// consumer handles, the messages it handled on it as requests.
		msg, err = nc.Request("$SRV.STATS.choreo-orders", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var stats micro.Stats
		if err := json.Unmarshal(msg.Data, &stats); err != nil {
			t.Fatal(err)
		}
		rows := map[string]*micro.EndpointStats{}
		for _, e := range stats.Endpoints {
			rows[e.Name] = e
		}
		routes := 0
		for _, src := range ordersConsumer(t).Sources {
			routes += len(src.FilterSubjects)
		}
		if len(rows) != routes+1 || rows["status"] == nil {
			t.Errorf("choreo-orders stats rows %v, want status and one per route (%d)", slices.Sorted(maps.Keys(rows)), routes)
		}
		// Placements have a durable consumer of their own, and a row.
		place := rows["cmd-orders-place"]
		if place == nil {
			t.Fatalf("no cmd-orders-place row in %s", msg.Data)
		}
		var did struct {
			Handled, Duplicates, Retried int
			DeadLettered                 int `json:"dead_lettered"`
		}
		_ = json.Unmarshal(place.Data, &did)
		// Three orders placed and one that could not be decoded.
		if place.Subject != catalog.SubjectPlaceOrder || did.Handled != 3 || did.DeadLettered != 1 ||
			place.NumRequests != did.Handled+did.Duplicates+did.Retried+did.DeadLettered || place.NumErrors != did.Retried+did.DeadLettered {
			t.Errorf("cmd-orders-place row: %+v, data %s; want 3 handled, 1 dead-lettered", place, place.Data)
		}
	})

	t.Run("every instance counts", func(t *testing.T) {
		// Two more "payments" instances: one on a database of its own with
		// a backlog, one sharing that database (its backlog counts once).
		// (Replicas on two stores are a mistake status warns about; here
		// they only make the sum visible.)
		ncs, _ := c.operator(t) // an instance answers requests, which a service or the operator may
		old := time.Now().Add(-5 * time.Second)
		for _, n := range []int{3, 2} {
			svc, err := startMicro(ncs, "payments", microStore{id: "other.db"}, func(context.Context) (int, time.Time, error) { return n, old, nil }, consumer.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = svc.Stop() })
		}
		// The server has their subscriptions once a round trip on their
		// connection is over.
		if err := ncs.Flush(); err != nil {
			t.Fatal(err)
		}
		// status hears the instances that answer within its quiet window
		// (statusGatherQuiet); on a busy machine one may answer late, so
		// ask again a few times before calling it missing.
		var payments map[string]any
		for try := 0; try < 5; try++ {
			payments = nil
			for _, s := range statusJSON(t, c.natsURL)["service"] {
				if s["service"] == "payments" {
					payments = s
				}
			}
			if statusNum(payments, "instances") == 3 {
				break
			}
		}
		if statusNum(payments, "instances") != 3 || statusNum(payments, "outbox_backlog") != 3 || statusNum(payments, "outbox_oldest_age_seconds") < 5 {
			t.Errorf("payments with three instances: %v", payments)
		}
		code, out, _ := runStatusCmd(t, c.natsURL)
		if code != 0 || !strings.Contains(out, "payments") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		for l := range strings.Lines(out) {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "payments" {
				if len(f) != 4 || f[1] != "3" || f[2] != "3" || !strings.HasPrefix(f[3], "5") {
					t.Errorf("payments row %q", l)
				}
			}
		}
	})
}

func TestStatusErrors(t *testing.T) {
	t.Run("no server", func(t *testing.T) {
		code, out, errs := runStatusCmd(t, "nats://127.0.0.1:1")
		if code != 1 || out != "" || !strings.HasPrefix(errs, "choreo: no NATS server at nats://127.0.0.1:1") || strings.Count(errs, "\n") != 1 {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
	t.Run("no choreo streams", func(t *testing.T) {
		srv := natstest.Start(t)
		code, out, errs := runStatusCmd(t, srv.URL)
		if code != 1 || out != "" || !strings.Contains(errs, "no choreo streams") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
	t.Run("some streams missing", func(t *testing.T) {
		srv := natstest.Start(t)
		_, js := natstest.Connect(t, srv.URL)
		ctx := natstest.Context(t)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: catalog.StreamDLQ, Subjects: []string{"dlq.>"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "dlq.x", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runStatusCmd(t, srv.URL)
		if code != 0 || !strings.Contains(errs, "streams missing from the server: ORDERS, INVENTORY, PAYMENTS, NOTIFICATIONS, COMMANDS\n") ||
			!strings.Contains(out, "DLQ depth: 1\n") || strings.Contains(out, "ORDERS") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
		}
	})
	t.Run("help", func(t *testing.T) {
		code, _, errs := runStatusCmd(t, "nats://127.0.0.1:1", "--help")
		if code != 0 || !strings.Contains(errs, "Example:\n  choreo status") || !strings.Contains(errs, "-json") {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
	})
	t.Run("arguments", func(t *testing.T) {
		code, _, _ := runStatusCmd(t, "nats://127.0.0.1:1", "extra")
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
	})
}

func TestStatusSummarize(t *testing.T) {
	s := statusSummarize("x", []microStatus{
		{Instance: "b", Store: "s1", OutboxBacklog: 4, OutboxOldestAgeSeconds: 2},
		{Instance: "a", Store: "s1", OutboxBacklog: 5, OutboxOldestAgeSeconds: 3},
		{Instance: "c", Store: "s2", OutboxBacklog: 1, OutboxOldestAgeSeconds: 1},
		{Instance: "d", Error: "db down"},
	})
	if s.Instances != 4 || s.OutboxBacklog != 6 || s.OutboxOldestAgeSeconds != 3 || !slices.Equal(s.IDs, []string{"a", "b", "c", "d"}) ||
		s.Stores != 2 || len(s.Errors) != 1 || !strings.Contains(s.Warning, "2 different stores") {
		t.Errorf("%+v", s)
	}
	if got := statusFormatAge(0.0123); got != "12ms" {
		t.Errorf("formatAge: %s", got)
	}
	if got := statusFormatAge(125.4); got != "2m5s" {
		t.Errorf("formatAge: %s", got)
	}
}

// Replicas of `choreo serve` each answer; sharing one database, their
// outbox counts once. A service that is not running shows 0 instances.
func TestStatusSeesEveryReplica(t *testing.T) {
	srv := natstest.Start(t)
	data := t.TempDir()
	for range 2 {
		startServe(t, "inventory", map[string]string{
			"NATS_URL":         srv.URL,
			"CHOREO_DB_URL":    filepath.Join(data, "inventory.db"),
			"CHOREO_HTTP":      "127.0.0.1:0",
			"CHOREO_LOG_LEVEL": "warn",
		})
	}
	rows := statusJSON(t, srv.URL)
	got := map[string]float64{}
	for _, s := range rows["service"] {
		got[s["service"].(string)] = statusNum(s, "instances")
		if statusNum(s, "outbox_backlog") != 0 {
			t.Errorf("backlog: %v", s)
		}
		if s["service"] == "inventory" && statusNum(s, "stores") != 1 {
			t.Errorf("inventory's replicas on one database: %v, want stores 1", s)
		}
	}
	if want := map[string]float64{"orders": 0, "inventory": 2, "payments": 0, "notifications": 0}; !maps.Equal(got, want) {
		t.Errorf("instances %v, want %v", got, want)
	}
	code, out, _ := runStatusCmd(t, srv.URL)
	if code != 0 || !strings.Contains(out, "orders") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "orders" && (f[1] != "0" || f[2] != "-" || f[3] != "-") {
			t.Errorf("orders row %q", l)
		}
	}
}

// consumerOf is the consumer configuration of a service as cmd builds it,
// on a fresh SQLite store.
func consumerOf(t *testing.T, m module) consumer.Config {
	t.Helper()
	db := sqltest.MustOpen(t, sqltest.SQLiteURL(t))
	if err := m.migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	built, err := m.build(db, slog.New(slog.DiscardHandler), serviceOptions{providerURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return built.consumer
}

// ordersConsumer is the consumer configuration of an orders service.
func ordersConsumer(t *testing.T) consumer.Config {
	t.Helper()
	m, ok := findModule(catalog.Orders)
	if !ok {
		t.Fatal("no orders module")
	}
	return consumerOf(t, m)
}
