package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
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
	outbox   *outbox.Outbox
	consumer consumer.Config
	tasks    []worker.Task
	routes   func(mux httpx.Mux)
	// collectors are the service's own metrics (beyond the consumer's,
	// the relay's and the outbox's, which every service has).
	collectors []prometheus.Collector
	// ready checks what the service needs beyond NATS and its store (the
	// payment provider), for /readyz; an error says what is missing.
	ready func(ctx context.Context) error
}

// serviceOptions are the settings some services need beyond a database.
type serviceOptions struct {
	orderDeadline time.Duration      // orders: how long an order may stay pending
	providerURL   string             // payments: the payment provider's API
	smtp          *sender.SMTPConfig // notifications: nil means the log sink
	// durable selects the durability profile of the stores (see
	// sqldb.WithDurable) and of the embedded NATS server.
	durable bool
	// pprof is where net/http/pprof is served ("": nowhere).
	pprof string
	// batch is the most messages a consumer applies in one transaction.
	batch int
	// retention bounds the streams; dupWindow is their duplicate window.
	retention catalog.Retention
	dupWindow time.Duration
	// inboxRetention is how long the inbox remembers a handled message.
	inboxRetention time.Duration
	// reorderWait is how long a consumer retries a message that came
	// before one it follows (see consumer.Config.ReorderWait).
	reorderWait time.Duration
	// offline replaces every external system with an in-process stand-in
	// (offlineProvider, else an always-approving provider; a log sink),
	// for choreo replay: a replayed event must never charge a card or
	// send an email.
	offline bool
	// offlineProvider answers the payments service's provider calls when
	// offline: choreo replay passes one that answers as the live provider
	// did, from the PAYMENTS stream (see provider.Recorded).
	offlineProvider payments.Provider
	// edge guards the HTTP APIs: authentication and rate limits.
	edge edgeOptions
}

// module is how cmd builds one service. Each service stays self-contained;
// this is the only place that knows all four.
type module struct {
	name    string
	migrate func(ctx context.Context, db *sqldb.DB) error
	build   func(db *sqldb.DB, log *slog.Logger, opts serviceOptions) (builtService, error)
}

func buildOrders(db *sqldb.DB, log *slog.Logger, opts serviceOptions) (builtService, error) {
	store := orderdb.New(db)
	svc, err := orders.New(orders.Config{Store: store, Logger: log, Deadline: opts.orderDeadline})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox:   store.Outbox(),
		consumer: svc.Consumer(),
		// The safety net behind scheduled deadlines (see SweepDeadlines).
		tasks: []worker.Task{{Name: "deadline sweep", Every: 30 * time.Second, Run: func(ctx context.Context) error {
			_, err := svc.SweepDeadlines(ctx)
			return err
		}}},
		routes: func(mux httpx.Mux) {
			orderhttp.Register(mux, svc, idempotency.New(db, idempotency.WithLogger(log)), log)
		},
		collectors: []prometheus.Collector{svc.Collector()},
	}, nil
}

func buildInventory(db *sqldb.DB, log *slog.Logger, _ serviceOptions) (builtService, error) {
	store := stockdb.New(db)
	svc, err := inventory.New(inventory.Config{Store: store, Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox:   store.Outbox(),
		consumer: svc.Consumer(),
		routes: func(mux httpx.Mux) {
			inventoryhttp.Register(mux, svc, idempotency.New(db, idempotency.WithLogger(log)), log)
		},
	}, nil
}

func buildPayments(db *sqldb.DB, log *slog.Logger, opts serviceOptions) (builtService, error) {
	store := paymentdb.New(db)
	var (
		pay        payments.Provider = provider.NewAlwaysApprove()
		collectors []prometheus.Collector
		ready      func(context.Context) error
	)
	switch {
	case opts.offline && opts.offlineProvider != nil:
		pay = opts.offlineProvider
	case !opts.offline:
		client, err := provider.NewHTTP(provider.HTTPConfig{BaseURL: opts.providerURL, Logger: log})
		if err != nil {
			return builtService{}, err
		}
		pay, collectors = client, client.Collectors()
		ready = providerReachable(opts.providerURL)
	}
	svc, err := payments.New(payments.Config{Store: store, Provider: pay, Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox:     store.Outbox(),
		consumer:   svc.Consumer(),
		routes:     func(mux httpx.Mux) { paymenthttp.Register(mux, svc, log) },
		collectors: collectors,
		ready:      ready,
	}, nil
}

func buildNotifications(db *sqldb.DB, log *slog.Logger, opts serviceOptions) (builtService, error) {
	store := notificationdb.New(db)
	var send notifications.Sender = sender.NewLog(log)
	if opts.smtp != nil && !opts.offline {
		cfg := *opts.smtp
		cfg.Logger = log
		smtp, err := sender.NewSMTP(cfg)
		if err != nil {
			return builtService{}, err
		}
		send = smtp
	}
	svc, err := notifications.New(notifications.Config{Store: store, Sender: send, Logger: log})
	if err != nil {
		return builtService{}, err
	}
	return builtService{
		outbox:   store.Outbox(),
		consumer: svc.Consumer(),
		routes:   func(mux httpx.Mux) { notificationhttp.Register(mux, svc, log) },
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

// providerReachable checks that something accepts connections where the
// payment provider's API should be. It asks no more of the provider than
// a TCP connection, since a real provider need not have a health endpoint;
// a provider that answers but fails is the circuit breaker's to handle,
// not a reason to take the instance out of service.
func providerReachable(baseURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		u, err := url.Parse(baseURL)
		if err != nil {
			return fmt.Errorf("payment provider %s: %w", baseURL, err)
		}
		host := u.Host
		if u.Port() == "" {
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			return fmt.Errorf("payment provider %s not reachable: %w (start it, e.g. choreo provider, or set --provider-url / CHOREO_PROVIDER_URL)", baseURL, err)
		}
		return c.Close()
	}
}
