package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	return &Service{store: cfg.Store, provider: cfg.Provider, log: cfg.Logger, now: cfg.Now, keepAlive: cfg.KeepAlive}, nil
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
		sub(catalog.StreamOrders,
			catalog.EventSubject(catalog.Orders, catalog.EventPlaced, "*"),
			catalog.EventSubject(catalog.Orders, catalog.EventCancelled, "*")),
		sub(catalog.StreamInventory, catalog.EventSubject(catalog.Inventory, catalog.EventReserved, "*")),
	}
}

// Handle dispatches one message by subject. Errors keep their kind: a
// Permanent error sends the message to the dead-letter queue; a provider
// outage is returned as events.Unavailable, so the message backs off and
// comes back for as long as the outage lasts, never to the dead-letter
// queue; any other provider failure is events.Transient.
func (s *Service) Handle(ctx context.Context, m *consumer.Message) error {
	switch {
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventPlaced+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderPlaced](m.Data, catalog.TypeOrderPlaced)
		if err != nil {
			return err
		}
		return s.record(ctx, m, env, e.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
			return nil, p.OnOrderPlaced(e, now)
		})
	case strings.HasPrefix(m.Subject, catalog.Inventory+"."+catalog.EventReserved+"."):
		env, e, err := catalog.DecodeEvent[catalog.StockReserved](m.Data, catalog.TypeStockReserved)
		if err != nil {
			return err
		}
		return s.record(ctx, m, env, e.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
			return nil, p.OnStockReserved(e, now)
		})
	case strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventCancelled+"."):
		env, e, err := catalog.DecodeEvent[catalog.OrderCancelled](m.Data, catalog.TypeOrderCancelled)
		if err != nil {
			return err
		}
		return s.record(ctx, m, env, e.OrderID, func(p *Payment, now time.Time) ([]events.Outgoing, error) {
			return p.OnOrderCancelled(e, now, events.TraceParentFrom(ctx))
		})
	}
	return events.Permanent(fmt.Errorf("payments: %q: %w", m.Subject, catalog.ErrUnknownSubject))
}

// record is step 1: claim the event and update the payment in one
// transaction, which may decide a provider call (CAPTURE_PENDING or
// CANCEL_PENDING). It then settles the payment outside that transaction.
// A duplicate settles too: the first delivery may have committed step 1
// and failed (or crashed) before the provider's answer was recorded, and
// this redelivery is what finishes it.
func (s *Service) record(ctx context.Context, m *consumer.Message, env events.Envelope, orderID string,
	transition func(p *Payment, now time.Time) ([]events.Outgoing, error)) error {
	var pending bool
	applied, err := s.store.Apply(ctx, inbox.Key{Consumer: consumerName, EventID: env.ID}, orderID,
		func(p *Payment) (*Payment, []events.Outgoing, error) {
			now := s.now()
			if p == nil {
				p = NewPayment(orderID, now)
			}
			out, err := transition(p, now)
			if err != nil {
				return nil, nil, err
			}
			pending = p.Status.Pending()
			return p, out, nil
		})
	if err != nil {
		return err
	}
	if applied && !pending {
		return nil // waiting for more events, or nothing owed to the provider
	}
	return s.settle(ctx, m, orderID)
}

// maxSettleSteps bounds the settle loop. Each step either records a final
// status or finds the payment moved on by a concurrent cancellation
// (CAPTURE_PENDING → CANCEL_PENDING), which happens at most once; the
// last step only observes the final status.
const maxSettleSteps = 4

// settle makes the provider calls a payment owes, until it owes none:
// while it is CAPTURE_PENDING, Capture; while it is CANCEL_PENDING,
// Cancel. Each call is made outside any transaction (step 2), and its
// answer recorded, with the events it causes, in a transaction of its own
// (step 3). A payment in any other status is left alone.
//
// Running it twice, or on two replicas at once, is safe: both calls carry
// the order id as idempotency key, so a second call returns the first
// answer, and recording an answer the payment has moved past changes
// nothing. A cancellation committed while a capture is in flight is
// safe as well: the next step calls Cancel, which refunds the charge if
// the capture went through and otherwise voids the key, so the capture,
// if it is still to reach the provider, is declined.
func (s *Service) settle(ctx context.Context, m *consumer.Message, orderID string) error {
	for range maxSettleSteps {
		p, err := s.store.Get(ctx, orderID)
		if errors.Is(err, ErrNotFound) {
			return nil // nothing was ever recorded, so nothing is owed
		}
		if err != nil {
			return err
		}
		switch p.Status {
		case CapturePending:
			err = s.capture(ctx, m, p)
		case CancelPending:
			err = s.cancel(ctx, m, p)
		default:
			return nil
		}
		if err != nil {
			return err
		}
	}
	return events.Transient(fmt.Errorf("payments: order %s still owes a provider call after %d steps", orderID, maxSettleSteps))
}

// capture calls Capture for a CAPTURE_PENDING payment and records the
// answer.
func (s *Service) capture(ctx context.Context, m *consumer.Message, p *Payment) error {
	stop := s.keepAliveWhile(m)
	res, err := s.provider.Capture(ctx, p.CaptureRequest())
	stop()
	if err != nil {
		return providerFailure("capture", p.OrderID, err)
	}
	recorded, err := s.recordAnswer(ctx, p.OrderID, func(p *Payment) ([]events.Outgoing, error) {
		return p.OnCaptureResult(res, s.now(), events.TraceParentFrom(ctx))
	})
	switch {
	case err != nil:
		return err
	case recorded == nil:
	case recorded.Status == Declined:
		s.log.Info("payments: declined", "order_id", p.OrderID, "reason", recorded.DeclineReason)
	default:
		s.log.Info("payments: captured", "order_id", p.OrderID, "payment_id", recorded.PaymentID,
			"amount", recorded.Amount.Amount, "currency", recorded.Amount.Currency)
	}
	return nil
}

// cancel calls Cancel for a CANCEL_PENDING payment and records the
// answer.
func (s *Service) cancel(ctx context.Context, m *consumer.Message, p *Payment) error {
	stop := s.keepAliveWhile(m)
	res, err := s.provider.Cancel(ctx, p.CancelRequest())
	stop()
	if err != nil {
		return providerFailure("cancel", p.OrderID, err)
	}
	recorded, err := s.recordAnswer(ctx, p.OrderID, func(p *Payment) ([]events.Outgoing, error) {
		return p.OnCancelResult(res, s.now(), events.TraceParentFrom(ctx))
	})
	switch {
	case err != nil:
		return err
	case recorded == nil:
	case recorded.Status == Refunded:
		s.log.Info("payments: refunded", "order_id", p.OrderID, "payment_id", recorded.PaymentID,
			"amount", recorded.RefundedAmount, "currency", recorded.Amount.Currency)
	default:
		s.log.Info("payments: voided", "order_id", p.OrderID)
	}
	return nil
}

// recordAnswer is step 3: apply a provider's answer to the payment and
// queue the events it causes, in one transaction. It takes no inbox key:
// the message's claim was taken in step 1, and the answer is idempotent by
// itself (a payment that moved past it ignores it). It returns the
// payment when the answer changed it, nil when it was stale.
func (s *Service) recordAnswer(ctx context.Context, orderID string, apply func(p *Payment) ([]events.Outgoing, error)) (*Payment, error) {
	var changed *Payment
	_, err := s.store.Apply(ctx, inbox.Key{}, orderID, func(p *Payment) (*Payment, []events.Outgoing, error) {
		if p == nil {
			return nil, nil, fmt.Errorf("payments: record provider answer for order %s: %w", orderID, ErrNotFound)
		}
		out, err := apply(p)
		if err != nil || len(out) == 0 {
			return nil, nil, err
		}
		changed = p
		return p, out, nil
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
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
