package payments_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// Provider failures the fakes inject. errProviderDown is an outage (the
// service must answer events.Unavailable); errProviderBroken is any other
// failure (events.Transient).
var (
	errProviderDown   = fmt.Errorf("provider down: %w", payments.ErrProviderUnavailable)
	errProviderBroken = errors.New("provider answered gibberish")
)

// faultyProvider stands in for an unreliable external provider: it fails
// the next failBefore calls (Capture or Cancel) without reaching the
// provider, and the next failAfter calls after the provider has acted (the
// response is lost, as on a timeout), with failErr (default
// errProviderDown). It declines every capture of a key in declines, as a
// provider's rules would, the same way on every retry.
type faultyProvider struct {
	next payments.Provider

	mu          sync.Mutex
	failBefore  int
	failAfter   int
	failErr     error
	declines    map[string]string
	calls       int
	cancelCalls int
	keyCalls    map[string]int // Capture and Cancel calls per key
}

func (f *faultyProvider) fault() (before, after bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before = f.failBefore > 0
	if before {
		f.failBefore--
	}
	after = !before && f.failAfter > 0
	if after {
		f.failAfter--
	}
	err = f.failErr
	if err == nil {
		err = errProviderDown
	}
	return before, after, err
}

func (f *faultyProvider) Capture(ctx context.Context, req payments.CaptureRequest) (payments.CaptureResult, error) {
	f.mu.Lock()
	f.calls++
	f.countKey(req.IdempotencyKey)
	reason, decline := f.declines[req.IdempotencyKey]
	f.mu.Unlock()
	before, after, ferr := f.fault()
	if before {
		return payments.CaptureResult{}, ferr
	}
	var (
		res payments.CaptureResult
		err error
	)
	if decline {
		res = payments.CaptureResult{Declined: true, DeclineReason: reason}
	} else {
		res, err = f.next.Capture(ctx, req)
	}
	if err == nil && after {
		return payments.CaptureResult{}, ferr
	}
	return res, err
}

func (f *faultyProvider) Cancel(ctx context.Context, req payments.CancelRequest) (payments.CancelResult, error) {
	f.mu.Lock()
	f.cancelCalls++
	f.countKey(req.IdempotencyKey)
	f.mu.Unlock()
	before, after, ferr := f.fault()
	if before {
		return payments.CancelResult{}, ferr
	}
	res, err := f.next.Cancel(ctx, req)
	if err == nil && after {
		return payments.CancelResult{}, ferr
	}
	return res, err
}

// countKey counts a call under key; f.mu is held.
func (f *faultyProvider) countKey(key string) {
	if f.keyCalls == nil {
		f.keyCalls = map[string]int{}
	}
	f.keyCalls[key]++
}

// KeyCalls returns how many calls, Capture or Cancel, failed or not, were
// made under key.
func (f *faultyProvider) KeyCalls(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keyCalls[key]
}

// failNext arms the next calls to fail with errProviderDown.
func (f *faultyProvider) failNext(before, after int) { f.failNextWith(before, after, nil) }

// failNextWith arms the next calls to fail with err (nil: errProviderDown).
func (f *faultyProvider) failNextWith(before, after int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failBefore, f.failAfter, f.failErr = before, after, err
}

// decline makes every capture of key a decline for reason.
func (f *faultyProvider) decline(key, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.declines == nil {
		f.declines = map[string]string{}
	}
	f.declines[key] = reason
}

// Calls returns how many times Capture was called, failed calls included.
func (f *faultyProvider) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// CancelCalls returns how many times Cancel was called, failed calls
// included.
func (f *faultyProvider) CancelCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancelCalls
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

// cancelledMsg is orders.cancelled for orderID, for reason.
func cancelledMsg(t testing.TB, orderID, reason string) *consumer.Message {
	t.Helper()
	e := placedEvent(orderID)
	return message(t, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.cancelled"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventCancelled, orderID),
		Type:    catalog.TypeOrderCancelled,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data: catalog.OrderCancelled{OrderID: orderID, CustomerID: e.CustomerID, Reason: reason,
			Items: e.Items, Total: e.Total},
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

// deliver handles msgs in order as the consumer would: one refused
// because its order is not yet placed (payments.ErrNotPlaced, Early)
// is delivered again after the others, as a nak'ed message is; any other
// error fails the test.
func (h *harness) deliver(t testing.TB, msgs ...*consumer.Message) {
	t.Helper()
	for n := 0; len(msgs) > 0; n++ {
		if n > 100 {
			t.Fatalf("still %d messages to deliver after %d deliveries", len(msgs), n)
		}
		m := msgs[0]
		msgs = msgs[1:]
		err := h.svc.Handle(context.Background(), m)
		switch {
		case errors.Is(err, payments.ErrNotPlaced) && !events.IsPermanent(err):
			msgs = append(msgs, m)
		case err != nil:
			t.Fatalf("Handle %s: got %v, want nil", m.Subject, err)
		}
	}
}

// handleUntilPlaced handles m, again and again while its order is not yet
// placed: a consumer's redeliveries, for tests that deliver concurrently.
func (h *harness) handleUntilPlaced(m *consumer.Message) error {
	for range 200 {
		err := h.svc.Handle(context.Background(), m)
		if !errors.Is(err, payments.ErrNotPlaced) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s: order never placed", m.Subject)
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

// orderEvents returns the payments.* events of orderID in the outbox, in
// the order they were queued.
func orderEvents(t testing.TB, db *sqldb.DB, orderID string) []outboxEvent {
	t.Helper()
	var out []outboxEvent
	for _, e := range mustOutbox(t, db) {
		if strings.HasPrefix(e.Subject, catalog.Payments+".") && strings.HasSuffix(e.Subject, "."+orderID) {
			out = append(out, e)
		}
	}
	return out
}

// eventNames returns the names (the middle subject token) of the payments
// events of orderID, sorted, after checking each event's id, type and
// subject belong together.
func eventNames(t testing.TB, db *sqldb.DB, orderID string) []string {
	t.Helper()
	types := map[string]string{
		catalog.EventCaptured: catalog.TypePaymentCaptured,
		catalog.EventDeclined: catalog.TypePaymentDeclined,
		catalog.EventRefunded: catalog.TypePaymentRefunded,
		catalog.EventVoided:   catalog.TypePaymentVoided,
	}
	var names []string
	for _, e := range orderEvents(t, db, orderID) {
		name := strings.TrimSuffix(strings.TrimPrefix(e.Subject, catalog.Payments+"."), "."+orderID)
		if e.Env.ID != payments.EventID(orderID, name) || e.Env.Type != types[name] {
			t.Errorf("event on %s: got id %s type %s, want %s %s", e.Subject, e.Env.ID, e.Env.Type,
				payments.EventID(orderID, name), types[name])
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// eventData decodes the data of the only payments.<name> event of orderID.
func eventData[T any](t testing.TB, db *sqldb.DB, orderID, name string) T {
	t.Helper()
	var (
		v     T
		found int
	)
	for _, e := range orderEvents(t, db, orderID) {
		if e.Subject != catalog.EventSubject(catalog.Payments, name, orderID) {
			continue
		}
		found++
		if err := events.DecodeData(e.Env.Data, &v); err != nil {
			t.Fatalf("%s data: %v", e.Subject, err)
		}
	}
	if found != 1 {
		t.Fatalf("payments.%s events of %s: got %d, want 1", name, orderID, found)
	}
	return v
}

// money is what the provider took and gave back for one order, by the
// service's books and by the provider's.
type money struct {
	captured, refunded int64
}

// mustMoney returns the money of orderID as the store records it, after
// checking that the provider's books agree.
func (h *harness) mustMoney(t testing.TB, orderID string) money {
	t.Helper()
	all, err := h.store.Money(context.Background())
	if err != nil {
		t.Fatalf("Money: %v", err)
	}
	m := all[orderID]
	recorded := money{m.Captured, m.Refunded}
	if books := h.books(orderID); recorded != books {
		t.Errorf("money of %s: store records %+v, the provider's books say %+v", orderID, recorded, books)
	}
	return recorded
}

// books returns the money of orderID by the provider's books.
func (h *harness) books(orderID string) money {
	var m money
	if _, amount, ok := h.provider.Charged(orderID); ok {
		m.captured = amount.Amount
	}
	if res, ok := h.provider.Cancelled(orderID); ok && res.Refunded {
		m.refunded = res.Amount.Amount
	}
	return m
}

// assertOutcome checks the end of one order's payment: its status, its
// events (names, sorted) and its money.
func (h *harness) assertOutcome(t testing.TB, orderID string, status payments.Status, names []string, m money) {
	t.Helper()
	if p := h.mustGet(t, orderID); p.Status != status {
		t.Errorf("status of %s: got %s, want %s", orderID, p.Status, status)
	}
	if got := eventNames(t, h.db, orderID); !slices.Equal(got, names) {
		t.Errorf("events of %s: got %v, want %v", orderID, got, names)
	}
	if got := h.mustMoney(t, orderID); got != m {
		t.Errorf("money of %s: got %+v, want %+v", orderID, got, m)
	}
}

// confirmedMsg is orders.confirmed for orderID, of the order's total.
func confirmedMsg(t testing.TB, orderID string) *consumer.Message {
	t.Helper()
	e := placedEvent(orderID)
	return message(t, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.confirmed"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, orderID),
		Type:    catalog.TypeOrderConfirmed,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    catalog.OrderConfirmed{OrderID: orderID, CustomerID: e.CustomerID, Items: e.Items, Total: e.Total},
	})
}
