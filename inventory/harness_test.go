package inventory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	outboxpkg "github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/inventory"
	"github.com/choreo-dev/choreo/inventory/stockdb"
)

// harness is a Service over a real, migrated store, fed messages the way
// the consumer runner feeds them.
type harness struct {
	svc   *inventory.Service
	store *stockdb.Store
	db    *sqldb.DB
	logs  *logBuffer
}

// logBuffer collects the service's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines at level or above.
func (b *logBuffer) lines(level slog.Level) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range strings.Lines(b.buf.String()) {
		var rec struct{ Level slog.Level }
		if err := json.Unmarshal([]byte(l), &rec); err == nil && rec.Level >= level {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

func newHarness(tb testing.TB, db *sqldb.DB) *harness {
	tb.Helper()
	if err := stockdb.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return newMigratedHarness(tb, db)
}

// newMigratedHarness is newHarness on a database known to be migrated
// already (a copy of a migrated template), sparing the checks.
func newMigratedHarness(tb testing.TB, db *sqldb.DB) *harness {
	tb.Helper()
	store := stockdb.New(db)
	logs := &logBuffer{}
	svc, err := inventory.New(inventory.Config{
		Store:  store,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return t0 },
	})
	if err != nil {
		tb.Fatalf("new service: %v", err)
	}
	return &harness{svc: svc, store: store, db: db, logs: logs}
}

// seq numbers messages as a stream would.
var seq atomic.Uint64

// message wraps a body as a delivery on subject.
func message(stream, subject string, body []byte) *consumer.Message {
	return &consumer.Message{
		Subject:   subject,
		Data:      body,
		Header:    nats.Header{},
		Stream:    stream,
		Sequence:  seq.Add(1),
		Delivered: 1,
	}
}

// eventMessage encodes an event the way the producing service's outbox
// does and wraps it as a delivery.
func eventMessage(tb testing.TB, stream string, o events.Outgoing) *consumer.Message {
	tb.Helper()
	env, err := o.Envelope()
	if err != nil {
		tb.Fatalf("envelope: %v", err)
	}
	body, err := events.Encode(env)
	if err != nil {
		tb.Fatalf("encode: %v", err)
	}
	return message(stream, o.Subject, body)
}

func items(lines ...catalog.StockLine) []catalog.LineItem {
	out := make([]catalog.LineItem, len(lines))
	for i, l := range lines {
		out[i] = catalog.LineItem{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: 100}
	}
	return out
}

func total(its []catalog.LineItem) catalog.Money {
	var sum int64
	for _, it := range its {
		sum += it.Quantity * it.UnitPrice
	}
	return catalog.Money{Amount: sum, Currency: "EUR"}
}

// placed is orders.placed for orderID, with the id orders gives it.
func placed(tb testing.TB, orderID string, lines ...catalog.StockLine) *consumer.Message {
	its := items(lines...)
	return eventMessage(tb, catalog.StreamOrders, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.placed"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventPlaced, orderID),
		Type:    catalog.TypeOrderPlaced,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    catalog.OrderPlaced{OrderID: orderID, CustomerID: "c-1", Items: its, Total: total(its), PlacedAt: t0},
	})
}

// confirmed is orders.confirmed for orderID, with the id orders gives it.
func confirmed(tb testing.TB, orderID string, lines ...catalog.StockLine) *consumer.Message {
	its := items(lines...)
	return eventMessage(tb, catalog.StreamOrders, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.confirmed"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, orderID),
		Type:    catalog.TypeOrderConfirmed,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    catalog.OrderConfirmed{OrderID: orderID, CustomerID: "c-1", Items: its, Total: total(its)},
	})
}

// cancelled is orders.cancelled for orderID, with the id orders gives it.
func cancelled(tb testing.TB, orderID, reason string, lines ...catalog.StockLine) *consumer.Message {
	its := items(lines...)
	return eventMessage(tb, catalog.StreamOrders, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.cancelled"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventCancelled, orderID),
		Type:    catalog.TypeOrderCancelled,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    catalog.OrderCancelled{OrderID: orderID, CustomerID: "c-1", Reason: reason, Items: its, Total: total(its)},
	})
}

// republished is m published again as a new message under another event
// id, as an operator re-publishing an event would: the inbox does not
// recognise it, so only the domain can make it a no-op.
func republished(tb testing.TB, m *consumer.Message, id string) *consumer.Message {
	tb.Helper()
	env, err := events.Decode(m.Data)
	if err != nil {
		tb.Fatalf("decode: %v", err)
	}
	env.ID = id
	body, err := events.Encode(env)
	if err != nil {
		tb.Fatalf("encode: %v", err)
	}
	return message(m.Stream, m.Subject, body)
}

// restockCmd is a bare-JSON cmd.inventory.restock, as `nats pub` sends it.
func restockCmd(tb testing.TB, commandID, sku string, qty int64) *consumer.Message {
	tb.Helper()
	body, err := json.Marshal(catalog.Restock{CommandID: commandID, SKU: sku, Quantity: qty})
	if err != nil {
		tb.Fatal(err)
	}
	return message(catalog.StreamCommands, catalog.SubjectRestock, body)
}

// published is one row of the outbox.
type published struct {
	events.Envelope
	TraceParent string
}

// outbox returns the events waiting in the outbox, in commit order.
func outbox(tb testing.TB, db *sqldb.DB) []published {
	tb.Helper()
	pending, err := outboxpkg.New(db).Pending(context.Background())
	if err != nil {
		tb.Fatalf("read outbox: %v", err)
	}
	var out []published
	for _, m := range pending {
		env, err := events.Decode(m.Data)
		if err != nil {
			tb.Fatalf("outbox row: %v", err)
		}
		out = append(out, published{Envelope: env, TraceParent: m.Header.Get(events.HeaderTraceParent)})
	}
	return out
}

// outboxIDs returns the sorted ids of the events in the outbox.
func outboxIDs(tb testing.TB, db *sqldb.DB) []string {
	tb.Helper()
	var ids []string
	for _, p := range outbox(tb, db) {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

func allStock(tb testing.TB, s *stockdb.Store) []inventory.Stock {
	tb.Helper()
	all, err := s.All(context.Background())
	if err != nil {
		tb.Fatalf("all: %v", err)
	}
	return all
}
