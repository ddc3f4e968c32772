package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/worker"
	"github.com/choreo-dev/choreo/inventory"
	"github.com/choreo-dev/choreo/inventory/inventoryhttp"
	"github.com/choreo-dev/choreo/inventory/stockdb"
	"github.com/choreo-dev/choreo/notifications"
	"github.com/choreo-dev/choreo/notifications/notificationdb"
	"github.com/choreo-dev/choreo/notifications/notificationhttp"
	"github.com/choreo-dev/choreo/notifications/sender"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
	"github.com/choreo-dev/choreo/orders/orderhttp"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/paymentdb"
	"github.com/choreo-dev/choreo/payments/paymenthttp"
	"github.com/choreo-dev/choreo/payments/provider"
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

func buildInventory(db *sqldb.DB, log *slog.Logger) (builtService, error) {
	store := stockdb.New(db)
	svc, err := inventory.New(inventory.Config{Store: store, Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox: store.Outbox(),
		subs:   svc.Subscriptions(),
		routes: func(mux *http.ServeMux) { inventoryhttp.Register(mux, svc, log) },
	}, nil
}

func buildPayments(db *sqldb.DB, log *slog.Logger) (builtService, error) {
	store := paymentdb.New(db)
	// The HTTP provider simulator arrives with the saga issue; until then
	// every capture is approved.
	svc, err := payments.New(payments.Config{Store: store, Provider: provider.NewAlwaysApprove(), Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox: store.Outbox(),
		subs:   svc.Subscriptions(),
		routes: func(mux *http.ServeMux) { paymenthttp.Register(mux, svc, log) },
	}, nil
}

func buildNotifications(db *sqldb.DB, log *slog.Logger) (builtService, error) {
	store := notificationdb.New(db)
	svc, err := notifications.New(notifications.Config{Store: store, Sender: sender.NewLog(log), Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox: store.Outbox(),
		subs:   svc.Subscriptions(),
		routes: func(mux *http.ServeMux) { notificationhttp.Register(mux, svc, log) },
	}, nil
}

var modules = []module{
	{name: "orders", migrate: orderdb.Migrate, build: buildOrders},
	{name: "inventory", migrate: stockdb.Migrate, build: buildInventory},
	{name: "payments", migrate: paymentdb.Migrate, build: buildPayments},
	{name: "notifications", migrate: notificationdb.Migrate, build: buildNotifications},
}

func findModule(name string) (module, bool) {
	for _, m := range modules {
		if m.name == name {
			return m, true
		}
	}
	return module{}, false
}
