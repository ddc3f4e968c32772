package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/worker"
)

// Store persists payments. paymentdb implements it on SQLite and
// PostgreSQL.
type Store interface {
	// Apply runs one unit of work on the payment of orderID in one
	// transaction: it claims key in the inbox (an empty EventID skips the
	// claim; a duplicate returns applied=false and changes nothing), loads
	// the payment (nil when absent) locked against concurrent applies,
	// calls fn, saves the payment fn returns (nil: no change) and queues
	// the events fn returns in the outbox. Any error rolls all of it back.
	Apply(ctx context.Context, key inbox.Key, orderID string, fn func(p *Payment) (*Payment, []events.Outgoing, error)) (applied bool, err error)
	// Get returns the payment of an order or an error wrapping ErrNotFound.
	Get(ctx context.Context, orderID string) (*Payment, error)
}

// Config configures a Service.
type Config struct {
	Store    Store
	Provider Provider
	Logger   *slog.Logger     // default: discard
	Now      func() time.Time // default: time.Now
}

// Service handles the payments service's events.
type Service struct {
	store    Store
	provider Provider
	log      *slog.Logger
	now      func() time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("payments: config has no store")
	}
	if cfg.Provider == nil {
		return nil, errors.New("payments: config has no provider")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{store: cfg.Store, provider: cfg.Provider, log: cfg.Logger, now: cfg.Now}, nil
}

// Get returns the payment of an order, or an error wrapping ErrNotFound.
func (s *Service) Get(ctx context.Context, orderID string) (*Payment, error) {
	return s.store.Get(ctx, orderID)
}

// Durable consumer name of the payments service on every stream it reads.
const consumerName = catalog.Payments

// Subscriptions returns the service's consumers for a worker.
func (s *Service) Subscriptions() []worker.Subscription {
	sub := func(stream string, filters ...string) worker.Subscription {
		return worker.Subscription{
			Config: consumer.Config{
				Stream:         stream,
				Durable:        consumerName,
				FilterSubjects: filters,
				DLQSubject:     catalog.DLQSubject(catalog.Payments),
				Logger:         s.log,
			},
			Handler: s.Handle,
		}
	}
	return []worker.Subscription{
		sub(catalog.StreamOrders, catalog.EventSubject(catalog.Orders, catalog.EventPlaced, "*")),
		sub(catalog.StreamInventory, catalog.EventSubject(catalog.Inventory, catalog.EventReserved, "*")),
	}
}

// Handle dispatches one message by subject. Errors keep their kind: a
// Permanent error sends the message to the dead-letter queue; a provider
// failure is returned as events.Transient, so the message comes back after a
// back-off and the capture is tried again.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	switch {
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventPlaced+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderPlaced](m.Data, catalog.TypeOrderPlaced)
		if err != nil {
			return err
		}
		return s.record(ctx, env, e.OrderID, func(p *Payment, now time.Time) error {
			return p.OnOrderPlaced(e, now)
		})
	case strings.HasPrefix(m.Subject, catalog.Inventory+"."+catalog.EventReserved+"."):
		env, e, err := catalog.DecodeEvent[catalog.StockReserved](m.Data, catalog.TypeStockReserved)
		if err != nil {
			return err
		}
		return s.record(ctx, env, e.OrderID, func(p *Payment, now time.Time) error {
			return p.OnStockReserved(e, now)
		})
	}
	return events.Permanent(fmt.Errorf("payments: %q: %w", m.Subject, catalog.ErrUnknownSubject))
}

// record is step 1 of a capture: claim the event and update the payment
// in one transaction, which moves it to CAPTURE_PENDING when the event
// completes the pair. It then settles the payment outside that
// transaction. A duplicate settles too: the first delivery may have
// committed step 1 and failed (or crashed) before the capture was
// recorded, and this redelivery is what finishes it.
func (s *Service) record(ctx context.Context, env events.Envelope, orderID string, transition func(p *Payment, now time.Time) error) error {
	var pending bool
	applied, err := s.store.Apply(ctx, inbox.Key{Consumer: consumerName, EventID: env.ID}, orderID,
		func(p *Payment) (*Payment, []events.Outgoing, error) {
			now := s.now()
			if p == nil {
				p = NewPayment(orderID, now)
			}
			if err := transition(p, now); err != nil {
				return nil, nil, err
			}
			pending = p.Status == CapturePending
			return p, nil, nil
		})
	if err != nil {
		return err
	}
	if applied && !pending {
		return nil // waiting for the other event, or already captured
	}
	return s.settle(ctx, orderID)
}

// settle captures a CAPTURE_PENDING payment: step 2, the provider call,
// outside any transaction; step 3, recording the charge and queueing
// payments.captured, in a transaction of its own. A payment in any other
// status is left alone. Running it twice, or on two replicas at once, is
// safe: the provider's idempotency key makes the second call return the
// first charge, and step 3 finds the payment already captured.
func (s *Service) settle(ctx context.Context, orderID string) error {
	p, err := s.store.Get(ctx, orderID)
	if errors.Is(err, ErrNotFound) {
		return nil // nothing was ever recorded, so nothing is pending
	}
	if err != nil {
		return err
	}
	if p.Status != CapturePending {
		return nil
	}
	res, err := s.provider.Capture(ctx, p.CaptureRequest())
	if err != nil {
		// Transient whatever the provider said: the message is
		// redelivered and this runs again with the same idempotency key.
		// (Declines are answers, not errors, and arrive with the saga.)
		return events.Transient(fmt.Errorf("payments: capture order %s: %w", orderID, err))
	}
	var captured *Payment
	// No inbox key: step 3 is idempotent by itself (OnCaptured ignores a
	// payment already captured) and the message's own claim was taken in
	// step 1.
	_, err = s.store.Apply(ctx, inbox.Key{}, orderID, func(p *Payment) (*Payment, []events.Outgoing, error) {
		if p == nil {
			return nil, nil, fmt.Errorf("payments: record capture of order %s: %w", orderID, ErrNotFound)
		}
		out, err := p.OnCaptured(res, s.now(), events.TraceParentFrom(ctx))
		if err != nil || len(out) == 0 {
			return nil, nil, err
		}
		captured = p
		return p, out, nil
	})
	if err != nil {
		return err
	}
	if captured != nil {
		s.log.Info("payments: captured", "order_id", orderID, "payment_id", captured.PaymentID,
			"amount", captured.Amount.Amount, "currency", captured.Amount.Currency)
	}
	return nil
}
