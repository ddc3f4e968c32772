package notifications_test

import (
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/notifications"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

var total = catalog.Money{Amount: 1200, Currency: "EUR"}

func confirmedEvent(orderID string) catalog.OrderConfirmed {
	return catalog.OrderConfirmed{OrderID: orderID, CustomerID: "cust-1", Total: total,
		Items: []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 600}}}
}

func cancelledEvent(orderID, reason string) catalog.OrderCancelled {
	return catalog.OrderCancelled{OrderID: orderID, CustomerID: "cust-1", Reason: reason, Total: total,
		Items: []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 600}}}
}

func TestNewNotifications(t *testing.T) {
	tests := []struct {
		name       string
		n          *notifications.Notification
		wantStatus string
		wantReason string
	}{
		{"Confirmed", notifications.ForConfirmed(confirmedEvent("order-1"), t0), catalog.StatusConfirmed, ""},
		{"Cancelled", notifications.ForCancelled(cancelledEvent("order-1", catalog.ReasonOutOfStock), t0), catalog.StatusCancelled, catalog.ReasonOutOfStock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.n
			if n.Status != tt.wantStatus || n.Reason != tt.wantReason || n.State != notifications.Pending {
				t.Errorf("got status %s reason %q state %s, want %s %q PENDING", n.Status, n.Reason, n.State, tt.wantStatus, tt.wantReason)
			}
			if n.ID != notifications.NotificationID("order-1", tt.wantStatus) {
				t.Errorf("id: got %s, want NotificationID(order-1, %s)", n.ID, tt.wantStatus)
			}
			if n.OrderID != "order-1" || n.CustomerID != "cust-1" || n.Total != total || len(n.Items) != 1 || !n.CreatedAt.Equal(t0) {
				t.Errorf("got %+v, want the event's order, customer, total, items and now", n)
			}
		})
	}
	if notifications.NotificationID("order-1", catalog.StatusConfirmed) == notifications.NotificationID("order-1", catalog.StatusCancelled) {
		t.Error("NotificationID: confirmed and cancelled got the same id, want one notification per final state")
	}
	if notifications.NotificationID("order-1", catalog.StatusConfirmed) == notifications.NotificationID("order-2", catalog.StatusConfirmed) {
		t.Error("NotificationID: two orders got the same id")
	}
}

func TestMarkSent(t *testing.T) {
	n := notifications.ForCancelled(cancelledEvent("order-1", catalog.ReasonPaymentDeclined), t0)
	out, err := n.MarkSent(notifications.SendResult{Channel: "log"}, t0.Add(time.Second))
	if err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	if n.State != notifications.Sent || n.Channel != "log" || !n.SentAt.Equal(t0.Add(time.Second)) {
		t.Errorf("got state %s channel %q sent at %s, want SENT log %s", n.State, n.Channel, n.SentAt, t0.Add(time.Second))
	}
	if len(out) != 1 {
		t.Fatalf("events: got %d, want 1", len(out))
	}
	e := out[0]
	if e.ID != notifications.SentEventID("order-1", catalog.StatusCancelled) || e.Subject != "notifications.sent.order-1" ||
		e.Type != catalog.TypeNotificationSent || e.Source != catalog.Source(catalog.Notifications) {
		t.Errorf("event: got %+v, want notifications.sent.order-1 with the derived id", e)
	}
	want := catalog.NotificationSent{NotificationID: n.ID, OrderID: "order-1", CustomerID: "cust-1",
		Status: catalog.StatusCancelled, Reason: catalog.ReasonPaymentDeclined, Channel: "log"}
	if e.Data != want {
		t.Errorf("data: got %+v, want %+v", e.Data, want)
	}

	again, err := n.MarkSent(notifications.SendResult{Channel: "email"}, t0.Add(time.Hour))
	if err != nil || len(again) != 0 || n.Channel != "log" {
		t.Errorf("second MarkSent: got %d events, err %v, channel %q; want none, nil, log", len(again), err, n.Channel)
	}
}

func TestMarkSentNeedsChannel(t *testing.T) {
	n := notifications.ForConfirmed(confirmedEvent("order-1"), t0)
	if _, err := n.MarkSent(notifications.SendResult{}, t0); err == nil || n.State != notifications.Pending {
		t.Errorf("got err %v state %s, want an error and PENDING", err, n.State)
	}
}
