package notificationhttp_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/notifications"
	"github.com/choreo-dev/choreo/notifications/notificationdb"
	"github.com/choreo-dev/choreo/notifications/notificationhttp"
	"github.com/choreo-dev/choreo/notifications/sender"
)

func TestListNotifications(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Backends()[0].Open(t)
	if err := notificationdb.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	svc, err := notifications.New(notifications.Config{Store: notificationdb.New(db), Sender: sender.NewLog(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	out := events.Outgoing{
		ID: "e-1", Subject: "orders.cancelled.order-1", Type: catalog.TypeOrderCancelled, Source: catalog.Source(catalog.Orders),
		Data: catalog.OrderCancelled{OrderID: "order-1", CustomerID: "cust-1", Reason: catalog.ReasonTimeout},
	}
	env, err := out.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	body, err := events.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle(ctx, &consumer.Message{Subject: out.Subject, Data: body}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	notificationhttp.Register(mux, svc, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(t *testing.T, path string) notificationhttp.OrderNotificationsView {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: got %d, want 200", path, resp.StatusCode)
		}
		var v notificationhttp.OrderNotificationsView
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Run("Known", func(t *testing.T) {
		v := get(t, "/notifications/order-1")
		if v.OrderID != "order-1" || len(v.Notifications) != 1 {
			t.Fatalf("got %+v, want one notification of order-1", v)
		}
		n := v.Notifications[0]
		if n.NotificationID != notifications.NotificationID("order-1", catalog.StatusCancelled) || n.Status != "CANCELLED" ||
			n.Reason != "timeout" || n.State != "SENT" || n.Channel != "log" || n.SentAt == nil || n.SentAt.Before(time.Unix(0, 0)) {
			t.Errorf("got %+v, want the sent cancellation notification", n)
		}
	})
	t.Run("UnknownIsEmpty", func(t *testing.T) {
		if v := get(t, "/notifications/nope"); v.OrderID != "nope" || v.Notifications == nil || len(v.Notifications) != 0 {
			t.Errorf("got %+v, want an empty list", v)
		}
	})
}
