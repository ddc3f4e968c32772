package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/natstest"
)

func runEventsCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"events"}, args...), &out, &errb, func(string) string { return "" })
	return out.String(), errb.String(), code
}

// An event's example publishes with the operator's key of a local choreo
// up (--nkey): nobody else but its service may publish an event.
var pubLine = regexp.MustCompile(`(?m)^\s*go tool nats (?:(--nkey \S+) )?pub (\S+) '([^']*)'$`)

func TestEventsListsEveryType(t *testing.T) {
	out, errOut, code := runEventsCmd(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pubs := pubLine.FindAllStringSubmatch(out, -1)
	types := catalog.Types()
	if len(pubs) != len(types) {
		t.Fatalf("%d examples printed, want one per type (%d):\n%s", len(pubs), len(types), out)
	}
	for i, ti := range types {
		for _, want := range []string{ti.Name + " (" + ti.Kind + ")", ti.Subject, ti.Description, ti.Effect, ti.GoType, ti.CloudEventsType} {
			if !strings.Contains(out, want) {
				t.Errorf("output does not mention %q", want)
			}
		}
		if pubs[i][2] != ti.ExampleSubject || !json.Valid([]byte(pubs[i][3])) {
			t.Errorf("example %d: %q %q, want a JSON body on %s", i, pubs[i][2], pubs[i][3], ti.ExampleSubject)
		}
		if withKey := pubs[i][1] == "--nkey data/nats/creds/operator.nk"; withKey != (ti.Kind == catalog.KindEvent) {
			t.Errorf("example %d (%s): %q: an event's example, and only an event's, takes the operator's key", i, ti.Kind, pubs[i][0])
		}
	}

	out, errOut, code = runEventsCmd(t, "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(types) {
		t.Fatalf("--json: %d lines, want %d", len(lines), len(types))
	}
	for i, l := range lines {
		var v struct {
			Name, Kind, Subject, Stream, Pub string
			Example, Schema                  json.RawMessage
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("--json line %d: %v", i, err)
		}
		if v.Name != types[i].Name || v.Kind != types[i].Kind || v.Stream != types[i].Stream || !strings.HasPrefix(v.Pub, "go tool nats ") || len(v.Example) == 0 || len(v.Schema) == 0 {
			t.Errorf("--json line %d: %s", i, l)
		}
	}
}

func TestEventsSchema(t *testing.T) {
	for _, q := range []string{"orders.place", catalog.SubjectPlaceOrder, "orders.placed", catalog.TypeOrderPlaced} {
		out, errOut, code := runEventsCmd(t, "--schema", q)
		if code != 0 {
			t.Fatalf("--schema %s: exit %d: %s", q, code, errOut)
		}
		var s struct {
			ID string `json:"$id"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil || !strings.HasSuffix(s.ID, "/"+strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(q, "choreo."), ".v1"), "cmd.")+".json") {
			t.Errorf("--schema %s: $id %q (%v)", q, s.ID, err)
		}
	}
	for _, args := range [][]string{{"--schema", "orders.teleport"}, {"orders.placed"}, {"--bogus"}} {
		out, errOut, code := runEventsCmd(t, args...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want exit 2 and nothing", args, code, out)
		}
		if args[0] == "--schema" && (strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "orders.teleport")) {
			t.Errorf("%v: stderr %q, want one line naming the type", args, errOut)
		}
	}
}

// Every example `choreo events` prints is published as printed against a
// running choreo up and has its documented effect.
func TestEventsExamplesWorkAsPrinted(t *testing.T) {
	out, errOut, code := runEventsCmd(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pubs := pubLine.FindAllStringSubmatch(out, -1)
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js := c.operator(t) // only the operator may publish events by hand

	// The documented consumers of each event are the running system's.
	consumers := map[string][]string{} // stream → "durable filter" pairs
	for _, st := range catalog.Streams {
		s, err := js.Stream(ctx, st.Name)
		if err != nil {
			t.Fatal(err)
		}
		l := s.ListConsumers(ctx)
		for ci := range l.Info() {
			for _, f := range append([]string{ci.Config.FilterSubject}, ci.Config.FilterSubjects...) {
				if f != "" {
					consumers[st.Name] = append(consumers[st.Name], ci.Config.Durable+" "+f)
				}
			}
		}
		if err := l.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range catalog.Types() {
		got := map[string]bool{}
		for _, c := range consumers[ti.Stream] {
			durable, filter, _ := strings.Cut(c, " ")
			// A service's consumers are "<service>" and, for its
			// commands, "<service>-<action>" (catalog.ConsumerOf).
			service, _, _ := strings.Cut(durable, "-")
			if consumer.MatchSubject(filter, ti.ExampleSubject) {
				got[service] = true
			}
		}
		want := map[string]bool{}
		for _, c := range ti.Consumers {
			want[c] = true
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: consumed by %v, documented %v", ti.Name, got, ti.Consumers)
		}
	}

	byExample := map[string]catalog.TypeInfo{}
	for _, ti := range catalog.Types() {
		byExample[ti.ExampleSubject] = ti
	}
	// With the payment provider down the placed order stays PENDING, so
	// the cancel example finds it cancellable (a CONFIRMED order would be
	// refused, as its documented effect says).
	setProviderMode(t, c, "down", nil)
	// As printed: a command as anyone, an event with the operator's key.
	_, anonymous := natstest.Connect(t, c.natsURL)
	for _, p := range pubs {
		subject, body := p[2], p[3]
		ti, ok := byExample[subject]
		if !ok {
			t.Fatalf("example on %s matches no type", subject)
		}
		pub := anonymous
		if p[1] != "" {
			pub = js
		}
		ack, err := pub.Publish(ctx, subject, []byte(body))
		if err != nil {
			t.Fatalf("%s: publish: %v", ti.Name, err)
		}
		if ack.Stream != ti.Stream {
			t.Errorf("%s: stored on %s, documented %s", ti.Name, ack.Stream, ti.Stream)
		}
		switch ti.Subject {
		case catalog.SubjectRestock:
			var cmd catalog.Restock
			mustUnmarshal(t, body, &cmd)
			waitFor(t, ctx, "the restock", func() (bool, string) {
				s := getStock(t, c, cmd.SKU)
				return s.Available == cmd.Quantity, fmt.Sprintf("%+v", s)
			})
		case catalog.SubjectPlaceOrder:
			var cmd catalog.PlaceOrder
			mustUnmarshal(t, body, &cmd)
			waitFor(t, ctx, "the order", func() (bool, string) {
				o := getOrder(t, c, cmd.OrderID)
				return o.OrderID == cmd.OrderID && o.Status == catalog.StatusPending, o.Status
			})
		case catalog.SubjectCancelOrder:
			var cmd catalog.CancelOrder
			mustUnmarshal(t, body, &cmd)
			waitFor(t, ctx, "the cancel", func() (bool, string) {
				o := getOrder(t, c, cmd.OrderID)
				return o.Status == catalog.StatusCancelled && o.Reason == catalog.ReasonCustomerCancelled, o.Status + " " + o.Reason
			})
			setProviderMode(t, c, "normal", nil)
		default:
			if ti.Kind != catalog.KindEvent {
				t.Errorf("%s: no check for its effect", ti.Name)
			}
			// Stored on its stream (checked above) and delivered to each
			// documented consumer.
			for _, durable := range ti.Consumers {
				waitFor(t, ctx, ti.Name+" delivered to "+durable, func() (bool, string) {
					cons, err := js.Consumer(ctx, ti.Stream, durable)
					if err != nil {
						return false, err.Error()
					}
					info, err := cons.Info(ctx)
					if err != nil {
						return false, err.Error()
					}
					return info.Delivered.Stream >= ack.Sequence, fmt.Sprintf("delivered up to %d, want %d", info.Delivered.Stream, ack.Sequence)
				})
			}
		}
	}
	// Each example had the effect it states, none was dead-lettered as
	// news of an order nobody placed: every consumer has handled
	// everything, and the DLQ is empty.
	waitFor(t, ctx, "every consumer done", func() (bool, string) {
		busy := busyConsumers(ctx, js, catalog.StreamCommands, catalog.StreamOrders, catalog.StreamInventory, catalog.StreamPayments, catalog.StreamNotifications)
		return busy == "", busy
	})
	// Except for what the services refuse to believe (events are checked,
	// not believed): a deadline published by hand is not the one orders
	// scheduled, and a confirmation of an order payments has not captured,
	// or that notifications knows to be cancelled (the cancel example
	// cancels it), is not one either. Those dead letters say so.
	refused := []string{"not the order's deadline", "confirmation of a payment not captured", "is not believed"}
	dlqStream, err := js.Stream(ctx, catalog.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlqStream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := dlqStream.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		reason := m.Header.Get(dlq.HeaderReason)
		if !slices.ContainsFunc(refused, func(r string) bool { return strings.Contains(reason, r) }) {
			list, _, _ := runTool(t, "dlq", "ls", "--nats-url", c.natsURL)
			t.Errorf("examples were dead-lettered:\n%s", list)
			break
		}
	}
}

func mustUnmarshal(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatal(err)
	}
}
