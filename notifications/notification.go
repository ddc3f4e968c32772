package notifications

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// State is where a notification is in its delivery.
type State string

// The states a notification can be in.
const (
	// Pending: recorded, not yet delivered (or delivered but not yet
	// recorded as such).
	Pending State = "PENDING"
	// Sent: delivered, and notifications.sent is in the outbox.
	Sent State = "SENT"
)

// Valid reports whether s is a state this version knows.
func (s State) Valid() bool { return s == Pending || s == Sent }

// ErrNotFound is returned for a notification the service does not have.
var ErrNotFound = errors.New("notification not found")

// Notification tells a customer their order's final state.
type Notification struct {
	// ID identifies the notification and is the sender's idempotency
	// key; see NotificationID.
	ID         string
	OrderID    string
	CustomerID string
	// Status is the order's final status: CONFIRMED or CANCELLED.
	Status string
	// Reason is why a cancelled order was cancelled; empty otherwise.
	Reason string
	Total  catalog.Money
	Items  []catalog.LineItem
	State  State
	// Channel is the medium it was delivered through, set when Sent.
	Channel   string
	CreatedAt time.Time
	SentAt    time.Time
}

// NotificationID returns the id of the notification of an order's final
// status: the same order and status always give the same id, which is
// what makes a second event for them a no-op.
func NotificationID(orderID, status string) string {
	return events.DerivedID(orderID, "notification."+status)
}

// SentEventID returns the id of the notifications.sent event of the
// notification of an order's final status.
func SentEventID(orderID, status string) string {
	return events.DerivedID(orderID, catalog.Notifications+"."+catalog.EventSent+"."+status)
}

// ForConfirmed returns the pending notification of a confirmed order.
func ForConfirmed(e catalog.OrderConfirmed, now time.Time) *Notification {
	return newNotification(e.OrderID, e.CustomerID, catalog.StatusConfirmed, "", e.Total, e.Items, now)
}

// ForCancelled returns the pending notification of a cancelled order.
func ForCancelled(e catalog.OrderCancelled, now time.Time) *Notification {
	return newNotification(e.OrderID, e.CustomerID, catalog.StatusCancelled, e.Reason, e.Total, e.Items, now)
}

func newNotification(orderID, customerID, status, reason string, total catalog.Money, items []catalog.LineItem, now time.Time) *Notification {
	return &Notification{
		ID:         NotificationID(orderID, status),
		OrderID:    orderID,
		CustomerID: customerID,
		Status:     status,
		Reason:     reason,
		Total:      total,
		Items:      slices.Clone(items),
		State:      Pending,
		CreatedAt:  now.UTC(),
	}
}

// MarkSent records a delivery and returns notifications.sent. A
// notification already sent (another delivery or replica got there first)
// is left as it is and publishes nothing.
func (n *Notification) MarkSent(res SendResult, now time.Time) ([]events.Outgoing, error) {
	if n.State == Sent {
		return nil, nil
	}
	if res.Channel == "" {
		return nil, fmt.Errorf("notifications: sender named no channel for notification %s", n.ID)
	}
	now = now.UTC()
	n.State = Sent
	n.Channel = res.Channel
	n.SentAt = now
	return []events.Outgoing{{
		ID:         SentEventID(n.OrderID, n.Status),
		Subject:    catalog.EventSubject(catalog.Notifications, catalog.EventSent, n.OrderID),
		Type:       catalog.TypeNotificationSent,
		DataSchema: catalog.DataSchema(catalog.TypeNotificationSent),
		Source:     catalog.Source(catalog.Notifications),
		Time:       now,
		Data: catalog.NotificationSent{
			NotificationID: n.ID,
			OrderID:        n.OrderID,
			CustomerID:     n.CustomerID,
			Status:         n.Status,
			Reason:         n.Reason,
			Channel:        n.Channel,
		},
	}}, nil
}
