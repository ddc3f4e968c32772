package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
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
	// SKUWork is ApplySKU's unit of work for the consumer to carry out,
	// batched with the work of other messages in one transaction.
	SKUWork(key inbox.Key, sku string, fn func(st *Stock) ([]events.Outgoing, error)) consumer.Work
	// ApplyOrder runs fn on the reservation of orderID (nil when the order
	// has none) and the stock of skus plus the SKUs of that reservation,
	// keyed by SKU (zeros for a SKU never stocked). It saves the stock fn
	// leaves and the reservation fn returns (nil: no change to it); a
	// reservation that fails Validate is refused with a Permanent error.
	ApplyOrder(ctx context.Context, key inbox.Key, orderID string, skus []string, fn OrderTransition) (applied bool, err error)
	// OrderWork is ApplyOrder's unit of work for the consumer to carry
	// out, batched with the work of other messages in one transaction.
	OrderWork(key inbox.Key, orderID string, skus []string, fn OrderTransition) consumer.Work
	// Get returns the stock of sku: zeros for a SKU never stocked.
	Get(ctx context.Context, sku string) (Stock, error)
	// Outbox returns the outbox in the store's database.
	Outbox() *outbox.Outbox
}

// OrderTransition is a unit of work on one order's reservation and the
// stock it touches: it gets the reservation as stored (nil when there is
// none) and the locked stock by SKU, may change the stock, and returns
// the reservation to save (nil: no change) and the events to publish.
type OrderTransition func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error)

// Service handles the inventory service's commands and events.
type Service struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	router *consumer.Router
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
	s := &Service{store: cfg.Store, log: cfg.Logger, now: cfg.Now}
	s.router = s.routes()
	return s, nil
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
	if key.EventID != "" && key.Hash == "" {
		// The same hash a cmd.inventory.restock of this body has, so that
		// a key sent both ways with different bodies is a conflict too.
		key.Hash = catalog.CommandHash(cmd)
	}
	var result Stock
	applied, err := s.store.ApplySKU(ctx, key, cmd.SKU, s.restock(ctx, key, cmd, &result))
	if err != nil {
		return Stock{}, fmt.Errorf("inventory: restock %s: %w", cmd.SKU, err)
	}
	if !applied { // a duplicate command: the inbox already saw it
		return s.store.Get(ctx, cmd.SKU)
	}
	return result, nil
}

// restock is the unit of work of a restock; it leaves the stock it
// saves in result.
func (s *Service) restock(ctx context.Context, key inbox.Key, cmd catalog.Restock, result *Stock) func(st *Stock) ([]events.Outgoing, error) {
	return func(st *Stock) ([]events.Outgoing, error) {
		out, err := st.Restock(cmd, key.EventID, s.now())
		*result = *st
		return out, err
	}
}

// restockWork is a restock command's work.
func (s *Service) restockWork(ctx context.Context, key inbox.Key, cmd catalog.Restock) consumer.Work {
	var result Stock
	w := s.store.SKUWork(key, cmd.SKU, s.restock(ctx, key, cmd, &result))
	apply := w.Apply
	w.Apply = func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		out, err := apply(ctx, tx)
		if err != nil {
			return nil, fmt.Errorf("inventory: restock %s: %w", cmd.SKU, err)
		}
		return out, nil
	}
	return w
}

// OnOrderPlaced reserves every line of a placed order or none, once per
// order (see OnPlaced): a placement seen before changes nothing, one after
// the order's confirmation also commits, and one after its cancellation
// reserves nothing.
func (s *Service) OnOrderPlaced(ctx context.Context, key inbox.Key, e catalog.OrderPlaced) consumer.Work {
	lines := Lines(e.Items)
	return s.orderWork(key, e.OrderID, catalog.EventPlaced, "reserve", SKUs(lines), func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		return OnPlaced(res, e.OrderID, lines, stock, s.now())
	})
}

// OnOrderConfirmed sells the stock a confirmed order holds (see
// OnConfirmed). A confirmation that arrives before its order's placement is
// recorded, not retried: the placement then reserves and commits at once.
func (s *Service) OnOrderConfirmed(ctx context.Context, key inbox.Key, e catalog.OrderConfirmed) consumer.Work {
	return s.orderWork(key, e.OrderID, catalog.EventConfirmed, "commit", nil, func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		return OnConfirmed(res, e.OrderID, stock, s.now())
	})
}

// OnOrderCancelled gives back the stock a cancelled order holds, whatever
// the reason (see OnCancelled). A cancellation that arrives before its
// order's placement leaves a tombstone, so that the placement reserves
// nothing.
func (s *Service) OnOrderCancelled(ctx context.Context, key inbox.Key, e catalog.OrderCancelled) consumer.Work {
	return s.orderWork(key, e.OrderID, catalog.EventCancelled, "release", nil, func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		return OnCancelled(res, e.OrderID, stock, s.now())
	})
}

// orderWork is the work of one of the order transitions. It logs, once,
// an input that makes the order anomalous (see Reservation.Anomaly): only
// after the unit of work committed, so a retried or duplicate delivery
// does not repeat it.
func (s *Service) orderWork(key inbox.Key, orderID, input, verb string, skus []string, fn OrderTransition) consumer.Work {
	var (
		anomaly string
		status  ReservationStatus
	)
	w := s.store.OrderWork(key, orderID, skus, func(res *Reservation, stock map[string]*Stock) (*Reservation, []events.Outgoing, error) {
		before := res.Anomaly()
		next, out, err := fn(res, stock)
		anomaly = ""
		if err == nil && next != nil && before == "" {
			anomaly, status = next.Anomaly(), next.Status
		}
		return next, out, err
	})
	apply := w.Apply
	w.Apply = func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		out, err := apply(ctx, tx)
		if err != nil {
			return nil, fmt.Errorf("inventory: %s order %s: %w", verb, orderID, err)
		}
		return out, nil
	}
	w.Committed = func(ctx context.Context) {
		if anomaly != "" {
			s.log.ErrorContext(ctx, "inventory: "+anomaly+"; stock left as it is", "order_id", orderID, "input", input, "status", status)
		}
	}
	return w
}

// Durable consumer name of the inventory service on every stream it reads.
const consumerName = catalog.Inventory

// Consumer returns the configuration of the service's consumer: the
// streams its routes read, and its router.
func (s *Service) Consumer() consumer.Config {
	return catalog.ConsumerOf(catalog.Inventory, s.router, s.log)
}

// Handle handles one message to the end, in a transaction of its own: what
// the consumer does with it, for tests and tools. Errors keep their kind: a
// Permanent error is one the consumer dead-letters.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	return consumer.HandleOne(ctx, s.store.Outbox(), s.router.Handle, m)
}

func (s *Service) routes() *consumer.Router {
	r := consumer.NewRouter(catalog.Inventory)
	consumer.Route(r, catalog.SubjectRestock, catalog.CommandOf[catalog.Restock],
		func(ctx context.Context, _ *consumer.Message, c catalog.Command[catalog.Restock]) (consumer.Work, error) {
			return s.restockWork(ctx, c.InboxKey(consumerName), c.Body), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventPlaced, "*"), catalog.EventOf[catalog.OrderPlaced](catalog.TypeOrderPlaced),
		func(ctx context.Context, _ *consumer.Message, e catalog.Event[catalog.OrderPlaced]) (consumer.Work, error) {
			return s.OnOrderPlaced(ctx, eventKey(e.Envelope), e.Data), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, "*"), catalog.EventOf[catalog.OrderConfirmed](catalog.TypeOrderConfirmed),
		func(ctx context.Context, _ *consumer.Message, e catalog.Event[catalog.OrderConfirmed]) (consumer.Work, error) {
			return s.OnOrderConfirmed(ctx, eventKey(e.Envelope), e.Data), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventCancelled, "*"), catalog.EventOf[catalog.OrderCancelled](catalog.TypeOrderCancelled),
		func(ctx context.Context, _ *consumer.Message, e catalog.Event[catalog.OrderCancelled]) (consumer.Work, error) {
			return s.OnOrderCancelled(ctx, eventKey(e.Envelope), e.Data), nil
		})
	return r
}

func eventKey(env events.Envelope) inbox.Key {
	return inbox.Key{Consumer: consumerName, EventID: env.ID}
}
