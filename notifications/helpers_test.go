package notifications_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/notifications"
	"github.com/choreo-dev/choreo/notifications/notificationdb"
	"github.com/choreo-dev/choreo/notifications/sender"
)

// harness is a notifications service on a fresh database of one engine,
// delivering through the log sink behind an optional fault injector.
type harness struct {
	db     *sqldb.DB
	store  *notificationdb.Store
	logBuf *syncBuffer
	sender *sender.Log
	faults *faultySender
	svc    *notifications.Service
}

func newHarness(t testing.TB, b sqltest.Backend) *harness {
	t.Helper()
	db := b.Open(t)
	if err := notificationdb.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	h := &harness{db: db, store: notificationdb.New(db), logBuf: &syncBuffer{}}
	h.sender = sender.NewLog(slog.New(slog.NewJSONHandler(h.logBuf, nil)))
	h.faults = &faultySender{next: h.sender}
	svc, err := notifications.New(notifications.Config{Store: h.store, Sender: h.faults, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatalf("notifications.New: %v", err)
	}
	h.svc = svc
	return h
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Lines() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Count(b.buf.Bytes(), []byte("\n"))
}

var errSMTPDown = errors.New("mail server unavailable")

// faultySender stands in for an unreliable mail server: it fails the next
// failBefore calls without delivering, and the next failAfter calls after
// delivering (the answer is lost).
type faultySender struct {
	next notifications.Sender

	mu         sync.Mutex
	failBefore int
	failAfter  int
	calls      int
}

func (f *faultySender) Send(ctx context.Context, n notifications.Notification) (notifications.SendResult, error) {
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
		return notifications.SendResult{}, errSMTPDown
	}
	res, err := f.next.Send(ctx, n)
	if err == nil && after {
		return notifications.SendResult{}, errSMTPDown
	}
	return res, err
}

func (f *faultySender) failNext(before, after int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failBefore, f.failAfter = before, after
}

func (f *faultySender) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

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

// confirmedMsg is orders.confirmed for orderID, with the id orders gives it.
func confirmedMsg(t testing.TB, orderID string) *consumer.Message {
	t.Helper()
	return message(t, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.confirmed"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventConfirmed, orderID),
		Type:    catalog.TypeOrderConfirmed,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    confirmedEvent(orderID),
	})
}

// cancelledMsg is orders.cancelled for orderID.
func cancelledMsg(t testing.TB, orderID, reason string) *consumer.Message {
	t.Helper()
	return message(t, events.Outgoing{
		ID:      events.DerivedID(orderID, "orders.cancelled"),
		Subject: catalog.EventSubject(catalog.Orders, catalog.EventCancelled, orderID),
		Type:    catalog.TypeOrderCancelled,
		Source:  catalog.Source(catalog.Orders),
		Time:    t0,
		Data:    cancelledEvent(orderID, reason),
	})
}

// sentEvents returns the notifications.sent events of orderID waiting in
// the outbox (no relay runs in these tests), checking their ids.
func sentEvents(t testing.TB, db *sqldb.DB, orderID string) []catalog.NotificationSent {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), db.Dialect.Rebind(
		`SELECT payload FROM outbox WHERE subject = ? ORDER BY id`),
		catalog.EventSubject(catalog.Notifications, catalog.EventSent, orderID))
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var out []catalog.NotificationSent
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		env, err := events.Decode(payload)
		if err != nil {
			t.Fatalf("outbox: %v", err)
		}
		var ns catalog.NotificationSent
		if err := events.DecodeData(env.Data, &ns); err != nil {
			t.Fatalf("notifications.sent data: %v", err)
		}
		if env.ID != notifications.SentEventID(orderID, ns.Status) || env.Type != catalog.TypeNotificationSent {
			t.Errorf("notifications.sent: got id %s type %s, want %s %s", env.ID, env.Type,
				notifications.SentEventID(orderID, ns.Status), catalog.TypeNotificationSent)
		}
		out = append(out, ns)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

func outboxCount(t testing.TB, db *sqldb.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatalf("count outbox: %v", err)
	}
	return n
}

func (h *harness) mustHandle(t testing.TB, m *consumer.Message) {
	t.Helper()
	if err := h.svc.Handle(context.Background(), m); err != nil {
		t.Fatalf("Handle %s: got %v, want nil", m.Subject, err)
	}
}

// assertNotifiedOnce checks the service's promise for one order's final
// status: one notification, SENT, delivered (logged) once, one
// notifications.sent describing it.
func (h *harness) assertNotifiedOnce(t testing.TB, orderID, status, reason string) {
	t.Helper()
	list, err := h.svc.List(context.Background(), orderID)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var mine []*notifications.Notification
	for _, n := range list {
		if n.Status == status {
			mine = append(mine, n)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("notifications of %s %s: got %d, want 1", orderID, status, len(mine))
	}
	n := mine[0]
	if n.State != notifications.Sent || n.Channel != sender.ChannelLog || n.Reason != reason {
		t.Errorf("notification: got state %s channel %q reason %q, want SENT %q %q", n.State, n.Channel, n.Reason, sender.ChannelLog, reason)
	}
	var sent []catalog.NotificationSent
	for _, e := range sentEvents(t, h.db, orderID) {
		if e.Status == status {
			sent = append(sent, e)
		}
	}
	if len(sent) != 1 {
		t.Fatalf("notifications.sent of %s %s: got %d, want 1", orderID, status, len(sent))
	}
	want := catalog.NotificationSent{NotificationID: n.ID, OrderID: orderID, CustomerID: "cust-1",
		Status: status, Reason: reason, Channel: sender.ChannelLog}
	if sent[0] != want {
		t.Errorf("notifications.sent: got %+v, want %+v", sent[0], want)
	}
}
