package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/aggregate"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
)

// Store persists payments, one per order, keyed by the order id.
// paymentdb implements it on SQLite and PostgreSQL.
type Store interface {
	// Apply, Work and Outbox change the payment of an order (see
	// aggregate.Changer).
	aggregate.Changer[Payment]
	// Get returns the payment of an order or an error wrapping ErrNotFound.
	Get(ctx context.Context, orderID string) (*Payment, error)
}

// Transition is a unit of work on one order's payment: it gets the
// payment as stored (nil when there is none) and returns the payment to
// save (nil: no change) and the events the change publishes.
type Transition = aggregate.Transition[Payment]

// Config configures a Service.
type Config struct {
	Store    Store
	Provider Provider
	Logger   *slog.Logger     // default: discard
	Now      func() time.Time // default: time.Now
	// KeepAlive is how often a handler waiting on the provider tells the
	// server it is still working on its message, so that a slow call is
	// not redelivered to another replica meanwhile. Default 5s; keep it
	// well under the consumer's ack wait.
	KeepAlive time.Duration
}

// Service handles the payments service's events.
type Service struct {
	store     Store
	provider  Provider
	log       *slog.Logger
	now       func() time.Time
	keepAlive time.Duration
	router    *consumer.Router
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
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 5 * time.Second
	}
	if cfg.KeepAlive < 0 {
		return nil, fmt.Errorf("payments: keep-alive interval %s is negative", cfg.KeepAlive)
	}
	s := &Service{store: cfg.Store, provider: cfg.Provider, log: cfg.Logger, now: cfg.Now, keepAlive: cfg.KeepAlive}
	s.router = s.routes()
	return s, nil
}

// Get returns the payment of an order, or an error wrapping ErrNotFound.
func (s *Service) Get(ctx context.Context, orderID string) (*Payment, error) {
	return s.store.Get(ctx, orderID)
}

// Durable consumer name of the payments service on every stream it reads.
const consumerName = catalog.Payments

// Consumer returns the configuration of the service's consumer: the
// streams its routes read, and its router. A provider outage is returned as
// events.Unavailable, so the message backs off and comes back for as long
// as the outage lasts, never to the dead-letter queue; any other provider
// failure is events.Transient.
func (s *Service) Consumer() consumer.Config {
	return catalog.ConsumerOf(catalog.Payments, s.router, s.log)
}

// Handle handles one message to the end, in a transaction of its own: what
// the consumer does with it, for tests and tools. Errors keep their kind: a
// Permanent error is one the consumer dead-letters.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	return consumer.HandleOne(ctx, s.store.Outbox(), s.router.Handle, m)
}

func (s *Service) routes() *consumer.Router {
	r := consumer.NewRouter(catalog.Payments)
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventPlaced, "*"), catalog.EventOf[catalog.OrderPlaced](catalog.TypeOrderPlaced),
		func(ctx context.Context, m *consumer.Message, e catalog.Event[catalog.OrderPlaced]) (consumer.Work, error) {
			return s.record(ctx, m, e.Envelope, e.Data.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
				return nil, p.OnOrderPlaced(e.Data, now)
			}), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Inventory, catalog.EventReserved, "*"), catalog.EventOf[catalog.StockReserved](catalog.TypeStockReserved),
		func(ctx context.Context, m *consumer.Message, e catalog.Event[catalog.StockReserved]) (consumer.Work, error) {
			return s.record(ctx, m, e.Envelope, e.Data.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
				return nil, p.OnStockReserved(e.Data, now)
			}), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, "*"), catalog.EventOf[catalog.OrderConfirmed](catalog.TypeOrderConfirmed),
		func(ctx context.Context, m *consumer.Message, e catalog.Event[catalog.OrderConfirmed]) (consumer.Work, error) {
			return s.record(ctx, m, e.Envelope, e.Data.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
				return nil, p.OnOrderConfirmed(e.Data, now)
			}), nil
		})
	consumer.Route(r, catalog.EventSubject(catalog.Orders, catalog.EventCancelled, "*"), catalog.EventOf[catalog.OrderCancelled](catalog.TypeOrderCancelled),
		func(ctx context.Context, m *consumer.Message, e catalog.Event[catalog.OrderCancelled]) (consumer.Work, error) {
			return s.record(ctx, m, e.Envelope, e.Data.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
				return p.OnOrderCancelled(e.Data, now)
			}), nil
		})
	return r
}

// record is step 1: claim the event and update the payment in one
// transaction, which may decide a provider call (CAPTURE_PENDING or
// CANCEL_PENDING). Its After then settles the payment outside that
// transaction. A duplicate settles too: the first delivery may have
// committed step 1 and failed (or crashed) before the provider's answer
// was recorded, and this redelivery is what finishes it.
func (s *Service) record(ctx context.Context, m *consumer.Message, env events.Envelope, orderID string,
	transition func(p *Payment, now time.Time) ([]events.Outgoing, error)) consumer.Work {
	var saved *Payment
	w := s.store.Work(inbox.Key{Consumer: consumerName, EventID: env.ID}, orderID, func(p *Payment) (*Payment, []events.Outgoing, error) {
		saved = nil
		now := s.now()
		if p == nil {
			p = NewPayment(orderID, now)
		}
		out, err := transition(p, now)
		if err != nil {
			return nil, nil, err
		}
		copied := *p
		saved = &copied
		return p, out, nil
	})
	w.After = func(ctx context.Context, applied bool) (consumer.Work, error) {
		if !applied {
			// A redelivery: the payment may have moved on since; read it.
			return s.settle(ctx, m, orderID, nil, 0)
		}
		if !saved.Status.Pending() {
			return consumer.Work{}, nil // waiting for more events, or nothing owed to the provider
		}
		return s.settle(ctx, m, orderID, saved, 0)
	}
	return w
}

// maxSettleSteps bounds the settle steps of one message. Each step either
// records a final status or finds the payment moved on by a concurrent
// cancellation (CAPTURE_PENDING → CANCEL_PENDING), which happens at most
// once; the last step only observes the final status.
const maxSettleSteps = 4

// settle takes one step towards a payment that owes no provider call:
// while it is CAPTURE_PENDING, it calls Capture; while it is
// CANCEL_PENDING, Cancel. The call is made outside any transaction (step
// 2); the work it returns records the answer, with the events it causes,
// in a transaction (step 3: the consumer applies it together with the
// answers of other messages), and that work's After takes the next step.
// A payment in any other status is left alone.
//
// Running it twice, or on two replicas at once, is safe: both calls carry
// the order id as idempotency key, so a second call returns the first
// answer, and recording an answer the payment has moved past changes
// nothing. A cancellation committed while a capture is in flight is
// safe as well: the next step calls Cancel, which refunds the charge if
// the capture went through and otherwise voids the key, so the capture,
// if it is still to reach the provider, is declined.
//
// p is the payment as the caller just committed it, or nil to read it.
func (s *Service) settle(ctx context.Context, m *consumer.Message, orderID string, p *Payment, step int) (consumer.Work, error) {
	if step == maxSettleSteps {
		return consumer.Work{}, events.Transient(fmt.Errorf("payments: order %s still owes a provider call after %d steps", orderID, maxSettleSteps))
	}
	if p == nil {
		var err error
		p, err = s.store.Get(ctx, orderID)
		if errors.Is(err, ErrNotFound) {
			return consumer.Work{}, nil // nothing was ever recorded, so nothing is owed
		}
		if err != nil {
			return consumer.Work{}, err
		}
	}
	var (
		answer func(p *Payment) ([]events.Outgoing, error)
		report func(ctx context.Context, recorded *Payment)
	)
	switch p.Status {
	case CapturePending:
		stop := s.keepAliveWhile(m)
		res, err := s.provider.Capture(ctx, p.CaptureRequest())
		stop()
		if err != nil {
			return consumer.Work{}, providerFailure("capture", p.OrderID, err)
		}
		answer = func(p *Payment) ([]events.Outgoing, error) { return p.OnCaptureResult(res, s.now()) }
		report = func(ctx context.Context, recorded *Payment) {
			if recorded.Status == Declined {
				s.log.InfoContext(ctx, "payments: declined", "order_id", orderID, "reason", recorded.DeclineReason)
				return
			}
			s.log.InfoContext(ctx, "payments: captured", "order_id", orderID, "payment_id", recorded.PaymentID,
				"amount", recorded.Amount.Amount, "currency", recorded.Amount.Currency)
		}
	case CancelPending:
		stop := s.keepAliveWhile(m)
		res, err := s.provider.Cancel(ctx, p.CancelRequest())
		stop()
		if err != nil {
			return consumer.Work{}, providerFailure("cancel", p.OrderID, err)
		}
		answer = func(p *Payment) ([]events.Outgoing, error) { return p.OnCancelResult(res, s.now()) }
		report = func(ctx context.Context, recorded *Payment) {
			if recorded.Status == Refunded {
				s.log.InfoContext(ctx, "payments: refunded", "order_id", orderID, "payment_id", recorded.PaymentID,
					"amount", recorded.RefundedAmount, "currency", recorded.Amount.Currency)
				return
			}
			s.log.InfoContext(ctx, "payments: voided", "order_id", orderID)
		}
	default:
		return consumer.Work{}, nil
	}
	w, recorded := s.recordAnswer(orderID, answer)
	w.After = func(ctx context.Context, _ bool) (consumer.Work, error) {
		if r := *recorded; r != nil {
			report(ctx, r)
			if !r.Status.Pending() {
				return consumer.Work{}, nil // settled by this answer
			}
		}
		// A stale answer (the payment had moved on) or one that left a
		// call owing: read the payment and take the next step.
		return s.settle(ctx, m, orderID, nil, step+1)
	}
	return w, nil
}

// recordAnswer is step 3: apply a provider's answer to the payment and
// queue the events it causes, in one transaction. It takes no inbox key:
// the message's claim was taken in step 1, and the answer is idempotent by
// itself (a payment that moved past it ignores it). Once the work has
// committed, *recorded is the payment when the answer changed it, nil when
// it was stale.
func (s *Service) recordAnswer(orderID string, apply func(p *Payment) ([]events.Outgoing, error)) (consumer.Work, **Payment) {
	recorded := new(*Payment)
	w := s.store.Work(inbox.Key{}, orderID, func(p *Payment) (*Payment, []events.Outgoing, error) {
		*recorded = nil
		if p == nil {
			return nil, nil, fmt.Errorf("payments: record provider answer for order %s: %w", orderID, ErrNotFound)
		}
		out, err := apply(p)
		if err != nil || len(out) == 0 {
			return nil, nil, err
		}
		copied := *p
		*recorded = &copied
		return p, out, nil
	})
	return w, recorded
}

// keepAliveWhile keeps m in progress until the returned function is
// called. Without a message (a call not driven by one) it does nothing.
func (s *Service) keepAliveWhile(m *consumer.Message) (stop func()) {
	if m == nil {
		return func() {}
	}
	return m.KeepAlive(s.keepAlive)
}

// ErrProviderUnavailable is what a Provider wraps in the error of a call
// it did not make because the provider is known to be down: its circuit
// breaker is open, or its bulkhead is full. The service also takes a
// timeout, a transport failure and an error answer of the provider itself
// (an error in the chain with a Permanent() bool method reporting false,
// as for a 5xx) for an outage.
var ErrProviderUnavailable = errors.New("payment provider unavailable")

// providerFailure classifies an error of a provider call. An outage is
// events.Unavailable: the message backs off and is retried for as long as
// the outage lasts, never dead-lettered, since nothing is wrong with it.
// Anything else (the provider refusing the request as malformed, an
// answer the client could not understand) is events.Transient: retried a
// bounded number of times, then dead-lettered for a human to look at.
// Neither is Permanent whatever the provider said, because the outcome of
// the call is unknown and the payment must not be left pending for good
// by a single failure.
func providerFailure(op, orderID string, err error) error {
	err = fmt.Errorf("payments: %s order %s: %w", op, orderID, err)
	if providerUnavailable(err) {
		return events.Unavailable(err)
	}
	return events.Transient(err)
}

func providerUnavailable(err error) bool {
	if errors.Is(err, ErrProviderUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// Connection refused or reset, DNS failure, I/O timeout: the provider
	// cannot be reached. (*url.Error, what net/http returns, is one.)
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// The provider answered with a failure of its own (5xx), as opposed to
	// refusing the request (4xx, Permanent() true).
	var answered interface{ Permanent() bool }
	return errors.As(err, &answered) && !answered.Permanent()
}
