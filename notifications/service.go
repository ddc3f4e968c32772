package notifications

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

// Store persists notifications. notificationdb implements it on SQLite and
// PostgreSQL.
type Store interface {
	// Apply runs one unit of work on one notification in one transaction:
	// it claims key in the inbox (an empty EventID skips the claim; a
	// duplicate returns applied=false and changes nothing), loads the
	// notification (nil when absent) locked against concurrent applies,
	// calls fn, saves the notification fn returns (nil: no change) and
	// queues the events fn returns in the outbox. Any error rolls all of
	// it back.
	Apply(ctx context.Context, key inbox.Key, notificationID string, fn func(n *Notification) (*Notification, []events.Outgoing, error)) (applied bool, err error)
	// List returns the notifications of an order, oldest first; none is
	// not an error.
	List(ctx context.Context, orderID string) ([]*Notification, error)
}

// Config configures a Service.
type Config struct {
	Store  Store
	Sender Sender
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default: time.Now
}

// Service handles the notifications service's events.
type Service struct {
	store  Store
	sender Sender
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("notifications: config has no store")
	}
	if cfg.Sender == nil {
		return nil, errors.New("notifications: config has no sender")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{store: cfg.Store, sender: cfg.Sender, log: cfg.Logger, now: cfg.Now}, nil
}

// List returns the notifications of an order, oldest first.
func (s *Service) List(ctx context.Context, orderID string) ([]*Notification, error) {
	return s.store.List(ctx, orderID)
}

// Durable consumer name of the notifications service.
const consumerName = catalog.Notifications

// Subscriptions returns the service's consumers for a worker.
func (s *Service) Subscriptions() []worker.Subscription {
	return []worker.Subscription{{
		Config: consumer.Config{
			Stream:  catalog.StreamOrders,
			Durable: consumerName,
			FilterSubjects: []string{
				catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, "*"),
				catalog.EventSubject(catalog.Orders, catalog.EventCancelled, "*"),
			},
			DLQSubject: catalog.DLQSubject(catalog.Notifications),
			Logger:     s.log,
		},
		Handler: s.Handle,
	}}
}

// Handle dispatches one message by subject. Errors keep their kind: a
// Permanent error sends the message to the dead-letter queue; a sender
// failure is returned as events.Transient, so the message comes back after a
// back-off and the delivery is tried again.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	switch {
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventConfirmed+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderConfirmed](m.Data, catalog.TypeOrderConfirmed)
		if err != nil {
			return err
		}
		return s.record(ctx, env, ForConfirmed(e, s.now()))
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventCancelled+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderCancelled](m.Data, catalog.TypeOrderCancelled)
		if err != nil {
			return err
		}
		return s.record(ctx, env, ForCancelled(e, s.now()))
	}
	return events.Permanent(fmt.Errorf("notifications: %q: %w", m.Subject, catalog.ErrUnknownSubject))
}

// record is step 1: claim the event and record the notification as
// PENDING in one transaction; a notification already recorded for the
// same order and status is kept as it is. It then delivers outside that
// transaction. A duplicate delivers too: the first delivery of the event
// may have committed step 1 and failed (or crashed) before the
// notification was sent, and this redelivery is what finishes it.
func (s *Service) record(ctx context.Context, env events.Envelope, n *Notification) error {
	_, err := s.store.Apply(ctx, inbox.Key{Consumer: consumerName, EventID: env.ID}, n.ID,
		func(existing *Notification) (*Notification, []events.Outgoing, error) {
			if existing != nil {
				return nil, nil, nil
			}
			return n, nil, nil
		})
	if err != nil {
		return err
	}
	return s.deliver(ctx, n.OrderID)
}

// deliver sends the order's pending notifications: step 2, the sender
// call, outside any transaction; step 3, marking it SENT and queueing
// notifications.sent, in a transaction of its own. Running it twice, or on
// two replicas at once, publishes once: step 3 finds the notification
// already sent. The sender may be called twice in that race, with the
// same idempotency key.
func (s *Service) deliver(ctx context.Context, orderID string) error {
	list, err := s.store.List(ctx, orderID)
	if err != nil {
		return err
	}
	for _, n := range list {
		if n.State != Pending {
			continue
		}
		res, err := s.sender.Send(ctx, *n)
		if err != nil {
			// Transient whatever the sender said: the message is
			// redelivered and this runs again for the same notification id.
			return events.Transient(fmt.Errorf("notifications: send %s for order %s: %w", n.ID, orderID, err))
		}
		// No inbox key: step 3 is idempotent by itself (MarkSent ignores
		// a notification already sent) and the event's claim was taken
		// in step 1.
		_, err = s.store.Apply(ctx, inbox.Key{}, n.ID, func(cur *Notification) (*Notification, []events.Outgoing, error) {
			if cur == nil {
				return nil, nil, fmt.Errorf("notifications: mark %s sent: %w", n.ID, ErrNotFound)
			}
			out, err := cur.MarkSent(res, s.now(), events.TraceParentFrom(ctx))
			if err != nil || len(out) == 0 {
				return nil, nil, err
			}
			return cur, out, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
