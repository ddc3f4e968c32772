package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/natstest"
)

// After sagas on every path — confirmed over HTTP and over NATS, out of
// stock, declined, cancelled by the customer — plus a repeated command and
// poison messages, what /metrics says equals what the streams hold: each
// consumer's messages by type and outcome, the dead letters, the sagas'
// final states and reasons. Then every metric the alert rules and the
// dashboard under deploy/ name is in that scrape.
func TestMetricsMatchTheStreams(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nc, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-M", 1000)

	const n = 5
	var (
		orders   []string
		overHTTP int
	)
	place := func(id, customer, sku string, overNATS bool) {
		orders = append(orders, id)
		if !overNATS {
			placeOrder(t, c, id, customer, sku, 1)
			overHTTP++
			return
		}
		body := fmt.Sprintf(`{"command_id":"cmd-%s","order_id":%q,"customer_id":%q,"currency":"EUR","items":[{"sku":%q,"quantity":1,"unit_price":1000}]}`, id, id, customer, sku)
		if err := nc.Publish(catalog.SubjectPlaceOrder, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		place(fmt.Sprintf("m-http-%d", i), "cust-1", "SKU-M", false)
		place(fmt.Sprintf("m-nats-%d", i), "cust-1", "SKU-M", true)
		place(fmt.Sprintf("m-nostock-%d", i), "cust-1", "SKU-NONE", i%2 == 0)
		place(fmt.Sprintf("m-decline-%d", i), "decline-1", "SKU-M", i%2 == 1)
		place(fmt.Sprintf("m-cancel-%d", i), "cust-1", "SKU-M", false)
		cancelOrder(t, c, fmt.Sprintf("m-cancel-%d", i))
	}
	// The same command twice (a client's retry): the second is a duplicate.
	place("m-nats-0", "cust-1", "SKU-M", true)
	orders = orders[:len(orders)-1]
	// Poison: three commands that cannot be decoded.
	for i := range 3 {
		if err := nc.Publish(catalog.SubjectPlaceOrder, []byte(fmt.Sprintf("not json %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range orders {
		waitFinal(t, ctx, c, id)
	}
	waitQuiet(t, ctx, c, js, 3)

	families := scrape(t, c.httpURL)
	streams := streamCounts(t, ctx, js)

	// Each consumer's messages, by type: every message of the streams it
	// reads was handled, a duplicate, or dead-lettered, once.
	for _, svc := range []string{catalog.Orders, catalog.Inventory, catalog.Payments, catalog.Notifications} {
		want := expectedMessages(t, ctx, js, svc, streams)
		got := map[string]float64{}
		for _, m := range families["choreo_messages_total"].GetMetric() {
			l := labelsOf(m)
			// A service's consumers: "<service>", and "<service>-<action>"
			// for each command it takes (catalog.ConsumerOf).
			if owner, _, _ := strings.Cut(l["consumer"], "-"); owner == svc && l["outcome"] != string(consumer.Retried) {
				got[l["type"]] += m.GetCounter().GetValue()
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: metrics count %d message types %v, the streams hold %d %v", svc, len(got), got, len(want), want)
		}
		for typ, w := range want {
			if got[typ] != w {
				t.Errorf("%s, %s: metrics count %v messages, the streams hold %v", svc, typ, got[typ], w)
			}
		}
	}
	if got := sumWhere(families, "choreo_messages_total", map[string]string{"type": catalog.SubjectPlaceOrder, "outcome": "duplicate"}); got != 1 {
		t.Errorf("duplicate place commands counted: %v, want 1", got)
	}

	// Dead letters.
	dlq := float64(streams[catalog.StreamDLQ].total())
	if dlq != 3 {
		t.Fatalf("DLQ holds %v messages, want the 3 poison commands", dlq)
	}
	if got := sumWhere(families, "choreo_messages_total", map[string]string{"outcome": "dead_lettered"}); got != dlq {
		t.Errorf("dead_lettered counted %v, the DLQ holds %v", got, dlq)
	}
	if got := sumWhere(families, "choreo_dlq_messages", nil); got != dlq {
		t.Errorf("choreo_dlq_messages %v, the DLQ holds %v", got, dlq)
	}

	// Saga outcomes, by state and reason, against the final events.
	wantSagas := finalEvents(t, ctx, js, streams)
	gotSagas := map[string]float64{}
	for _, m := range families["choreo_saga_duration_seconds"].GetMetric() {
		l := labelsOf(m)
		gotSagas[l["state"]+"/"+l["reason"]] += float64(m.GetHistogram().GetSampleCount())
	}
	if len(gotSagas) != len(wantSagas) {
		t.Errorf("saga outcomes: metrics %v, streams %v", gotSagas, wantSagas)
	}
	for k, w := range wantSagas {
		if gotSagas[k] != w {
			t.Errorf("sagas ending %s: metrics %v, streams %v", k, gotSagas[k], w)
		}
	}
	if total := float64(len(orders)); sumMap(wantSagas) != total {
		t.Errorf("final events for %v orders, want %v", sumMap(wantSagas), total)
	}

	// HTTP: the placements and cancels made over HTTP, by route and status.
	if got := sumWhere(families, "choreo_http_requests_total", map[string]string{"service": "orders", "route": "/orders", "method": "post", "code": "202"}); got != float64(overHTTP) {
		t.Errorf("POST /orders answered 202: counted %v, want %d", got, overHTTP)
	}
	if got := sumWhere(families, "choreo_http_requests_total", map[string]string{"service": "orders", "route": "/orders/{id}/cancel"}); got != n {
		t.Errorf("POST /orders/{id}/cancel: counted %v, want %d", got, n)
	}
	if got := sumWhere(families, "choreo_provider_request_duration_seconds", map[string]string{"operation": "capture", "outcome": "declined"}); got < n {
		t.Errorf("declined captures counted %v, want at least %d", got, n)
	}

	checkDeployNamesExist(t, families)
}

// waitQuiet waits until every consumer has nothing pending, every outbox
// is empty, and the DLQ holds dead letters.
func waitQuiet(t *testing.T, ctx context.Context, c *runningChoreo, js jetstream.JetStream, deadLetters int) {
	t.Helper()
	waitFor(t, ctx, "the system to be quiet", func() (bool, string) {
		fams := scrape(t, c.httpURL)
		if b := sumWhere(fams, "choreo_outbox_backlog", nil); b != 0 {
			return false, fmt.Sprintf("outbox backlog %v", b)
		}
		if d := sumWhere(fams, "choreo_dlq_messages", nil); d != float64(deadLetters) {
			return false, fmt.Sprintf("DLQ %v", d)
		}
		busy := busyConsumers(ctx, js, catalog.StreamCommands, catalog.StreamOrders, catalog.StreamInventory, catalog.StreamPayments)
		return busy == "", busy
	})
}

func scrape(t *testing.T, httpURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

func labelsOf(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// sumWhere adds up the values (a histogram's count) of a family's series
// whose labels include want.
func sumWhere(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	total := 0.0
next:
	for _, m := range families[name].GetMetric() {
		l := labelsOf(m)
		for k, v := range want {
			if l[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func sumMap(m map[string]float64) float64 {
	total := 0.0
	for _, v := range m {
		total += v
	}
	return total
}

// subjectCounts is how many messages a stream holds on each subject.
type subjectCounts map[string]uint64

func (s subjectCounts) total() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

func streamCounts(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string]subjectCounts {
	t.Helper()
	out := map[string]subjectCounts{}
	for _, name := range []string{catalog.StreamCommands, catalog.StreamOrders, catalog.StreamInventory, catalog.StreamPayments, catalog.StreamNotifications, catalog.StreamDLQ} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = info.State.Subjects
	}
	return out
}

// expectedMessages counts, by type, the messages of the streams that the
// service's durable consumers read (their filter subjects decide).
func expectedMessages(t *testing.T, ctx context.Context, js jetstream.JetStream, service string, streams map[string]subjectCounts) map[string]float64 {
	t.Helper()
	want := map[string]float64{}
	for stream, subjects := range streams {
		cons, err := js.Consumer(ctx, stream, service)
		if err != nil {
			continue // the service does not read this stream
		}
		cfg := cons.CachedInfo().Config
		filters := append([]string{cfg.FilterSubject}, cfg.FilterSubjects...)
		for subject, count := range subjects {
			for _, f := range filters {
				if f != "" && consumer.MatchSubject(f, subject) {
					want[typeOfSubject(t, subject)] += float64(count)
					break
				}
			}
		}
	}
	return want
}

// typeOfSubject is the metrics' type label of a message on subject: the
// CloudEvents type of an event, the subject of a command.
func typeOfSubject(t *testing.T, subject string) string {
	t.Helper()
	for _, ti := range catalog.Types() {
		pattern := regexp.MustCompile(`<[^>]+>`).ReplaceAllString(ti.Subject, "*")
		if consumer.MatchSubject(pattern, subject) {
			if ti.Kind == catalog.KindCommand {
				return ti.Subject
			}
			return ti.CloudEventsType
		}
	}
	t.Fatalf("no type has subject %s", subject)
	return ""
}

// finalEvents counts the orders' final events by "state/reason".
func finalEvents(t *testing.T, ctx context.Context, js jetstream.JetStream, streams map[string]subjectCounts) map[string]float64 {
	t.Helper()
	s, err := js.Stream(ctx, catalog.StreamOrders)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for subject, count := range streams[catalog.StreamOrders] {
		switch {
		case strings.HasPrefix(subject, "orders.confirmed."):
			out[catalog.StatusConfirmed+"/"] += float64(count)
		case strings.HasPrefix(subject, "orders.cancelled."):
			msg, err := s.GetLastMsgForSubject(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			env, err := events.Decode(msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			var data catalog.OrderCancelled
			if err := json.Unmarshal(env.Data, &data); err != nil {
				t.Fatal(err)
			}
			out[catalog.StatusCancelled+"/"+data.Reason] += float64(count)
		}
	}
	return out
}

// checkDeployNamesExist parses the alert rules and the dashboard with
// Prometheus' own parsers and checks that every metric they select is in
// the scrape (a histogram's _bucket, _sum and _count series included).
func checkDeployNamesExist(t *testing.T, families map[string]*dto.MetricFamily) {
	t.Helper()
	exists := func(name string) bool {
		if _, ok := families[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := families[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) && f.GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	p := parser.NewParser(parser.Options{})
	check := func(where, expr string) {
		// Grafana's interval variables are not PromQL.
		expr = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m").Replace(expr)
		e, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, expr, err)
			return
		}
		names := 0
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				names++
				if !exists(vs.Name) {
					t.Errorf("%s: %q names %s, which /metrics does not serve", where, expr, vs.Name)
				}
			}
			return nil
		})
		if names == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
	}

	rulesFile := filepath.Join("..", "..", "deploy", "prometheus", "choreo-alerts.yml")
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	rules := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			rules++
			check(rulesFile+" "+r.Alert, r.Expr)
		}
	}
	if rules == 0 {
		t.Errorf("%s: no rules", rulesFile)
	}

	dashFile := filepath.Join("..", "..", "deploy", "grafana", "choreo-dashboard.json")
	b, err := os.ReadFile(dashFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashFile, err)
	}
	targets := 0
	var walk func([]dashPanel)
	walk = func(panels []dashPanel) {
		for _, panel := range panels {
			walk(panel.Panels)
			for _, target := range panel.Targets {
				targets++
				check(dashFile+" "+panel.Title, target.Expr)
			}
		}
	}
	walk(dash.Panels)
	if targets == 0 {
		t.Errorf("%s: no queries", dashFile)
	}
}

type dashPanel struct {
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}
