package payments_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/paymentdb"
	"github.com/choreo-dev/choreo/payments/provider"
)

// harness is a payments service on a fresh database of one engine, with
// the in-memory provider behind an optional fault injector.
type harness struct {
	db       *sqldb.DB
	store    *paymentdb.Store
	provider *provider.AlwaysApprove
	faults   *faultyProvider
	svc      *payments.Service
}

func newHarness(t testing.TB, b sqltest.Backend) *harness {
	t.Helper()
	return newHarnessOn(t, b.Open(t))
}

func newHarnessOn(t testing.TB, db *sqldb.DB) *harness {
	t.Helper()
	if err := paymentdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	h := &harness{db: db, store: paymentdb.New(db), provider: provider.NewAlwaysApprove()}
	h.faults = &faultyProvider{next: h.provider}
	svc, err := payments.New(payments.Config{Store: h.store, Provider: h.faults, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatalf("payments.New: %v", err)
	}
	h.svc = svc
	return h
}

var errProviderDown = errors.New("provider unavailable")

// faultyProvider stands in for an unreliable external provider: it fails
// the next failBefore calls without reaching the provider, and the next
// failAfter calls after the provider has charged (the response is lost, as
// on a timeout).
type faultyProvider struct {
	next payments.Provider

	mu         sync.Mutex
	failBefore int
	failAfter  int
	calls      int
}

func (f *faultyProvider) Capture(ctx context.Context, req payments.CaptureRequest) (payments.CaptureResult, error) {
	f.mu.Lock()
	f.calls++
	before := f.failBefore > 0
	if before {
		f.failBefore--
	}
	after := !before && f.failAfter > 0
	if after {
		f.failAfter--
	}
	f.mu.Unlock()
	if before {
		return payments.CaptureResult{}, errProviderDown
	}
	res, err := f.next.Capture(ctx, req)
	if err == nil && after {
		return payments.CaptureResult{}, errProviderDown
	}
	return res, err
}

func (f *faultyProvider) failNext(before, after int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failBefore, f.failAfter = before, after
}

func (f *faultyProvider) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// message encodes an outgoing event the way the relay publishes it.
func message(t testing.TB, o events.Outgoing) *consumer.Message {
	t.Helper()
	env, err := o.Envelope()
	if err != nil {
		t.Fatalf("envelope: %v", err)
	}
	b, err := events.Encode(env)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return &consumer.Message{Subject: o.Subject, Data: b, Delivered: 1}
}

// placedMsg is orders.placed for orderID, with the id orders gives it.
func placedMsg(t testing.TB, orderID string) *consumer.Message {
	t.Helper()
	return message(t, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.placed"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventPlaced, orderID),
		Type:    catalog.TypeOrderPlaced,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    placedEvent(orderID),
	})
}

// reservedMsg is inventory.reserved for orderID.
func reservedMsg(t testing.TB, orderID string) *consumer.Message {
	t.Helper()
	return message(t, events.Outgoing{
		ID:      events.DerivedID(orderID, "inventory.reserved"),
		Subject: catalog.EventSubject(catalog.Inventory, catalog.EventReserved, orderID),
		Type:    catalog.TypeStockReserved,
		Source:  catalog.Source(catalog.Inventory),
		Time:    t0,
		Data:    catalog.StockReserved{OrderID: orderID, Items: []catalog.StockLine{{SKU: "SKU-1", Quantity: 2}}},
	})
}

// outboxEvent is one row of the outbox, decoded.
type outboxEvent struct {
	Subject string
	Env     events.Envelope
}

// mustOutbox returns the events waiting in the outbox (no relay runs in
// these tests, so that is everything the service published).
func mustOutbox(t testing.TB, db *sqldb.DB) []outboxEvent {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT subject, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var out []outboxEvent
	for rows.Next() {
		var (
			subject string
			payload []byte
		)
		if err := rows.Scan(&subject, &payload); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		env, err := events.Decode(payload)
		if err != nil {
			t.Fatalf("outbox row on %s: %v", subject, err)
		}
		out = append(out, outboxEvent{Subject: subject, Env: env})
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

// capturedEvents returns the payments.captured events of orderID in the
// outbox, decoded.
func capturedEvents(t testing.TB, db *sqldb.DB, orderID string) []catalog.PaymentCaptured {
	t.Helper()
	var out []catalog.PaymentCaptured
	for _, e := range mustOutbox(t, db) {
		if e.Subject != catalog.EventSubject(catalog.Payments, catalog.EventCaptured, orderID) {
			continue
		}
		var pc catalog.PaymentCaptured
		if err := events.DecodeData(e.Env.Data, &pc); err != nil {
			t.Fatalf("captured data: %v", err)
		}
		if e.Env.ID != payments.CapturedEventID(orderID) || e.Env.Type != catalog.TypePaymentCaptured {
			t.Errorf("captured event: got id %s type %s, want %s %s", e.Env.ID, e.Env.Type,
				payments.CapturedEventID(orderID), catalog.TypePaymentCaptured)
		}
		out = append(out, pc)
	}
	return out
}

func (h *harness) mustHandle(t testing.TB, m *consumer.Message) {
	t.Helper()
	if err := h.svc.Handle(context.Background(), m); err != nil {
		t.Fatalf("Handle %s: got %v, want nil", m.Subject, err)
	}
}

func (h *harness) mustGet(t testing.TB, orderID string) *payments.Payment {
	t.Helper()
	p, err := h.svc.Get(context.Background(), orderID)
	if err != nil {
		t.Fatalf("Get %s: %v", orderID, err)
	}
	return p
}

// assertCapturedOnce checks the promise of the service for one order:
// captured, charged once, one payments.captured carrying the charge.
func (h *harness) assertCapturedOnce(t testing.TB, orderID string) {
	t.Helper()
	p := h.mustGet(t, orderID)
	res, amount, charged := h.provider.Charged(orderID)
	if !charged {
		t.Fatalf("provider: order %s was never charged", orderID)
	}
	if p.Status != payments.Captured || p.PaymentID != res.PaymentID {
		t.Errorf("payment: got status %s payment id %q, want CAPTURED %q", p.Status, p.PaymentID, res.PaymentID)
	}
	want := catalog.Money{Amount: 1200, Currency: "EUR"}
	if amount != want || p.Amount != want {
		t.Errorf("amount: got charged %s, recorded %s; want %s", amount, p.Amount, want)
	}
	evts := capturedEvents(t, h.db, orderID)
	if len(evts) != 1 {
		t.Fatalf("payments.captured events for %s: got %d, want 1", orderID, len(evts))
	}
	if wantEvt := (catalog.PaymentCaptured{OrderID: orderID, PaymentID: res.PaymentID, Amount: want}); evts[0] != wantEvt {
		t.Errorf("payments.captured: got %+v, want %+v", evts[0], wantEvt)
	}
}
