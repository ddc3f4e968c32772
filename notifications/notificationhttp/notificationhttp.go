// Package notificationhttp is the notifications service's HTTP API:
// GET /notifications/{order_id}. Errors are RFC 9457 problem details.
package notificationhttp

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/notifications"
)

// NotificationView is the JSON shape of one notification.
type NotificationView struct {
	NotificationID string     `json:"notification_id"`
	Status         string     `json:"status"`
	Reason         string     `json:"reason,omitempty"`
	State          string     `json:"state"`
	Channel        string     `json:"channel,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	SentAt         *time.Time `json:"sent_at,omitempty"`
}

// OrderNotificationsView is the JSON shape of an order's notifications.
type OrderNotificationsView struct {
	OrderID       string             `json:"order_id"`
	Notifications []NotificationView `json:"notifications"`
}

// View returns the JSON shape of an order's notifications.
func View(orderID string, list []*notifications.Notification) OrderNotificationsView {
	v := OrderNotificationsView{OrderID: orderID, Notifications: []NotificationView{}}
	for _, n := range list {
		nv := NotificationView{
			NotificationID: n.ID,
			Status:         n.Status,
			Reason:         n.Reason,
			State:          string(n.State),
			Channel:        n.Channel,
			CreatedAt:      n.CreatedAt,
		}
		if !n.SentAt.IsZero() {
			sent := n.SentAt
			nv.SentAt = &sent
		}
		v.Notifications = append(v.Notifications, nv)
	}
	return v
}

// Register adds the notifications routes to mux.
func Register(mux httpx.Mux, svc *notifications.Service, log *slog.Logger) {
	h := handler{svc: svc, log: log}
	mux.HandleFunc("GET /notifications/{order_id}", h.list)
}

type handler struct {
	svc *notifications.Service
	log *slog.Logger
}

// list answers 200 with an empty list for an order without notifications:
// the service cannot tell an unknown order from one not final yet.
func (h handler) list(w http.ResponseWriter, r *http.Request) {
	orderID := r.PathValue("order_id")
	if err := catalog.ValidID("order_id", orderID); err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	list, err := h.svc.List(r.Context(), orderID)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, View(orderID, list))
}
