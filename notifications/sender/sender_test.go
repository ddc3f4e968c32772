package sender_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/notifications"
	"github.com/choreo-dev/choreo/notifications/sender"
)

func notification(id string) notifications.Notification {
	return notifications.Notification{ID: id, OrderID: "order-1", CustomerID: "cust-1",
		Status: catalog.StatusCancelled, Reason: catalog.ReasonOutOfStock,
		Total: catalog.Money{Amount: 1200, Currency: "EUR"}, State: notifications.Pending}
}

func TestLogWritesOneRecordPerNotification(t *testing.T) {
	var buf bytes.Buffer
	l := sender.NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	ctx := context.Background()
	for range 3 {
		res, err := l.Send(ctx, notification("n-1"))
		if err != nil || res.Channel != sender.ChannelLog {
			t.Fatalf("Send: got %+v %v, want channel %q", res, err, sender.ChannelLog)
		}
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("records: got %d, want 1 (the id is the idempotency key)", len(lines))
	}
	var rec map[string]any
	if err := json.Unmarshal(lines[0], &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level": "INFO", "notification_id": "n-1", "order_id": "order-1", "customer_id": "cust-1",
		"status": "CANCELLED", "reason": "out_of_stock", "total_amount": float64(1200), "currency": "EUR", "channel": "log",
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("record %s: got %v, want %v", k, rec[k], v)
		}
	}
	if l.Calls("n-1") != 3 || l.Sent() != 1 {
		t.Errorf("got %d calls and %d sent, want 3 and 1", l.Calls("n-1"), l.Sent())
	}
}

func TestLogRefusesCancelledContext(t *testing.T) {
	l := sender.NewLog(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Send(ctx, notification("n-1")); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if l.Sent() != 0 {
		t.Errorf("sent: got %d, want 0", l.Sent())
	}
}

func TestLogConcurrent(t *testing.T) {
	l := sender.NewLog(slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			id := []string{"a", "b", "c", "d"}[i%4]
			if _, err := l.Send(context.Background(), notification(id)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if l.Sent() != 4 || l.Calls("a") != 10 {
		t.Errorf("got %d sent and %d calls for a, want 4 and 10", l.Sent(), l.Calls("a"))
	}
}

// The log sink remembers a bounded number of ids: a long run's memory
// stays flat, and Sent still counts every delivery.
func TestLogRemembersRecentIDsOnly(t *testing.T) {
	l := sender.NewLog(slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for i := range sender.RecentIDs + 5 {
		if _, err := l.Send(ctx, notifications.Notification{ID: fmt.Sprintf("n-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Sent(); got != sender.RecentIDs+5 {
		t.Errorf("sent: got %d, want %d", got, sender.RecentIDs+5)
	}
	if l.Calls("n-0") != 0 || l.Calls(fmt.Sprintf("n-%d", sender.RecentIDs+4)) != 1 {
		t.Errorf("calls: oldest %d, newest %d; want the oldest forgotten, the newest remembered", l.Calls("n-0"), l.Calls(fmt.Sprintf("n-%d", sender.RecentIDs+4)))
	}
}
