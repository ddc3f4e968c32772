package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/discovery"
	"github.com/choreo-dev/choreo/events/natstest"
)

func start(t *testing.T) (*nats.Conn, *discovery.Service) {
	t.Helper()
	srv := natstest.Start(t)
	nc, _ := natstest.Connect(t, srv.URL)
	s, err := discovery.Start(nc, discovery.Config{
		Name: "choreo-orders", Version: "1.2.3", Description: "orders", Metadata: map[string]string{"service": "orders"},
		Endpoints: []discovery.Endpoint{{
			Name: "status", Subject: "choreo.orders.status",
			Handle: func(_ context.Context, data []byte) (any, error) {
				if string(data) == "fail" {
					return nil, errors.New("asked to fail")
				}
				return map[string]string{"ok": "yes"}, nil
			},
			Stats: func() any { return map[string]int{"backlog": 7} },
		}},
		Consumes: []discovery.Consumed{
			{Pattern: "cmd.orders.>", Stream: "COMMANDS", Consumer: "orders"},
			{Pattern: "payments.captured.*", Stream: "PAYMENTS", Consumer: "orders"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return nc, s
}

func request[T any](t *testing.T, nc *nats.Conn, subject string) T {
	t.Helper()
	msg, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var v T
	if err := json.Unmarshal(msg.Data, &v); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	return v
}

// handle runs one message with outcome o through the middleware.
func handle(mw consumer.Middleware, route string, o consumer.Outcome) {
	subject := route
	if route == "" {
		subject = "nothing.takes.this"
	}
	_, done := mw(context.Background(), &consumer.Message{Route: route, Subject: subject, Consumer: "orders"})
	done(o)
}

func TestStatsCountWhatTheConsumerDid(t *testing.T) {
	nc, s := start(t)
	mw := s.Middleware()
	handle(mw, "cmd.orders.place", consumer.Outcome{Result: consumer.Handled})
	handle(mw, "cmd.orders.place", consumer.Outcome{Result: consumer.Duplicate})
	handle(mw, "cmd.orders.cancel", consumer.Outcome{Result: consumer.Retried, Err: errors.New("db busy")})
	handle(mw, "cmd.orders.teleport", consumer.Outcome{Result: consumer.DeadLettered, Err: errors.New("no route")})
	handle(mw, "payments.captured.*", consumer.Outcome{Result: consumer.Handled})
	handle(mw, "", consumer.Outcome{Result: consumer.DeadLettered, Err: errors.New("undecodable")})
	if _, err := nc.Request("choreo.orders.status", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	failed, err := nc.Request("choreo.orders.status", []byte("fail"), 5*time.Second)
	if err != nil || failed.Header.Get(micro.ErrorHeader) != "asked to fail" || failed.Header.Get(micro.ErrorCodeHeader) != "500" {
		t.Errorf("a failing endpoint answered %v, %v; want the micro error headers", failed, err)
	}

	// micro counts a request after its handler has answered it, so the
	// answer can reach us first: ask until the status endpoint has both.
	stats := request[micro.Stats](t, nc, "$SRV.STATS.choreo-orders")
	for try := 0; try < 100 && statusRequests(stats) < 2; try++ {
		time.Sleep(10 * time.Millisecond)
		stats = request[micro.Stats](t, nc, "$SRV.STATS.choreo-orders")
	}
	if stats.Type != micro.StatsResponseType || stats.Name != "choreo-orders" || stats.ID != s.ID() || stats.Version != "1.2.3" {
		t.Errorf("stats identity %+v", stats.ServiceIdentity)
	}
	type row struct {
		subject                   string
		requests, errors          int
		lastError                 string
		handled, dups, retried    int
		deadLettered, dataBacklog int
	}
	want := map[string]row{
		"status":            {subject: "choreo.orders.status", requests: 2, errors: 1, lastError: "asked to fail", dataBacklog: 7},
		"cmd-orders":        {subject: "cmd.orders.>", requests: 4, errors: 2, lastError: "no route", handled: 1, dups: 1, retried: 1, deadLettered: 1},
		"payments-captured": {subject: "payments.captured.*", requests: 1, handled: 1},
		"unrouted":          {requests: 1, errors: 1, lastError: "undecodable", deadLettered: 1},
	}
	if len(stats.Endpoints) != len(want) {
		t.Errorf("%d stats rows, want %d", len(stats.Endpoints), len(want))
	}
	for _, e := range stats.Endpoints {
		w, ok := want[e.Name]
		if !ok {
			t.Errorf("unexpected row %q", e.Name)
			continue
		}
		var data struct {
			Handled, Duplicates, Retried int
			DeadLettered                 int `json:"dead_lettered"`
			Backlog                      int
		}
		_ = json.Unmarshal(e.Data, &data)
		got := row{subject: w.subject, requests: e.NumRequests, errors: e.NumErrors, lastError: e.LastError,
			handled: data.Handled, dups: data.Duplicates, retried: data.Retried, deadLettered: data.DeadLettered, dataBacklog: data.Backlog}
		if e.Name != "unrouted" {
			got.subject = e.Subject
		}
		if got != w {
			t.Errorf("row %s: got %+v, want %+v", e.Name, got, w)
		}
		if e.NumRequests > 0 && e.AverageProcessingTime != e.ProcessingTime/time.Duration(e.NumRequests) {
			t.Errorf("row %s: average %v of %v over %d", e.Name, e.AverageProcessingTime, e.ProcessingTime, e.NumRequests)
		}
	}
}

func TestAnswersAtEveryScope(t *testing.T) {
	nc, s := start(t)
	for _, subject := range []string{"$SRV.PING", "$SRV.PING.choreo-orders", "$SRV.PING.choreo-orders." + s.ID()} {
		p := request[micro.Ping](t, nc, subject)
		if p.Type != micro.PingResponseType || p.Name != "choreo-orders" || p.ID != s.ID() || p.Metadata["service"] != "orders" {
			t.Errorf("%s: %+v", subject, p)
		}
	}
	info := request[micro.Info](t, nc, "$SRV.INFO.choreo-orders")
	if info.Type != micro.InfoResponseType || info.Description != "orders" || len(info.Endpoints) != 3 {
		t.Fatalf("info %+v", info)
	}
	if e := info.Endpoints[0]; e.Name != "status" || e.QueueGroup != "q" {
		t.Errorf("first endpoint %+v, want the status endpoint in queue group q", e)
	}
	if e := info.Endpoints[2]; e.Name != "payments-captured" || e.Subject != "payments.captured.*" || e.QueueGroup != "orders" ||
		e.Metadata["stream"] != "PAYMENTS" || e.Metadata["kind"] != "jetstream-consumer" {
		t.Errorf("consumed endpoint %+v", e)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request("$SRV.PING.choreo-orders", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("after Stop: %v, want no responders", err)
	}
}

func TestConfigIsChecked(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := natstest.Connect(t, srv.URL)
	for name, cfg := range map[string]discovery.Config{
		"bad name":         {Name: "choreo.orders"},
		"endpoint handler": {Name: "x", Endpoints: []discovery.Endpoint{{Name: "status", Subject: "x.status"}}},
	} {
		if _, err := discovery.Start(nc, cfg); err == nil {
			t.Errorf("%s: Start accepted %+v", name, cfg)
		}
	}
}

// statusRequests is how many requests the status endpoint has counted.
func statusRequests(stats micro.Stats) int {
	for _, e := range stats.Endpoints {
		if e.Name == "status" {
			return e.NumRequests
		}
	}
	return 0
}
