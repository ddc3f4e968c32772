package orders_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/orders"
)

func TestCancellationTransitions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(o *orders.Order)
		apply      func(o *orders.Order) []events.Outgoing
		wantStatus orders.Status
		wantReason string
		wantEvent  string // subject prefix of the one event, or "" for none
	}{
		{"declined cancels a pending order", nil,
			func(o *orders.Order) []events.Outgoing { return o.OnPaymentDeclined(catalog.PaymentDeclined{}, t0) },
			orders.Cancelled, catalog.ReasonPaymentDeclined, "orders.cancelled."},
		{"deadline cancels a pending order", nil,
			func(o *orders.Order) []events.Outgoing { return o.OnDeadline(catalog.OrderDeadline{}, t0) },
			orders.Cancelled, catalog.ReasonTimeout, "orders.cancelled."},
		{"deadline after confirmation changes nothing",
			func(o *orders.Order) { o.OnPaymentCaptured(catalog.PaymentCaptured{PaymentID: "p"}, t0) },
			func(o *orders.Order) []events.Outgoing { return o.OnDeadline(catalog.OrderDeadline{}, t0) },
			orders.Confirmed, "", ""},
		{"declined after a customer cancel changes nothing",
			func(o *orders.Order) { o.RequestCancel(t0) },
			func(o *orders.Order) []events.Outgoing { return o.OnPaymentDeclined(catalog.PaymentDeclined{}, t0) },
			orders.Cancelled, catalog.ReasonCustomerCancelled, ""},
		{"customer cancels a pending order", nil,
			func(o *orders.Order) []events.Outgoing { out, _ := o.RequestCancel(t0); return out },
			orders.Cancelled, catalog.ReasonCustomerCancelled, "orders.cancelled."},
		{"a second cancel changes nothing",
			func(o *orders.Order) { o.RequestCancel(t0) },
			func(o *orders.Order) []events.Outgoing { out, _ := o.RequestCancel(t0); return out },
			orders.Cancelled, catalog.ReasonCustomerCancelled, ""},
		{"a cancel after confirmation is rejected with a reason",
			func(o *orders.Order) { o.OnPaymentCaptured(catalog.PaymentCaptured{PaymentID: "p"}, t0) },
			func(o *orders.Order) []events.Outgoing { out, _ := o.RequestCancel(t0); return out },
			orders.Confirmed, "", "orders.cancel_rejected."},
		{"a capture after a cancel changes nothing (payments refunds it)",
			func(o *orders.Order) { o.RequestCancel(t0) },
			func(o *orders.Order) []events.Outgoing {
				return o.OnPaymentCaptured(catalog.PaymentCaptured{PaymentID: "p"}, t0)
			},
			orders.Cancelled, catalog.ReasonCustomerCancelled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := placed(t, "order-1")
			if tc.setup != nil {
				tc.setup(o)
			}
			out := tc.apply(o)
			if o.Status != tc.wantStatus || o.Reason != tc.wantReason {
				t.Errorf("got %s %q, want %s %q", o.Status, o.Reason, tc.wantStatus, tc.wantReason)
			}
			switch {
			case tc.wantEvent == "" && len(out) != 0:
				t.Errorf("events: got %d, want none", len(out))
			case tc.wantEvent != "" && (len(out) != 1 || !strings.HasPrefix(out[0].Subject, tc.wantEvent)):
				t.Errorf("events: got %v, want one on %s…", out, tc.wantEvent)
			}
		})
	}
}

func TestRequestCancelReportsRejection(t *testing.T) {
	o := placed(t, "order-1")
	o.OnPaymentCaptured(catalog.PaymentCaptured{PaymentID: "p"}, t0)
	if _, rejected := o.RequestCancel(t0); !rejected {
		t.Error("cancel of a confirmed order: rejected=false, want true")
	}
}

func TestDeadlineEventIsAScheduledMessage(t *testing.T) {
	o := placed(t, "order-1")
	deadline := t0.Add(90 * time.Second)
	e := o.DeadlineEvent(deadline)
	// Outside orders.>: a subscriber to orders.> or *.*.<id> sees the
	// deadline when it fires, not when it is scheduled.
	if e.Subject != "schedules.orders.deadline.order-1" {
		t.Errorf("subject: got %q, want schedules.orders.deadline.order-1", e.Subject)
	}
	if got, want := e.Headers["Nats-Schedule"], "@at "+deadline.Format(time.RFC3339); got != want {
		t.Errorf("Nats-Schedule: got %q, want %q", got, want)
	}
	if got := e.Headers["Nats-Schedule-Target"]; got != "orders.deadline.order-1" {
		t.Errorf("Nats-Schedule-Target: got %q, want orders.deadline.order-1", got)
	}
	if e.Type != catalog.TypeOrderDeadline {
		t.Errorf("type: got %q", e.Type)
	}
	if e2 := placed(t, "order-1").DeadlineEvent(deadline); e2.ID != e.ID {
		t.Errorf("id not stable: %s then %s", e.ID, e2.ID)
	}
}

// sagaFixture is a Service with a deadline on a fresh store.
func sagaFixture(t *testing.T, b sqltest.Backend) *fixture {
	t.Helper()
	f := newFixture(t, b)
	f.clock = t0
	svc, err := orders.New(orders.Config{Store: f.store, Now: func() time.Time { return f.clock }, Deadline: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func cancelBody(orderID, commandID string) []byte {
	b, _ := json.Marshal(catalog.CancelOrder{CommandID: commandID, OrderID: orderID})
	return b
}

func TestSagaHandlers(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			t.Run("PlaceSchedulesTheDeadline", func(t *testing.T) {
				f := sagaFixture(t, b)
				if err := f.handle(ctx, catalog.SubjectPlaceOrder, []byte(placeBody), nil); err != nil {
					t.Fatal(err)
				}
				if got := f.subjects(t); !slices.Equal(got, []string{"orders.placed.order-1", "schedules.orders.deadline.order-1"}) {
					t.Errorf("outbox: got %v", got)
				}
				rows := f.outbox(t)
				if rows[1].Headers["Nats-Schedule"] != "@at "+t0.Add(time.Minute).Format(time.RFC3339) {
					t.Errorf("schedule header: got %q", rows[1].Headers["Nats-Schedule"])
				}
			})
			t.Run("FinalEventsWithdrawTheDeadline", func(t *testing.T) {
				for _, path := range []struct{ name, subject string }{
					{"confirmed", "payments.captured.order-1"},
					{"cancelled", "payments.declined.order-1"},
				} {
					f := sagaFixture(t, b)
					mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
					body := captured(t, "cap-1", "order-1")
					if path.name == "cancelled" {
						body = declinedBody(t, "order-1")
					}
					mustHandle(t, f, path.subject, body)
					rows := f.outbox(t)
					final := rows[len(rows)-1]
					if !strings.HasPrefix(final.Subject, "orders."+path.name+".") {
						t.Fatalf("last event: got %s, want orders.%s", final.Subject, path.name)
					}
					if final.Headers["Nats-Schedule-Next"] != "purge" || final.Headers["Nats-Scheduler"] != "schedules.orders.deadline.order-1" {
						t.Errorf("%s: headers %v, want the deadline's schedule purged with it", path.name, final.Headers)
					}
					if rows[0].Headers["Nats-Schedule-Next"] != "" {
						t.Errorf("orders.placed carries %v, want no purge", rows[0].Headers)
					}
					// Every event names the message that caused it.
					wantCause := map[string]string{"confirmed": "cap-1", "cancelled": "decl-order-1"}[path.name]
					if final.Env.CausationID != wantCause {
						t.Errorf("%s: causationid %q, want %q (the id of the event that caused it)", path.name, final.Env.CausationID, wantCause)
					}
					if got := rows[0].Env.CausationID; !strings.HasPrefix(got, catalog.SubjectPlaceOrder+":") {
						t.Errorf("orders.placed: causationid %q, want the place command's key", got)
					}
				}
			})
			t.Run("DeadlineCancelsAPendingOrder", func(t *testing.T) {
				f := sagaFixture(t, b)
				mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
				fired := deadlineBody(t, "order-1")
				f.clock = t0.Add(time.Minute) // when the server fires it
				for range 2 {                 // fired, and delivered twice
					mustHandle(t, f, "orders.deadline.order-1", fired)
				}
				if o := f.order(t, "order-1"); o.Status != orders.Cancelled || o.Reason != catalog.ReasonTimeout {
					t.Errorf("got %s %q, want CANCELLED timeout", o.Status, o.Reason)
				}
				if n := countPrefix(f.subjects(t), "orders.cancelled."); n != 1 {
					t.Errorf("orders.cancelled events: %d, want 1", n)
				}
			})
			t.Run("DeclinedCancels", func(t *testing.T) {
				f := sagaFixture(t, b)
				mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
				mustHandle(t, f, "payments.declined.order-1", declinedBody(t, "order-1"))
				if o := f.order(t, "order-1"); o.Status != orders.Cancelled || o.Reason != catalog.ReasonPaymentDeclined {
					t.Errorf("got %s %q, want CANCELLED payment_declined", o.Status, o.Reason)
				}
			})
			t.Run("CancelCommandCancelsOnce", func(t *testing.T) {
				f := sagaFixture(t, b)
				mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
				for range 2 {
					mustHandle(t, f, catalog.SubjectCancelOrder, cancelBody("order-1", "c-1"))
				}
				if o := f.order(t, "order-1"); o.Status != orders.Cancelled || o.Reason != catalog.ReasonCustomerCancelled {
					t.Errorf("got %s %q, want CANCELLED customer_cancelled", o.Status, o.Reason)
				}
				if n := countPrefix(f.subjects(t), "orders.cancelled."); n != 1 {
					t.Errorf("orders.cancelled events: %d, want 1", n)
				}
			})
			t.Run("CancelAfterConfirmationIsRejected", func(t *testing.T) {
				f := sagaFixture(t, b)
				mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
				mustHandle(t, f, "payments.captured.order-1", captured(t, "cap-1", "order-1"))
				// Over NATS: acked, answered with orders.cancel_rejected.
				mustHandle(t, f, catalog.SubjectCancelOrder, cancelBody("order-1", "c-1"))
				if n := countPrefix(f.subjects(t), "orders.cancel_rejected."); n != 1 {
					t.Errorf("orders.cancel_rejected events: %d, want 1", n)
				}
				// Directly (the HTTP path): a Conflict.
				_, err := f.svc.Cancel(ctx, inbox.Key{}, "order-1")
				if !errors.Is(err, orders.ErrNotCancellable) || events.KindOf(err) != events.KindConflict {
					t.Errorf("Cancel: got %v, want a Conflict wrapping ErrNotCancellable", err)
				}
				if o := f.order(t, "order-1"); o.Status != orders.Confirmed {
					t.Errorf("status: got %s, want CONFIRMED", o.Status)
				}
			})
			t.Run("CancelOfAnUnknownOrderIsRetriedThenDeadLettered", func(t *testing.T) {
				f := sagaFixture(t, b)
				err := f.handle(ctx, catalog.SubjectCancelOrder, cancelBody("nope", "c-1"), nil)
				if err == nil || events.IsPermanent(err) || !errors.Is(err, orders.ErrNotFound) {
					t.Errorf("NATS: got %v, want a retryable error wrapping ErrNotFound (the place may be in flight)", err)
				}
				_, err = f.svc.Cancel(ctx, inbox.Key{}, "nope")
				if events.KindOf(err) != events.KindNotFound {
					t.Errorf("direct: got %v, want NotFound", err)
				}
				if n := len(f.subjects(t)); n != 0 {
					t.Errorf("outbox: %d events, want none", n)
				}
			})
		})
	}
}

func mustHandle(t *testing.T, f *fixture, subject string, body []byte) {
	t.Helper()
	if err := f.handle(context.Background(), subject, body, nil); err != nil {
		t.Fatalf("handle %s: %v", subject, err)
	}
}

func countPrefix(subjects []string, prefix string) int {
	n := 0
	for _, s := range subjects {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func deadlineBody(t *testing.T, orderID string) []byte {
	return cloudEvent(t, events.DerivedID(orderID, "orders.deadline_scheduled"), catalog.TypeOrderDeadline,
		catalog.Source(catalog.Orders), catalog.OrderDeadline{OrderID: orderID, Deadline: t0.Add(time.Minute)})
}

func declinedBody(t *testing.T, orderID string) []byte {
	return cloudEvent(t, "decl-"+orderID, catalog.TypePaymentDeclined, catalog.Source(catalog.Payments),
		catalog.PaymentDeclined{OrderID: orderID, Reason: "card_declined"})
}

func reservedBody(t *testing.T, orderID string) []byte {
	return cloudEvent(t, "res-"+orderID, catalog.TypeStockReserved, catalog.Source(catalog.Inventory),
		catalog.StockReserved{OrderID: orderID, Items: []catalog.StockLine{{SKU: "SKU-1", Quantity: 2}}})
}

func failedBody(t *testing.T, orderID string) []byte {
	return cloudEvent(t, "fail-"+orderID, catalog.TypeStockReservationFailed, catalog.Source(catalog.Inventory),
		catalog.StockReservationFailed{OrderID: orderID, Reason: catalog.ReasonOutOfStock})
}

// TestOrderIndependence is the property behind the saga: after the place,
// a random permutation of an order's other inputs, each possibly
// delivered more than once, ends in the state that input set determines
// and emits the same events as the in-order, duplicate-free run. Where two
// inputs race for the decision (a capture against a deadline or a cancel)
// whichever comes first wins, and the order still ends once, with one
// final event. 2 × 100 cases; rapid prints the seed of a failure.
func TestOrderIndependence(t *testing.T) {
	f := sagaFixture(t, sqltest.Backends()[0])
	type input struct {
		subject string
		body    func(id string) []byte
	}
	in := map[string]input{
		"reserved": {"inventory.reserved.", func(id string) []byte { return reservedBody(t, id) }},
		"failed":   {"inventory.reservation_failed.", func(id string) []byte { return failedBody(t, id) }},
		"captured": {"payments.captured.", func(id string) []byte { return captured(t, "cap-"+id, id) }},
		"declined": {"payments.declined.", func(id string) []byte { return declinedBody(t, id) }},
		"deadline": {"orders.deadline.", func(id string) []byte { return deadlineBody(t, id) }},
		"cancel":   {catalog.SubjectCancelOrder, func(id string) []byte { return cancelBody(id, "c-"+id) }},
	}
	forged := map[string]input{
		"1-cent capture": {"payments.captured.", func(id string) []byte {
			return cloudEvent(t, "forged-cap-"+id, catalog.TypePaymentCaptured, catalog.Source(catalog.Payments),
				catalog.PaymentCaptured{OrderID: id, PaymentID: "p", Amount: catalog.Money{Amount: 1, Currency: "EUR"}})
		}},
		"capture in another currency": {"payments.captured.", func(id string) []byte {
			return cloudEvent(t, "forged-usd-"+id, catalog.TypePaymentCaptured, catalog.Source(catalog.Payments),
				catalog.PaymentCaptured{OrderID: id, PaymentID: "p", Amount: catalog.Money{Amount: 3098, Currency: "USD"}})
		}},
		"capture from another source": {"payments.captured.", func(id string) []byte {
			return cloudEvent(t, "forged-src-"+id, catalog.TypePaymentCaptured, catalog.Source(catalog.Inventory),
				catalog.PaymentCaptured{OrderID: id, PaymentID: "p", Amount: catalog.Money{Amount: 3098, Currency: "EUR"}})
		}},
		"early deadline": {"orders.deadline.", func(id string) []byte {
			return cloudEvent(t, "forged-dl-"+id, catalog.TypeOrderDeadline, catalog.Source(catalog.Orders),
				catalog.OrderDeadline{OrderID: id, Deadline: t0})
		}},
	}
	scenarios := []struct {
		inputs     []string
		status     orders.Status
		reason     string // "" when the first decisive input decides
		raceWinner map[string]string
	}{
		{inputs: []string{"reserved", "captured"}, status: orders.Confirmed},
		{inputs: []string{"failed"}, status: orders.Cancelled, reason: catalog.ReasonOutOfStock},
		{inputs: []string{"reserved", "declined"}, status: orders.Cancelled, reason: catalog.ReasonPaymentDeclined},
		{inputs: []string{"deadline"}, status: orders.Cancelled, reason: catalog.ReasonTimeout},
		{inputs: []string{"cancel"}, status: orders.Cancelled, reason: catalog.ReasonCustomerCancelled},
		// Races: the first decisive input wins.
		{inputs: []string{"reserved", "captured", "deadline"}},
		{inputs: []string{"reserved", "captured", "cancel"}},
		{inputs: []string{"failed", "deadline", "cancel"}},
	}
	decides := map[string]struct {
		status orders.Status
		reason string
	}{
		"captured": {orders.Confirmed, ""}, "failed": {orders.Cancelled, catalog.ReasonOutOfStock},
		"declined": {orders.Cancelled, catalog.ReasonPaymentDeclined}, "deadline": {orders.Cancelled, catalog.ReasonTimeout},
		"cancel": {orders.Cancelled, catalog.ReasonCustomerCancelled},
	}
	n := 0
	property := func(rt *rapid.T) {
		n++
		sc := scenarios[rapid.IntRange(0, len(scenarios)-1).Draw(rt, "scenario")]
		id := fmt.Sprintf("prop-%d", n)
		var deliveries []string
		for _, name := range sc.inputs {
			for range rapid.IntRange(1, 3).Draw(rt, "copies of "+name) {
				deliveries = append(deliveries, name)
			}
		}
		// Forgeries land anywhere among them: each is dead-lettered
		// (Permanent) and changes nothing, whatever came before.
		for range rapid.IntRange(0, 2).Draw(rt, "forgeries") {
			deliveries = append(deliveries, rapid.SampledFrom(slices.Sorted(maps.Keys(forged))).Draw(rt, "forgery"))
		}
		order := rapid.Permutation(deliveries).Draw(rt, "arrival order")
		body, _ := json.Marshal(validPlace(id))
		f.clock = t0
		mustHandle(t, f, catalog.SubjectPlaceOrder, body)
		for _, name := range order {
			if name == "deadline" {
				f.clock = t0.Add(time.Minute) // it fires when it is due
			}
			if fg, ok := forged[name]; ok {
				if err := f.handle(context.Background(), fg.subject+id, fg.body(id), nil); !events.IsPermanent(err) {
					rt.Fatalf("%s: got %v, want it dead-lettered (a permanent error)", name, err)
				}
				continue
			}
			subject := in[name].subject
			if !strings.HasPrefix(subject, "cmd.") {
				subject += id
			}
			if err := f.handle(context.Background(), subject, in[name].body(id), nil); err != nil {
				rt.Fatalf("%s: %v", name, err)
			}
		}
		o := f.order(t, id)
		want := decides[firstDecisive(order, decides)]
		if sc.status != "" {
			want.status, want.reason = sc.status, sc.reason
		}
		if o.Status != want.status || o.Reason != want.reason {
			rt.Fatalf("arrivals %v: got %s %q, want %s %q", order, o.Status, o.Reason, want.status, want.reason)
		}
		var finals int
		for _, s := range f.subjects(t) {
			if strings.HasSuffix(s, "."+id) && (strings.HasPrefix(s, "orders.confirmed.") || strings.HasPrefix(s, "orders.cancelled.")) {
				finals++
			}
		}
		if finals != 1 {
			rt.Fatalf("arrivals %v: %d final events, want exactly 1", order, finals)
		}
	}
	for i := range 2 {
		t.Run(fmt.Sprint("batch", i), func(t *testing.T) { rapid.Check(t, property) })
	}
	if n < 200 {
		t.Errorf("ran %d cases, want at least 200", n)
	}
}

func firstDecisive(order []string, decides map[string]struct {
	status orders.Status
	reason string
}) string {
	for _, name := range order {
		if _, ok := decides[name]; ok {
			return name
		}
	}
	return ""
}

// SweepDeadlines is the safety net behind a scheduled deadline the stream
// lost: an order pending past its deadline and the grace is cancelled with
// reason timeout and withdraws its schedule; a younger pending order and a
// final one are left alone; a second sweep changes nothing.
func TestSweepDeadlines(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, b)
			now := t0
			svc, err := orders.New(orders.Config{Store: f.store, Now: func() time.Time { return now }, Deadline: time.Minute, DeadlineGrace: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			f.svc = svc
			place := func(id string) {
				t.Helper()
				body, _ := json.Marshal(catalog.PlaceOrder{OrderID: id, CustomerID: "c", Currency: "EUR",
					Items: []catalog.LineItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 3098}}}) // the total captured(…) pays
				mustHandle(t, f, catalog.SubjectPlaceOrder, body)
			}
			place("old-pending")
			place("old-confirmed")
			mustHandle(t, f, "payments.captured.old-confirmed", captured(t, "cap-x", "old-confirmed"))
			now = t0.Add(time.Minute + 20*time.Second)
			place("young-pending")
			if n, err := svc.SweepDeadlines(ctx); err != nil || n != 0 {
				t.Fatalf("sweep within the grace: got (%d, %v), want (0, nil)", n, err)
			}
			now = t0.Add(time.Minute + 31*time.Second)
			if n, err := svc.SweepDeadlines(ctx); err != nil || n != 1 {
				t.Fatalf("sweep past the grace: got (%d, %v), want (1, nil)", n, err)
			}
			if o := f.order(t, "old-pending"); o.Status != orders.Cancelled || o.Reason != catalog.ReasonTimeout {
				t.Errorf("overdue order: got %s %q, want CANCELLED timeout", o.Status, o.Reason)
			}
			if o := f.order(t, "young-pending"); o.Status != orders.Pending {
				t.Errorf("young order: got %s, want PENDING", o.Status)
			}
			if o := f.order(t, "old-confirmed"); o.Status != orders.Confirmed {
				t.Errorf("confirmed order: got %s, want CONFIRMED", o.Status)
			}
			rows := f.outbox(t)
			last := rows[len(rows)-1]
			if last.Subject != "orders.cancelled.old-pending" || last.Headers["Nats-Scheduler"] != "schedules.orders.deadline.old-pending" {
				t.Errorf("last event: %s %v, want orders.cancelled.old-pending withdrawing its schedule", last.Subject, last.Headers)
			}
			if n, err := svc.SweepDeadlines(ctx); err != nil || n != 0 {
				t.Errorf("second sweep: got (%d, %v), want (0, nil)", n, err)
			}
		})
	}
}

// Forged events are checked, not believed: each is refused as Permanent
// (the consumer dead-letters it with the reason) and changes nothing —
// the order stays PENDING and nothing is added to the outbox.
func TestForgedEventsChangeNothing(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range []struct {
				name, subject string
				clock         time.Duration // since the order was placed
				noDeadlines   bool
				body          func(t *testing.T) []byte
				wantReason    string
			}{
				{"OneCentCapture", "payments.captured.order-1", 0, false, func(t *testing.T) []byte {
					return cloudEvent(t, "forged-1", catalog.TypePaymentCaptured, catalog.Source(catalog.Payments),
						catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "p", Amount: catalog.Money{Amount: 1, Currency: "EUR"}})
				}, "capture p of 1 EUR, total 3098 EUR"},
				{"CaptureInAnotherCurrency", "payments.captured.order-1", 0, false, func(t *testing.T) []byte {
					return cloudEvent(t, "forged-2", catalog.TypePaymentCaptured, catalog.Source(catalog.Payments),
						catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "p", Amount: catalog.Money{Amount: 3098, Currency: "USD"}})
				}, "total 3098 EUR"},
				{"CaptureFromOrders", "payments.captured.order-1", 0, false, func(t *testing.T) []byte {
					return cloudEvent(t, "forged-3", catalog.TypePaymentCaptured, catalog.Source(catalog.Orders),
						catalog.PaymentCaptured{OrderID: "order-1", PaymentID: "p", Amount: catalog.Money{Amount: 3098, Currency: "EUR"}})
				}, `source "/choreo/orders", want "/choreo/payments"`},
				{"DeadlineBeforeItsTime", "orders.deadline.order-1", 30 * time.Second, false, func(t *testing.T) []byte {
					return deadlineBody(t, "order-1") // names placed + 1m, arrives at placed + 30s
				}, "before its time"},
				{"DeadlineEarlierThanScheduled", "orders.deadline.order-1", time.Minute, false, func(t *testing.T) []byte {
					return cloudEvent(t, "forged-4", catalog.TypeOrderDeadline, catalog.Source(catalog.Orders),
						catalog.OrderDeadline{OrderID: "order-1", Deadline: t0.Add(10 * time.Second)})
				}, "with a 1m0s deadline"},
				{"DeadlineWhereNoneIsScheduled", "orders.deadline.order-1", time.Hour, true, func(t *testing.T) []byte {
					return deadlineBody(t, "order-1")
				}, "orders schedules no deadlines"},
				{"DeadlineFromPayments", "orders.deadline.order-1", time.Minute, false, func(t *testing.T) []byte {
					return cloudEvent(t, "forged-5", catalog.TypeOrderDeadline, catalog.Source(catalog.Payments),
						catalog.OrderDeadline{OrderID: "order-1", Deadline: t0.Add(time.Minute)})
				}, `source "/choreo/payments"`},
			} {
				t.Run(tc.name, func(t *testing.T) {
					f := sagaFixture(t, b)
					if tc.noDeadlines {
						f = newFixture(t, b)
						f.clock = t0
						svc, err := orders.New(orders.Config{Store: f.store, Now: func() time.Time { return f.clock }})
						if err != nil {
							t.Fatal(err)
						}
						f.svc = svc
					}
					mustHandle(t, f, catalog.SubjectPlaceOrder, []byte(placeBody))
					before := f.subjects(t)
					f.clock = t0.Add(tc.clock)
					err := f.handle(context.Background(), tc.subject, tc.body(t), nil)
					if !events.IsPermanent(err) || !strings.Contains(err.Error(), tc.wantReason) {
						t.Fatalf("got %v, want a permanent error (a dead letter) saying %s", err, tc.wantReason)
					}
					if o := f.order(t, "order-1"); o.Status != orders.Pending {
						t.Errorf("order: got %s %q, want PENDING", o.Status, o.Reason)
					}
					if after := f.subjects(t); !slices.Equal(after, before) {
						t.Errorf("outbox: got %v, want %v (nothing added)", after, before)
					}
				})
			}
		})
	}
}
