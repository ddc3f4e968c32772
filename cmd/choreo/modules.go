package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/worker"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
	"github.com/choreo-dev/choreo/orders/orderhttp"
)

// builtService is one service wired to its store: what the worker runs and
// the HTTP routes it serves.
type builtService struct {
	outbox *outbox.Outbox
	subs   []worker.Subscription
	routes func(mux *http.ServeMux)
}

// module is how cmd builds one service. Each service stays self-contained;
// this is the only place that knows all four.
type module struct {
	name    string
	migrate func(ctx context.Context, db *sqldb.DB) error
	build   func(db *sqldb.DB, log *slog.Logger) (builtService, error)
}

func buildOrders(db *sqldb.DB, log *slog.Logger) (builtService, error) {
	store := orderdb.New(db)
	svc, err := orders.New(orders.Config{Store: store, Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox: store.Outbox(),
		subs:   svc.Subscriptions(),
		routes: func(mux *http.ServeMux) { orderhttp.Register(mux, svc, log) },
	}, nil
}

var modules = []module{
	{name: "orders", migrate: orderdb.Migrate, build: buildOrders},
}

func findModule(name string) (module, bool) {
	for _, m := range modules {
		if m.name == name {
			return m, true
		}
	}
	return module{}, false
}
