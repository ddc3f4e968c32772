package inventory

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

// Store persists stock and reservations. stockdb implements it on SQLite
// and PostgreSQL.
//
// Both Apply methods run one unit of work in one transaction: they claim
// key in the inbox (a duplicate returns applied=false, does not call fn and
// changes nothing), load and lock what fn needs, call fn, save what fn
// changed and queue the events fn returns in the outbox. Any error rolls
// all of it back, the inbox claim included, and is returned with its kind.
// Stock rows are locked in SKU order, so concurrent units of work never
// deadlock and never both spend the same unit.
type Store interface {
	// ApplySKU runs fn on the stock of one SKU (zeros when the SKU was
	// never stocked) and saves the stock fn leaves.
	ApplySKU(ctx context.Context, key inbox.Key, sku string, fn func(st *Stock) ([]events.Outgoing, error)) (applied bool, err error)
	// ApplyOrder runs fn on the reservation of orderID (nil when the order
	// has none) and the stock of skus plus the SKUs of that reservation,
	// keyed by SKU (zeros for a SKU never stocked). It saves the stock fn
	// leaves and the reservation fn returns (nil: no change to it); a
	// reservation that fails Validate is refused with a Permanent error.
	ApplyOrder(ctx context.Context, key inbox.Key, orderID string, skus []string,
		fn func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error)) (applied bool, err error)
	// Get returns the stock of sku: zeros for a SKU never stocked.
	Get(ctx context.Context, sku string) (Stock, error)
}

// Service handles the inventory service's commands and events.
type Service struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
}

// Config configures a Service.
type Config struct {
	Store  Store
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default: time.Now
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("inventory: config has no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{store: cfg.Store, log: cfg.Logger, now: cfg.Now}, nil
}

// Get returns the stock of sku: zeros for a SKU never restocked. An invalid
// SKU is a Permanent error.
func (s *Service) Get(ctx context.Context, sku string) (Stock, error) {
	if err := ValidateSKU(sku); err != nil {
		return Stock{}, err
	}
	return s.store.Get(ctx, sku)
}

// RestockKey is the inbox key of a restock command with the given id. It is
// the key consumer.Message.CommandKey gives a cmd.inventory.restock message
// carrying that id, so a restock sent over HTTP and over NATS with the same
// id has one effect.
func RestockKey(commandID string) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: catalog.SubjectRestock + ":" + commandID}
}

// Restock adds cmd's units to the available stock of its SKU and publishes
// inventory.restocked, once per key: a duplicate key changes nothing and
// returns the current stock. An invalid command is a Permanent error.
func (s *Service) Restock(ctx context.Context, key inbox.Key, cmd catalog.Restock) (Stock, error) {
	if err := cmd.Validate(); err != nil {
		return Stock{}, events.Permanent(fmt.Errorf("inventory: invalid restock: %w", err))
	}
	var result Stock
	applied, err := s.store.ApplySKU(ctx, key, cmd.SKU, func(st *Stock) ([]events.Outgoing, error) {
		out, err := st.Restock(cmd, key.EventID, s.now(), events.TraceParentFrom(ctx))
		result = *st
		return out, err
	})
	if err != nil {
		return Stock{}, fmt.Errorf("inventory: restock %s: %w", cmd.SKU, err)
	}
	if !applied { // a duplicate command: the inbox already saw it
		return s.store.Get(ctx, cmd.SKU)
	}
	return result, nil
}

// OnOrderPlaced reserves every line of a placed order or none, once per
// order (see OnPlaced): a placement seen before changes nothing, one after
// the order's confirmation also commits, and one after its cancellation
// reserves nothing.
func (s *Service) OnOrderPlaced(ctx context.Context, key inbox.Key, e catalog.OrderPlaced) error {
	lines := Lines(e.Items)
	err := s.applyOrder(ctx, key, e.OrderID, catalog.EventPlaced, SKUs(lines), func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		return OnPlaced(res, e.OrderID, lines, stock, s.now(), events.TraceParentFrom(ctx))
	})
	if err != nil {
		return fmt.Errorf("inventory: reserve order %s: %w", e.OrderID, err)
	}
	return nil
}

// OnOrderConfirmed sells the stock a confirmed order holds (see
// OnConfirmed). A confirmation that arrives before its order's placement is
// recorded, not retried: the placement then reserves and commits at once.
func (s *Service) OnOrderConfirmed(ctx context.Context, key inbox.Key, e catalog.OrderConfirmed) error {
	err := s.applyOrder(ctx, key, e.OrderID, catalog.EventConfirmed, nil, func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		return OnConfirmed(res, e.OrderID, stock, s.now(), events.TraceParentFrom(ctx))
	})
	if err != nil {
		return fmt.Errorf("inventory: commit order %s: %w", e.OrderID, err)
	}
	return nil
}

// OnOrderCancelled gives back the stock a cancelled order holds, whatever
// the reason (see OnCancelled). A cancellation that arrives before its
// order's placement leaves a tombstone, so that the placement reserves
// nothing.
func (s *Service) OnOrderCancelled(ctx context.Context, key inbox.Key, e catalog.OrderCancelled) error {
	err := s.applyOrder(ctx, key, e.OrderID, catalog.EventCancelled, nil, func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		return OnCancelled(res, e.OrderID, stock, s.now(), events.TraceParentFrom(ctx))
	})
	if err != nil {
		return fmt.Errorf("inventory: release order %s (%s): %w", e.OrderID, e.Reason, err)
	}
	return nil
}

// applyOrder runs one of the order transitions in the store and logs, once,
// an input that makes the order anomalous (see Reservation.Anomaly). The
// log line is written only after the unit of work committed, so a retried
// or duplicate delivery does not repeat it.
func (s *Service) applyOrder(ctx context.Context, key inbox.Key, orderID, input string, skus []string,
	fn func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error)) error {
	var anomaly string
	var status ReservationStatus
	_, err := s.store.ApplyOrder(ctx, key, orderID, skus, func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		before := res.Anomaly()
		next, out, err := fn(res, stock)
		anomaly = ""
		if err == nil && next != nil && before == "" {
			anomaly, status = next.Anomaly(), next.Status
		}
		return next, out, err
	})
	if err == nil && anomaly != "" {
		s.log.Error("inventory: "+anomaly+"; stock left as it is", "order_id", orderID, "input", input, "status", status)
	}
	return err
}

// Durable consumer name of the inventory service on every stream it reads.
const consumerName = catalog.Inventory

// Subscriptions returns the service's consumers for a worker.
func (s *Service) Subscriptions() []worker.Subscription {
	sub := func(stream string, filters ...string) worker.Subscription {
		return worker.Subscription{
			Config: consumer.Config{
				Stream:         stream,
				Durable:        consumerName,
				FilterSubjects: filters,
				DLQSubject:     catalog.DLQSubject(catalog.Inventory),
				Logger:         s.log,
			},
			Handler: s.Handle,
		}
	}
	return []worker.Subscription{
		sub(catalog.StreamCommands, "cmd.inventory.>"),
		sub(catalog.StreamOrders,
			catalog.EventSubject(catalog.Orders, catalog.EventPlaced, "*"),
			catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, "*"),
			catalog.EventSubject(catalog.Orders, catalog.EventCancelled, "*")),
	}
}

// Handle dispatches one message by subject. Errors keep their kind: a
// Permanent error sends the message to the dead-letter queue, any other is
// retried.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	switch {
	case m.Subject == catalog.SubjectRestock:
		cmd, envID, err := catalog.DecodeCommand[catalog.Restock](m.Data)
		if err != nil {
			return err
		}
		_, err = s.Restock(ctx, commandKey(m, cmd.CommandID, envID), cmd)
		return err
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventPlaced+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderPlaced](m.Data, catalog.TypeOrderPlaced)
		if err != nil {
			return err
		}
		return s.OnOrderPlaced(ctx, eventKey(env), e)
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventConfirmed+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderConfirmed](m.Data, catalog.TypeOrderConfirmed)
		if err != nil {
			return err
		}
		return s.OnOrderConfirmed(ctx, eventKey(env), e)
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventCancelled+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderCancelled](m.Data, catalog.TypeOrderCancelled)
		if err != nil {
			return err
		}
		return s.OnOrderCancelled(ctx, eventKey(env), e)
	}
	return events.Permanent(fmt.Errorf("inventory: %q: %w", m.Subject, catalog.ErrUnknownSubject))
}

func eventKey(env events.Envelope) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: env.ID}
}

// commandKey is the inbox key of a command (see consumer.Message.CommandKey).
func commandKey(m *consumer.Message, commandID, envelopeID string) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: m.CommandKey(commandID, envelopeID)}
}
