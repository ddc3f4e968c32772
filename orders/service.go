package orders

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

// ErrNotFound is returned for an order id the service does not know.
var ErrNotFound = errors.New("order not found")

// Store persists orders. orderdb implements it on SQLite and PostgreSQL.
type Store interface {
	// Apply runs one unit of work on the order id in one transaction: it
	// claims key in the inbox (a duplicate returns applied=false and changes
	// nothing), loads the order (nil when absent) locked against concurrent
	// applies, calls fn, saves the order fn returns (nil: no change) and
	// queues the events fn returns in the outbox. Any error rolls all of it
	// back.
	Apply(ctx context.Context, key inbox.Key, orderID string, fn func(o *Order) (*Order, []events.Outgoing, error)) (applied bool, err error)
	// Get returns the order or an error wrapping ErrNotFound.
	Get(ctx context.Context, orderID string) (*Order, error)
}

// Service handles the orders service's commands and events.
type Service struct {
	store    Store
	log      *slog.Logger
	now      func() time.Time
	deadline time.Duration
}

// Config configures a Service.
type Config struct {
	Store  Store
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default: time.Now
	// Deadline is how long an order may stay pending before it is
	// cancelled with reason timeout (0: no deadline).
	Deadline time.Duration
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("orders: config has no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Deadline < 0 {
		return nil, fmt.Errorf("orders: negative deadline %s", cfg.Deadline)
	}
	return &Service{store: cfg.Store, log: cfg.Logger, now: cfg.Now, deadline: cfg.Deadline}, nil
}

// Get returns an order.
func (s *Service) Get(ctx context.Context, orderID string) (*Order, error) {
	return s.store.Get(ctx, orderID)
}

// Place creates the order cmd describes, or returns the existing one when
// the order id was placed before with the same content (created=false). A
// different order under the same id is a Conflict.
func (s *Service) Place(ctx context.Context, key inbox.Key, cmd catalog.PlaceOrder) (order *Order, created bool, err error) {
	if err := cmd.Validate(); err != nil {
		return nil, false, events.Permanent(fmt.Errorf("invalid order: %w", err))
	}
	var result *Order
	_, err = s.store.Apply(ctx, key, cmd.OrderID, func(existing *Order) (*Order, []events.Outgoing, error) {
		// The store may run fn again (after losing a race to create the
		// order): only the last, committed run may decide the result.
		result, created = nil, false
		if existing != nil {
			if !existing.SameRequest(cmd) {
				return nil, nil, events.Conflict(fmt.Errorf("place %s: %w", cmd.OrderID, ErrDifferentOrder))
			}
			result = existing
			return nil, nil, nil
		}
		now, tp := s.now(), events.TraceParentFrom(ctx)
		o, out, err := Place(cmd, now, tp)
		if err != nil {
			return nil, nil, err
		}
		if s.deadline > 0 {
			out = append(out, o.DeadlineEvent(now.Add(s.deadline), tp))
		}
		result, created = o, true
		return o, out, nil
	})
	if err != nil {
		return nil, false, err
	}
	if result == nil { // a duplicate command: the inbox already saw it
		result, err = s.store.Get(ctx, cmd.OrderID)
	}
	return result, created, err
}

// Cancel handles a customer's request to cancel an order. It returns the
// order as it is afterwards; for a confirmed order the error is a Conflict
// wrapping ErrNotCancellable (and orders.cancel_rejected is published); an
// unknown order is NotFound.
func (s *Service) Cancel(ctx context.Context, key inbox.Key, orderID string) (*Order, error) {
	var (
		result   *Order
		rejected bool
	)
	applied, err := s.store.Apply(ctx, key, orderID, func(o *Order) (*Order, []events.Outgoing, error) {
		if o == nil {
			return nil, nil, events.NotFound(fmt.Errorf("cancel order %s: %w", orderID, ErrNotFound))
		}
		var out []events.Outgoing
		out, rejected = o.RequestCancel(s.now(), events.TraceParentFrom(ctx))
		result = o
		return o, out, nil
	})
	if err != nil {
		return nil, err
	}
	if !applied { // a repeated command: report the order as it is
		if result, err = s.store.Get(ctx, orderID); err != nil {
			return nil, err
		}
		rejected = result.Status == Confirmed
	}
	if rejected {
		return result, events.Conflict(fmt.Errorf("cancel order %s: %w", orderID, ErrNotCancellable))
	}
	return result, nil
}

// update applies a transition to an existing order.
func (s *Service) update(ctx context.Context, key inbox.Key, orderID string, transition func(o *Order, now time.Time, tp string) []events.Outgoing) error {
	_, err := s.store.Apply(ctx, key, orderID, func(o *Order) (*Order, []events.Outgoing, error) {
		if o == nil {
			// Orders creates every order before anything can refer to it,
			// so this is an event from elsewhere or a lost database.
			return nil, nil, events.Permanent(fmt.Errorf("order %s: %w", orderID, ErrNotFound))
		}
		out := transition(o, s.now(), events.TraceParentFrom(ctx))
		return o, out, nil
	})
	return err
}

// Durable consumer name of the orders service on every stream it reads.
const consumerName = catalog.Orders

// Subscriptions returns the service's consumers for a worker.
func (s *Service) Subscriptions() []worker.Subscription {
	sub := func(stream string, filters ...string) worker.Subscription {
		return worker.Subscription{
			Config: consumer.Config{
				Stream:         stream,
				Durable:        consumerName,
				FilterSubjects: filters,
				DLQSubject:     catalog.DLQSubject(catalog.Orders),
				Logger:         s.log,
			},
			Handler: s.Handle,
		}
	}
	return []worker.Subscription{
		sub(catalog.StreamCommands, "cmd.orders.>"),
		sub(catalog.StreamInventory,
			catalog.EventSubject(catalog.Inventory, catalog.EventReserved, "*"),
			catalog.EventSubject(catalog.Inventory, catalog.EventReservationFailed, "*")),
		sub(catalog.StreamPayments,
			catalog.EventSubject(catalog.Payments, catalog.EventCaptured, "*"),
			catalog.EventSubject(catalog.Payments, catalog.EventDeclined, "*")),
		// Its own stream: the deadlines it scheduled come back from there.
		sub(catalog.StreamOrders, catalog.EventSubject(catalog.Orders, catalog.EventDeadline, "*")),
	}
}

// Handle dispatches one message by subject. Errors keep their kind: a
// Permanent error sends the message to the dead-letter queue.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	switch {
	case m.Subject == catalog.SubjectPlaceOrder:
		cmd, envID, err := catalog.DecodeCommand[catalog.PlaceOrder](m.Data)
		if err != nil {
			return err
		}
		_, _, err = s.Place(ctx, commandKey(m, cmd.CommandID, envID), cmd)
		return err
	case m.Subject == catalog.SubjectCancelOrder:
		cmd, envID, err := catalog.DecodeCommand[catalog.CancelOrder](m.Data)
		if err != nil {
			return err
		}
		_, err = s.Cancel(ctx, commandKey(m, cmd.CommandID, envID), cmd.OrderID)
		switch {
		case errors.Is(err, ErrNotCancellable):
			return nil // answered with orders.cancel_rejected; nothing to retry
		case errors.Is(err, ErrNotFound):
			// The place command may still be on its way (both travel on
			// COMMANDS and are handled concurrently): retry, and let the
			// delivery bound dead-letter a cancel for an order that never
			// comes.
			return events.Transient(err)
		}
		return err
	case strings.HasPrefix(m.Subject, "orders.deadline."):
		env, e, err := catalog.DecodeEvent[catalog.OrderDeadline](m.Data, catalog.TypeOrderDeadline)
		if err != nil {
			return err
		}
		return s.update(ctx, eventKey(env), e.OrderID, func(o *Order, now time.Time, tp string) []events.Outgoing {
			return o.OnDeadline(e, now, tp)
		})
	case strings.HasPrefix(m.Subject, "payments.declined."):
		env, e, err := catalog.DecodeEvent[catalog.PaymentDeclined](m.Data, catalog.TypePaymentDeclined)
		if err != nil {
			return err
		}
		return s.update(ctx, eventKey(env), e.OrderID, func(o *Order, now time.Time, tp string) []events.Outgoing {
			return o.OnPaymentDeclined(e, now, tp)
		})
	case strings.HasPrefix(m.Subject, "inventory.reserved."):
		env, e, err := catalog.DecodeEvent[catalog.StockReserved](m.Data, catalog.TypeStockReserved)
		if err != nil {
			return err
		}
		return s.update(ctx, eventKey(env), e.OrderID, func(o *Order, now time.Time, _ string) []events.Outgoing {
			return o.OnStockReserved(e, now)
		})
	case strings.HasPrefix(m.Subject, "inventory.reservation_failed."):
		env, e, err := catalog.DecodeEvent[catalog.StockReservationFailed](m.Data, catalog.TypeStockReservationFailed)
		if err != nil {
			return err
		}
		return s.update(ctx, eventKey(env), e.OrderID, func(o *Order, now time.Time, tp string) []events.Outgoing {
			return o.OnStockReservationFailed(e, now, tp)
		})
	case strings.HasPrefix(m.Subject, "payments.captured."):
		env, e, err := catalog.DecodeEvent[catalog.PaymentCaptured](m.Data, catalog.TypePaymentCaptured)
		if err != nil {
			return err
		}
		return s.update(ctx, eventKey(env), e.OrderID, func(o *Order, now time.Time, tp string) []events.Outgoing {
			return o.OnPaymentCaptured(e, now, tp)
		})
	}
	return events.Permanent(fmt.Errorf("orders: %q: %w", m.Subject, catalog.ErrUnknownSubject))
}

func eventKey(env events.Envelope) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: env.ID}
}

// commandKey is the inbox key of a command (see consumer.Message.CommandKey).
func commandKey(m *consumer.Message, commandID, envelopeID string) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: m.CommandKey(commandID, envelopeID)}
}
