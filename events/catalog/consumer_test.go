package catalog_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
)

func route(r *consumer.Router, pattern string) {
	consumer.Route(r, pattern, func(m *consumer.Message) (struct{}, error) { return struct{}{}, nil },
		func(context.Context, *consumer.Message, struct{}) (consumer.Work, error) { return consumer.Work{}, nil })
}

func TestConsumerOfFiltersEachStreamOnTheRoutesItHolds(t *testing.T) {
	r := consumer.NewRouter("orders")
	route(r, "payments.captured.*")
	route(r, "cmd.orders.place")
	route(r, "inventory.reserved.*")
	route(r, "cmd.orders.cancel")
	route(r, "payments.declined.*")
	cfg := catalog.ConsumerOf("orders", r, nil)
	got := map[string]string{}
	for _, s := range cfg.Sources {
		if s.Durable != "orders" {
			t.Errorf("source %s: durable %q, want orders", s.Stream, s.Durable)
		}
		got[s.Stream] = fmt.Sprint(s.FilterSubjects)
	}
	want := map[string]string{
		catalog.StreamCommands:  "[cmd.orders.>]", // every command to orders: one it has no route for is dead-lettered
		catalog.StreamInventory: "[inventory.reserved.*]",
		catalog.StreamPayments:  "[payments.captured.* payments.declined.*]",
	}
	if len(got) != len(want) || len(cfg.Sources) != len(want) {
		t.Errorf("sources %v, want one per stream: %v", got, want)
	}
	for stream, filters := range want {
		if got[stream] != filters {
			t.Errorf("stream %s filtered on %s, want %s", stream, got[stream], filters)
		}
	}
	if cfg.DLQSubject != catalog.DLQSubject("orders") || cfg.Handler == nil {
		t.Errorf("DLQ subject %q, handler set %v", cfg.DLQSubject, cfg.Handler != nil)
	}
}

func TestConsumerOfARouteNoStreamHoldsPanics(t *testing.T) {
	r := consumer.NewRouter("x")
	route(r, "nowhere.at.all")
	defer func() {
		if recover() == nil {
			t.Error("ConsumerOf did not panic on a route no stream holds")
		}
	}()
	catalog.ConsumerOf("x", r, nil)
}
