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
	got := map[string]string{} // "stream durable" → filters, skipped
	for _, s := range cfg.Sources {
		got[s.Stream+" "+s.Durable] = fmt.Sprint(s.FilterSubjects, s.Skip)
	}
	want := map[string]string{
		// Every command to orders: one it has no route for is
		// dead-lettered; the routed ones its own consumers take.
		catalog.StreamCommands + " orders": "[cmd.orders.>] [cmd.orders.place cmd.orders.cancel]",
		// A durable consumer per kind of command: a flood of one kind
		// fills its own ack-pending limit, not the other's.
		catalog.StreamCommands + " orders-place":  "[cmd.orders.place] []",
		catalog.StreamCommands + " orders-cancel": "[cmd.orders.cancel] []",
		catalog.StreamInventory + " orders":       "[inventory.reserved.*] []",
		catalog.StreamPayments + " orders":        "[payments.captured.* payments.declined.*] []",
	}
	if len(got) != len(want) || len(cfg.Sources) != len(want) {
		t.Errorf("sources %v, want %v", got, want)
	}
	for k, filters := range want {
		if got[k] != filters {
			t.Errorf("%s filtered on (and skipping) %s, want %s", k, got[k], filters)
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
