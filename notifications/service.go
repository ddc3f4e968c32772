package notifications

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
)

// Store persists notifications. notificationdb implements it on SQLite and
// PostgreSQL.
type Store interface {
	// Apply, Work and Outbox change one notification (see
	// aggregate.Changer).
	aggregate.Changer[Notification]
	// List returns the notifications of an order, oldest first; none is
	// not an error.
	List(ctx context.Context, orderID string) ([]*Notification, error)
}

// Transition is a unit of work on one notification: it gets the
// notification as stored (nil when there is none) and returns the
// notification to save (nil: no change) and the events to publish.
type Transition = aggregate.Transition[Notification]

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
	router *consumer.Router
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
	s := &Service{store: cfg.Store, sender: cfg.Sender, log: cfg.Logger, now: cfg.Now}
	s.router = s.routes()
	return s, nil
}

// List returns the notifications of an order, oldest first.
func (s *Service) List(ctx context.Context, orderID string) ([]*Notification, error) {
	return s.store.List(ctx, orderID)
}

// Durable consumer name of the notifications service.
const consumerName = catalog.Notifications

// Consumer returns the configuration of the service's consumer: the
// stream its routes read, and its router. A sender failure is returned as
// events.Transient, so the message comes back after a back-off and the
// delivery is tried again.
func (s *Service) Consumer() consumer.Config {
	return catalog.ConsumerOf(catalog.Notifications, s.router, s.log)
}

// Handle handles one message to the end, in a transaction of its own: what
// the consumer does with it, for tests and tools. Errors keep their kind: a
// Permanent error is one the consumer dead-letters.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	return consumer.HandleOne(ctx, s.store.Outbox(), s.router.Handle, m)
}

func (s *Service) routes() *consumer.Router {
	r := consumer.NewRouter(catalog.Notifications)
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, "*"), catalog.EventOf[catalog.OrderConfirmed](catalog.TypeOrderConfirmed),
		func(_ context.Context, _ *consumer.Message, e catalog.Event[catalog.OrderConfirmed]) (consumer.Work, error) {
			return s.record(e.Envelope, ForConfirmed(e.Data, s.now())), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventCancelled, "*"), catalog.EventOf[catalog.OrderCancelled](catalog.TypeOrderCancelled),
		func(_ context.Context, _ *consumer.Message, e catalog.Event[catalog.OrderCancelled]) (consumer.Work, error) {
			return s.record(e.Envelope, ForCancelled(e.Data, s.now())), nil
		})
	return r
}

// record is step 1: claim the event and record the notification as
// PENDING in one transaction; a notification already recorded for the
// same order and status is kept as it is. Its After then delivers outside
// that transaction. A duplicate delivers too: the first delivery of the
// event may have committed step 1 and failed (or crashed) before the
// notification was sent, and this redelivery is what finishes it.
func (s *Service) record(env events.Envelope, n *Notification) consumer.Work {
	var inserted bool
	w := s.store.Work(inbox.Key{Consumer: consumerName, EventID: env.ID}, n.ID,
		func(existing *Notification) (*Notification, []events.Outgoing, error) {
			inserted = existing == nil
			if existing != nil {
				return nil, nil, nil
			}
			return n, nil, nil
		})
	// An order ends once, confirmed or cancelled: news of the other end
	// for an order whose customer was told one is forged (or a bug), and
	// telling the customer both would be worse than telling neither. It
	// is refused (Permanent: dead-lettered with the reason) and changes
	// nothing.
	other := catalog.StatusCancelled
	if n.Status == catalog.StatusCancelled {
		other = catalog.StatusConfirmed
	}
	guard := s.store.Work(inbox.Key{}, NotificationID(n.OrderID, other), func(o *Notification) (*Notification, []events.Outgoing, error) {
		if o != nil {
			return nil, nil, events.Permanent(fmt.Errorf("notifications: order %s is %s already, its customer told so; news that it is %s is not believed", n.OrderID, other, n.Status))
		}
		return nil, nil, nil
	})
	record := w.Apply
	w.Apply = func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		if _, err := guard.Apply(ctx, tx); err != nil {
			return nil, err
		}
		return record(ctx, tx)
	}
	w.After = func(ctx context.Context, applied bool) (consumer.Work, error) {
		if applied && inserted {
			// Just recorded, so pending: no need to read it back.
			return s.deliver(ctx, n.OrderID, []*Notification{n})
		}
		return s.deliver(ctx, n.OrderID, nil)
	}
	return w
}

// deliver sends the order's pending notifications (step 2, the sender
// call, outside any transaction) and returns the work of step 3: marking
// them SENT and queueing notifications.sent, in a transaction the consumer
// shares with other messages' follow-ups. Running it twice, or on two
// replicas at once, publishes once: step 3 finds the notification already
// sent. The sender may be called twice in that race, with the same
// idempotency key. When a send fails, the ones sent before it are still
// marked, and the message is retried for the rest.
//
// list is the order's notifications when the caller knows them, or nil to
// read them.
func (s *Service) deliver(ctx context.Context, orderID string, list []*Notification) (consumer.Work, error) {
	if list == nil {
		var err error
		if list, err = s.store.List(ctx, orderID); err != nil {
			return consumer.Work{}, err
		}
	}
	var (
		marks   []consumer.Work
		sendErr error
	)
	for _, n := range list {
		if n.State != Pending {
			continue
		}
		res, err := s.sender.Send(ctx, *n)
		if err != nil {
			// Transient whatever the sender said: the message is
			// redelivered and this runs again for the same notification id.
			sendErr = events.Transient(fmt.Errorf("notifications: send %s for order %s: %w", n.ID, orderID, err))
			break
		}
		// No inbox key: step 3 is idempotent by itself (MarkSent ignores
		// a notification already sent) and the event's claim was taken
		// in step 1.
		marks = append(marks, s.store.Work(inbox.Key{}, n.ID, func(cur *Notification) (*Notification, []events.Outgoing, error) {
			if cur == nil {
				return nil, nil, fmt.Errorf("notifications: mark %s sent: %w", n.ID, ErrNotFound)
			}
			out, err := cur.MarkSent(res, s.now())
			if err != nil || len(out) == 0 {
				return nil, nil, err
			}
			return cur, out, nil
		}))
	}
	if len(marks) == 0 {
		return consumer.Work{}, sendErr
	}
	w := consumer.Work{Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		var out []events.Outgoing
		for _, m := range marks {
			o, err := m.Apply(ctx, tx)
			if err != nil {
				return nil, err
			}
			out = append(out, o...)
		}
		return out, nil
	}}
	if sendErr != nil {
		w.After = func(context.Context, bool) (consumer.Work, error) { return consumer.Work{}, sendErr }
	}
	return w, nil
}
