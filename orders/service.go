package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
)

// ErrNotFound is returned for an order id the service does not know.
var ErrNotFound = errors.New("order not found")

// Transition is a unit of work on one order: it gets the order as stored
// (nil when there is none), and returns the order to save (nil: no change)
// and the events the change publishes.
type Transition = aggregate.Transition[Order]

// Store persists orders. orderdb implements it on SQLite and PostgreSQL.
type Store interface {
	// Apply, Work and Outbox change an order (see aggregate.Changer).
	aggregate.Changer[Order]
	// Get returns the order or an error wrapping ErrNotFound.
	Get(ctx context.Context, orderID string) (*Order, error)
	// Overdue returns the ids of up to limit orders still pending that
	// were placed before placedBefore, oldest first.
	Overdue(ctx context.Context, placedBefore time.Time, limit int) ([]string, error)
	// List returns a page of orders, newest first (see ListQuery). A
	// query it refuses is a Permanent error wrapping a *ListParamError.
	List(ctx context.Context, q ListQuery) (Page, error)
}

// Service handles the orders service's commands and events.
type Service struct {
	store    Store
	log      *slog.Logger
	now      func() time.Time
	deadline time.Duration
	grace    time.Duration
	router   *consumer.Router
	sagas    *prometheus.HistogramVec
}

// Config configures a Service.
type Config struct {
	Store  Store
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default: time.Now
	// Deadline is how long an order may stay pending before it is
	// cancelled with reason timeout (0: no deadline).
	Deadline time.Duration
	// DeadlineGrace is how long past its deadline an order may stay
	// pending before SweepDeadlines cancels it (default a minute): the
	// deadline's scheduled message should have fired long before.
	DeadlineGrace time.Duration
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
	if cfg.DeadlineGrace <= 0 {
		cfg.DeadlineGrace = time.Minute
	}
	s := &Service{store: cfg.Store, log: cfg.Logger, now: cfg.Now, deadline: cfg.Deadline, grace: cfg.DeadlineGrace, sagas: newSagaDuration()}
	s.router = s.routes()
	return s, nil
}

// Get returns an order.
func (s *Service) Get(ctx context.Context, orderID string) (*Order, error) {
	return s.store.Get(ctx, orderID)
}

// List returns a page of orders, newest first; see Store.List.
func (s *Service) List(ctx context.Context, q ListQuery) (Page, error) {
	return s.store.List(ctx, q)
}

// Place creates the order cmd describes, or returns the existing one when
// the order id was placed before with the same content (created=false). A
// different order under the same id is a Conflict.
func (s *Service) Place(ctx context.Context, key inbox.Key, cmd catalog.PlaceOrder) (order *Order, created bool, err error) {
	if err := cmd.Validate(); err != nil {
		return nil, false, events.Permanent(fmt.Errorf("invalid order: %w", err))
	}
	var result *Order
	_, err = s.store.Apply(ctx, key, cmd.OrderID, s.place(cmd, func(o *Order, c bool) { result, created = o, c }))
	if err != nil {
		return nil, false, err
	}
	if result == nil { // a duplicate command: the inbox already saw it
		result, err = s.store.Get(ctx, cmd.OrderID)
	}
	return result, created, err
}

// place is the transition that places cmd. It reports the order it leaves
// and whether it created it to decided; the store may run it more than
// once (after losing a race to create the order), and only the last, the
// committed, run counts.
func (s *Service) place(cmd catalog.PlaceOrder, decided func(o *Order, created bool)) Transition {
	return func(existing *Order) (*Order, []events.Outgoing, error) {
		decided(nil, false)
		if existing != nil {
			if !existing.SameRequest(cmd) {
				// Name the earlier command's order, so the client can tell
				// which of its requests claimed the id.
				return nil, nil, events.Conflict(fmt.Errorf("place %s: %w: an earlier command placed it at %s for customer %q, %d lines, total %s",
					cmd.OrderID, ErrDifferentOrder, existing.PlacedAt.Format(time.RFC3339), existing.CustomerID, len(existing.Items), existing.Total))
			}
			decided(existing, false)
			return nil, nil, nil
		}
		now := s.now()
		o, out, err := Place(cmd, now)
		if err != nil {
			return nil, nil, err
		}
		if s.deadline > 0 {
			out = append(out, o.DeadlineEvent(now.Add(s.deadline)))
		}
		decided(o, true)
		return o, out, nil
	}
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
	cancel, ended := s.watchEnd(s.cancel(orderID, func(o *Order, r bool) { result, rejected = o, r }))
	applied, err := s.store.Apply(ctx, key, orderID, cancel)
	if err != nil {
		return nil, err
	}
	if applied {
		ended(ctx)
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

// cancel is the transition of a customer's cancel; it reports the order
// it leaves and whether the cancel was rejected to decided.
func (s *Service) cancel(orderID string, decided func(o *Order, rejected bool)) Transition {
	return func(o *Order) (*Order, []events.Outgoing, error) {
		if o == nil {
			return nil, nil, events.NotFound(fmt.Errorf("cancel order %s: %w", orderID, ErrNotFound))
		}
		out, rejected := o.RequestCancel(s.now())
		decided(o, rejected)
		return o, s.endDeadline(o, out), nil
	}
}

// SweepDeadlines cancels, with reason timeout, every order still pending
// past its deadline plus the grace, and returns how many it cancelled. It
// is the safety net behind the scheduled deadline: a schedule the ORDERS
// stream dropped (its limits evict the oldest messages, and a schedule of
// an order stuck pending grows old) or never received (a stream restored
// without it) must not leave an order pending for ever. It changes
// nothing for an order that ended meanwhile, and running it on several
// replicas at once is safe: the order's row lock decides.
func (s *Service) SweepDeadlines(ctx context.Context) (int, error) {
	if s.deadline <= 0 {
		return 0, nil
	}
	cancelled := 0
	for {
		ids, err := s.store.Overdue(ctx, s.now().Add(-s.deadline-s.grace), 100)
		if err != nil {
			return cancelled, fmt.Errorf("orders: sweep deadlines: %w", err)
		}
		for _, id := range ids {
			applied := false
			timeout, ended := s.watchEnd(func(o *Order) (*Order, []events.Outgoing, error) {
				applied = false
				if o == nil || o.Status.Final() {
					return nil, nil, nil
				}
				out := o.OnDeadline(catalog.OrderDeadline{OrderID: id, Deadline: o.PlacedAt.Add(s.deadline)}, s.now())
				applied = len(out) > 0
				return o, s.endDeadline(o, out), nil
			})
			if _, err := s.store.Apply(ctx, inbox.Key{}, id, timeout); err != nil {
				return cancelled, fmt.Errorf("orders: sweep deadline of %s: %w", id, err)
			}
			if applied {
				ended(ctx)
				cancelled++
				s.log.Warn("orders: cancelled an order past its deadline whose scheduled deadline never came", "order_id", id)
			}
		}
		if len(ids) < 100 {
			return cancelled, nil
		}
	}
}

// endDeadline lets the order's final event withdraw its deadline, when
// the service schedules deadlines.
func (s *Service) endDeadline(o *Order, out []events.Outgoing) []events.Outgoing {
	if s.deadline <= 0 {
		return out
	}
	return o.EndDeadline(out)
}

// update is the work of an event that moves an existing order on.
func (s *Service) update(key inbox.Key, orderID string, transition func(o *Order, now time.Time) ([]events.Outgoing, error)) consumer.Work {
	return s.work(key, orderID, func(o *Order) (*Order, []events.Outgoing, error) {
		if o == nil {
			// Orders creates every order before anything can refer to it,
			// so this is an event from elsewhere or a lost database.
			return nil, nil, events.Permanent(fmt.Errorf("order %s: %w", orderID, ErrNotFound))
		}
		out, err := transition(o, s.now())
		if err != nil {
			return nil, nil, err
		}
		return o, s.endDeadline(o, out), nil
	})
}

// work is the store's Work for fn, recording the saga's end if fn ends it.
func (s *Service) work(key inbox.Key, orderID string, fn Transition) consumer.Work {
	fn, ended := s.watchEnd(fn)
	w := s.store.Work(key, orderID, fn)
	w.Committed = ended
	return w
}

// Durable consumer name of the orders service on every stream it reads.
const consumerName = catalog.Orders

// Consumer returns the configuration of the service's consumer: the
// streams its routes read, and its router.
func (s *Service) Consumer() consumer.Config {
	return catalog.ConsumerOf(catalog.Orders, s.router, s.log)
}

// Handle handles one message to the end, in a transaction of its own: what
// the consumer does with it, for tests and tools. Errors keep their kind: a
// Permanent error is one the consumer dead-letters.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	return consumer.HandleOne(ctx, s.store.Outbox(), s.router.Handle, m)
}

func (s *Service) routes() *consumer.Router {
	r := consumer.NewRouter(catalog.Orders)
	consumer.Route(r, catalog.SubjectPlaceOrder, catalog.CommandOf[catalog.PlaceOrder], s.onPlace)
	consumer.Route(r, catalog.SubjectCancelOrder, catalog.CommandOf[catalog.CancelOrder], s.onCancel)
	// The events that move an existing order on, each to its transition.
	onCheckedEvent(s, r, catalog.Orders, catalog.EventDeadline, catalog.TypeOrderDeadline, s.checkDeadline, (*Order).OnDeadline)
	onEvent(s, r, catalog.Payments, catalog.EventDeclined, catalog.TypePaymentDeclined, (*Order).OnPaymentDeclined)
	onEvent(s, r, catalog.Inventory, catalog.EventReserved, catalog.TypeStockReserved, (*Order).OnStockReserved)
	onEvent(s, r, catalog.Inventory, catalog.EventReservationFailed, catalog.TypeStockReservationFailed, (*Order).OnStockReservationFailed)
	onCheckedEvent(s, r, catalog.Payments, catalog.EventCaptured, catalog.TypePaymentCaptured, (*Order).CheckCapture, (*Order).OnPaymentCaptured)
	return r
}

func (s *Service) onPlace(ctx context.Context, _ *consumer.Message, c catalog.Command[catalog.PlaceOrder]) (consumer.Work, error) {
	if err := c.Body.Validate(); err != nil {
		return consumer.Work{}, events.Permanent(fmt.Errorf("invalid order: %w", err))
	}
	return s.store.Work(c.InboxKey(consumerName), c.Body.OrderID, s.place(c.Body, func(*Order, bool) {})), nil
}

func (s *Service) onCancel(ctx context.Context, _ *consumer.Message, c catalog.Command[catalog.CancelOrder]) (consumer.Work, error) {
	cancel := s.cancel(c.Body.OrderID, func(*Order, bool) {})
	return s.work(c.InboxKey(consumerName), c.Body.OrderID, func(o *Order) (*Order, []events.Outgoing, error) {
		next, out, err := cancel(o)
		if errors.Is(err, ErrNotFound) {
			// The place command may still be on its way (both travel on
			// COMMANDS and may be handled in either order): retry, and
			// let the delivery bound dead-letter a cancel for an order
			// that never comes. A rejected cancel is answered with
			// orders.cancel_rejected: nothing to retry.
			return nil, nil, events.Transient(err)
		}
		return next, out, err
	}), nil
}

// ErrForgedDeadline is wrapped by the error for an orders.deadline that
// cannot be the order's own: the service schedules none, it names an
// earlier time than the one scheduled, or it fires before its time.
var ErrForgedDeadline = errors.New("not the order's deadline")

// deadlineSlack absorbs what separates a real deadline's firing from the
// time it names: the schedule is written to the second (so it may fire up
// to a second early) and the server's clock may be a little ahead of the
// service's.
const deadlineSlack = 2 * time.Second

// checkDeadline reports whether e can be the deadline the service
// scheduled for o. The service schedules it at o's placing for
// PlacedAt+Deadline, and the server fires it at that time, so an
// orders.deadline that names an earlier time, or arrives before the time
// it names (checked against the service's clock, not anything the event
// says), or for a service that schedules no deadlines, is forged — it
// would cancel any pending order at will — and is dead-lettered. The
// same holds for an order already final: a real deadline that fired as
// the order ended passes, and changes nothing (OnDeadline).
//
// A deadline scheduled before --order-timeout was lengthened names an
// earlier time than the new setting gives, and is refused too; the sweep
// (SweepDeadlines) cancels that order once it is overdue by the new
// setting.
func (s *Service) checkDeadline(o *Order, e catalog.OrderDeadline) error {
	switch due := o.PlacedAt.Add(s.deadline); {
	case s.deadline <= 0:
		return events.Permanent(fmt.Errorf("order %s: deadline %s, and orders schedules no deadlines: %w", o.ID, e.Deadline.UTC().Format(time.RFC3339), ErrForgedDeadline))
	case e.Deadline.Before(due.Add(-deadlineSlack)):
		return events.Permanent(fmt.Errorf("order %s: deadline %s, placed %s with a %s deadline (due %s): %w", o.ID,
			e.Deadline.UTC().Format(time.RFC3339), o.PlacedAt.Format(time.RFC3339), s.deadline, due.Format(time.RFC3339), ErrForgedDeadline))
	case s.now().Before(e.Deadline.Add(-deadlineSlack)):
		return events.Permanent(fmt.Errorf("order %s: deadline %s arrived at %s, before its time: %w", o.ID,
			e.Deadline.UTC().Format(time.RFC3339), s.now().UTC().Format(time.RFC3339), ErrForgedDeadline))
	}
	return nil
}

// onEvent routes service's events of the given name and type to
// transition, which moves an existing order on.
func onEvent[T catalog.OrderEvent](s *Service, r *consumer.Router, service, event, typ string, transition func(o *Order, e T, now time.Time) []events.Outgoing) {
	onCheckedEvent(s, r, service, event, typ, nil, transition)
}

// onCheckedEvent is onEvent with a check of the event against the order
// before the transition: an error rolls the unit of work back, and a
// Permanent one dead-letters the event with its reason.
func onCheckedEvent[T catalog.OrderEvent](s *Service, r *consumer.Router, service, event, typ string, check func(o *Order, e T) error, transition func(o *Order, e T, now time.Time) []events.Outgoing) {
	consumer.Route(r, catalog.EventSubject(service, event, "*"), catalog.EventOf[T](typ),
		func(_ context.Context, _ *consumer.Message, e catalog.Event[T]) (consumer.Work, error) {
			return s.update(eventKey(e.Envelope), e.Data.Order(), func(o *Order, now time.Time) ([]events.Outgoing, error) {
				if check != nil {
					if err := check(o, e.Data); err != nil {
						return nil, err
					}
				}
				return transition(o, e.Data, now), nil
			}), nil
		})
}

func eventKey(env events.Envelope) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: env.ID}
}
