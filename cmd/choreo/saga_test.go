package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/sagacheck"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// setProviderMode switches the payment provider simulator's outage mode
// through its admin endpoint, as an operator would.
func setProviderMode(t *testing.T, c *runningChoreo, mode string, extra map[string]any) {
	t.Helper()
	body := map[string]any{"mode": mode}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(c.providerURL+"/admin/mode", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST /admin/mode %s: status %d", b, resp.StatusCode)
	}
}

func placeOrder(t *testing.T, c *runningChoreo, id, customer, sku string, qty int64) {
	t.Helper()
	b, _ := json.Marshal(catalog.PlaceOrder{OrderID: id, CustomerID: customer, Currency: "EUR",
		Items: []catalog.LineItem{{SKU: sku, Quantity: qty, UnitPrice: 1000}}})
	resp, err := http.Post(c.httpURL+"/orders", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /orders %s: status %d", id, resp.StatusCode)
	}
}

func cancelOrder(t *testing.T, c *runningChoreo, id string) int {
	t.Helper()
	resp, err := http.Post(c.httpURL+"/orders/"+id+"/cancel", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFinal(t *testing.T, ctx context.Context, c *runningChoreo, id string) orderView {
	t.Helper()
	var o orderView
	waitFor(t, ctx, "order "+id+" final", func() (bool, string) {
		o = getOrder(t, c, id)
		return o.Status == catalog.StatusConfirmed || o.Status == catalog.StatusCancelled, o.Status
	})
	return o
}

// money returns what the payments service captured and refunded for an
// order, read from the PAYMENTS stream.
func money(t *testing.T, ctx context.Context, js jetstream.JetStream, orderID string) (captured, refunded int64) {
	t.Helper()
	s, err := js.Stream(ctx, catalog.StreamPayments)
	if err != nil {
		t.Fatal(err)
	}
	amount := func(subject string) int64 {
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return 0
		}
		amount, err := sagacheck.EventAmount(m.Data)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return amount
	}
	return amount("payments.captured." + orderID), amount("payments.refunded." + orderID)
}

// settled waits until the order's money and notifications have settled:
// payments reached its terminal status for the order's final state,
// captured − refunded (read from the PAYMENTS stream) is the total for a
// confirmed order and 0 otherwise, and the customer was told once.
func settled(t *testing.T, ctx context.Context, c *runningChoreo, js jetstream.JetStream, id string, total int64) {
	t.Helper()
	waitFor(t, ctx, "order "+id+" settled", func() (bool, string) {
		o := getOrder(t, c, id)
		var p struct {
			Status string `json:"status"`
		}
		getJSON(t, c.httpURL+"/payments/"+id, &p)
		terminal := map[string]bool{"REFUNDED": true, "VOIDED": true, "DECLINED": true}
		want := int64(0)
		if o.Status == catalog.StatusConfirmed {
			want = total
			terminal = map[string]bool{"CAPTURED": true}
		}
		cap, ref := money(t, ctx, js, id)
		pcap, pref := providerMoney(t, c, id)
		sent, _ := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent."+id)
		return terminal[p.Status] && pcap-pref == want && cap-ref == want && sent["notifications.sent."+id] == 1,
			fmt.Sprintf("%s, payment %s: provider captured %d refunded %d, events captured %d refunded %d, want net %d; notified %v",
				o.Status, p.Status, pcap, pref, cap, ref, want, sent)
	})
}

// providerMoney returns what the provider captured and refunded under the
// order's idempotency key: the money that really moved.
func providerMoney(t *testing.T, c *runningChoreo, key string) (captured, refunded int64) {
	t.Helper()
	moved, err := sagacheck.ProviderMoney(context.Background(), http.DefaultClient, c.providerURL)
	if err != nil {
		t.Fatal(err)
	}
	return moved[key][0], moved[key][1]
}

// providerHolds reports whether the simulator has charged the key.
func providerHolds(t *testing.T, c *runningChoreo, key string) bool {
	t.Helper()
	var states []struct {
		Key    string `json:"key"`
		Status string `json:"status"`
	}
	getJSON(t, c.providerURL+"/admin/captures", &states)
	for _, s := range states {
		if s.Key == key && s.Status == "captured" {
			return true
		}
	}
	return false
}

func wantOrder(t *testing.T, o orderView, status, reason string) {
	t.Helper()
	if o.Status != status || o.Reason != reason {
		t.Errorf("order %s: got %s %q, want %s %q", o.OrderID, o.Status, o.Reason, status, reason)
	}
}

func wantStock(t *testing.T, ctx context.Context, c *runningChoreo, sku string, available, reserved, sold int64) {
	t.Helper()
	waitFor(t, ctx, sku+" stock", func() (bool, string) {
		s := getStock(t, c, sku)
		return s.Available == available && s.Reserved == reserved && s.Sold == sold, fmt.Sprintf("%+v", s)
	})
}

// TestEverySagaPath drives one order down each path of PRODUCT.md's saga
// and checks its final state, reason, money and stock.
func TestEverySagaPath(t *testing.T) {
	c := startUp(t, "--order-timeout", "4s")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)

	var (
		confirmedID     string
		confirmedPlaced time.Time
	)
	t.Run("Confirmed", func(t *testing.T) {
		restock(t, ctx, js, "SKU-OK", 5)
		id := events.NewID()
		confirmedID, confirmedPlaced = id, time.Now()
		placeOrder(t, c, id, "cust-1", "SKU-OK", 2)
		wantOrder(t, waitFinal(t, ctx, c, id), catalog.StatusConfirmed, "")
		settled(t, ctx, c, js, id, 2000)
		wantStock(t, ctx, c, "SKU-OK", 3, 0, 2)
		if code := cancelOrder(t, c, id); code != http.StatusConflict {
			t.Errorf("cancel after confirmation: status %d, want 409", code)
		}
	})
	t.Run("OutOfStock", func(t *testing.T) {
		restock(t, ctx, js, "SKU-FEW", 1)
		id := events.NewID()
		placeOrder(t, c, id, "cust-1", "SKU-FEW", 2)
		wantOrder(t, waitFinal(t, ctx, c, id), catalog.StatusCancelled, catalog.ReasonOutOfStock)
		settled(t, ctx, c, js, id, 2000)
		wantStock(t, ctx, c, "SKU-FEW", 1, 0, 0)
	})
	t.Run("PaymentDeclined", func(t *testing.T) {
		restock(t, ctx, js, "SKU-DEC", 5)
		id := events.NewID()
		placeOrder(t, c, id, "decline-cust", "SKU-DEC", 2)
		wantOrder(t, waitFinal(t, ctx, c, id), catalog.StatusCancelled, catalog.ReasonPaymentDeclined)
		settled(t, ctx, c, js, id, 2000)
		wantStock(t, ctx, c, "SKU-DEC", 5, 0, 0) // the reservation was released
	})
	t.Run("CustomerCancelWhileTheCaptureIsInFlight", func(t *testing.T) {
		// A slow provider holds the capture; the customer cancels; the
		// capture lands after the cancellation and is refunded (or never
		// made, the key voided).
		restock(t, ctx, js, "SKU-CAN", 5)
		setProviderMode(t, c, "slow", map[string]any{"latency": "1500ms"})
		id := events.NewID()
		placeOrder(t, c, id, "cust-1", "SKU-CAN", 2)
		// Slow mode charges at once and holds the answer back: once the
		// provider holds the charge, the capture is in flight.
		waitFor(t, ctx, "the charge at the provider", func() (bool, string) { return providerHolds(t, c, id), "" })
		if code := cancelOrder(t, c, id); code != http.StatusOK {
			t.Fatalf("cancel: status %d, want 200", code)
		}
		setProviderMode(t, c, "normal", nil)
		wantOrder(t, waitFinal(t, ctx, c, id), catalog.StatusCancelled, catalog.ReasonCustomerCancelled)
		settled(t, ctx, c, js, id, 2000)
		wantStock(t, ctx, c, "SKU-CAN", 5, 0, 0)
	})
	t.Run("CustomerCancelOverNATS", func(t *testing.T) {
		restock(t, ctx, js, "SKU-NC", 5)
		setProviderMode(t, c, "down", nil)
		id := events.NewID()
		placeOrder(t, c, id, "cust-1", "SKU-NC", 1)
		if _, err := js.Publish(ctx, catalog.SubjectCancelOrder, []byte(`{"command_id":"cancel-`+id+`","order_id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
		wantOrder(t, waitFinal(t, ctx, c, id), catalog.StatusCancelled, catalog.ReasonCustomerCancelled)
		setProviderMode(t, c, "normal", nil)
		settled(t, ctx, c, js, id, 1000)
		wantStock(t, ctx, c, "SKU-NC", 5, 0, 0)
	})
	t.Run("DeadlineWhileTheProviderIsDown", func(t *testing.T) {
		restock(t, ctx, js, "SKU-TO", 5)
		setProviderMode(t, c, "down", nil)
		id := events.NewID()
		placeOrder(t, c, id, "cust-1", "SKU-TO", 2)
		wantOrder(t, waitFinal(t, ctx, c, id), catalog.StatusCancelled, catalog.ReasonTimeout)
		setProviderMode(t, c, "normal", nil)
		settled(t, ctx, c, js, id, 2000)
		wantStock(t, ctx, c, "SKU-TO", 5, 0, 0)
		// The outage never dead-lettered anything.
		if dl, _ := countSubjects(ctx, js, catalog.StreamDLQ, "dlq.>"); len(dl) != 0 {
			t.Errorf("dead letters %v, want none: an outage is retried, not dead-lettered", dl)
		}
	})
	// A final order's deadline is withdrawn with its final event: once the
	// confirmed order's deadline is well past, it has not fired, and no
	// order has a schedule left; only the pending order's deadline fired.
	t.Run("ADeadlineFiresOnlyForAPendingOrder", func(t *testing.T) {
		if confirmedID == "" {
			t.Skip("the confirmed order's subtest did not run")
		}
		time.Sleep(time.Until(confirmedPlaced.Add(4*time.Second + 3*time.Second)))
		fired, err := countSubjects(ctx, js, catalog.StreamOrders, "orders.deadline.>")
		if err != nil {
			t.Fatal(err)
		}
		if len(fired) != 1 || fired["orders.deadline."+confirmedID] != 0 {
			t.Errorf("deadlines fired: %v, want exactly one (the order that timed out), none for %s", fired, confirmedID)
		}
		if left, _ := countSubjects(ctx, js, catalog.StreamOrders, catalog.SchedulePrefix+".>"); len(left) != 0 {
			t.Errorf("schedules left: %v, want none once every order is final", left)
		}
	})
}

func TestRandomizedSagasSQLite(t *testing.T) {
	runRandomizedSagas(t, startUp(t, "--order-timeout", "3s"))
}

func TestRandomizedSagasPostgres(t *testing.T) {
	base := sqltest.RequirePostgres(t)
	runRandomizedSagas(t, startUp(t, "--order-timeout", "3s", "--db", freshPostgresDatabase(t, base)))
}

type plannedOrder struct {
	id, customer, sku string
	qty               int64
	cancelAfter       time.Duration // < 0: never cancelled by the customer
}

// runRandomizedSagas places 500 orders over a few SKUs with scarce stock —
// random customer cancels at random moments, random declines, restocks
// while orders flow, a provider outage and then a slow provider in the
// middle — and checks every invariant of PRODUCT.md once it is quiet.
func runRandomizedSagas(t *testing.T, c *runningChoreo) {
	const n = 500
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, c.natsURL)

	skus := []string{"SKU-A", "SKU-B", "SKU-C"}
	received := map[string]int64{}
	restocks := 0
	addStock := func(sku string, q int64) {
		restocks++ // a command id of its own: the same id twice is one restock
		body := fmt.Sprintf(`{"command_id":"random-restock-%d","sku":%q,"quantity":%d}`, restocks, sku, q)
		if _, err := js.Publish(ctx, catalog.SubjectRestock, []byte(body)); err != nil {
			t.Fatal(err)
		}
		received[sku] += q
	}
	for _, sku := range skus {
		addStock(sku, 100)
	}
	plan := make([]plannedOrder, n)
	for i := range plan {
		p := plannedOrder{id: events.NewID(), customer: fmt.Sprintf("cust-%d", rng.IntN(50)), sku: skus[rng.IntN(len(skus))],
			qty: int64(1 + rng.IntN(3)), cancelAfter: -1}
		if rng.IntN(10) == 0 {
			p.customer = fmt.Sprintf("decline-%d", i)
		}
		if rng.IntN(6) == 0 {
			p.cancelAfter = time.Duration(rng.IntN(1500)) * time.Millisecond
		}
		plan[i] = p
	}

	var wg sync.WaitGroup
	start := time.Now()
	for i, p := range plan {
		switch i {
		case n / 4:
			setProviderMode(t, c, "down", nil)
		case n / 3:
			setProviderMode(t, c, "slow", map[string]any{"latency": "800ms"})
		case n / 2:
			setProviderMode(t, c, "normal", nil)
		}
		if i%50 == 25 { // restocks while orders flow
			addStock(skus[rng.IntN(len(skus))], 40)
		}
		wg.Go(func() {
			if i%2 == 0 {
				placeOrder(t, c, p.id, p.customer, p.sku, p.qty)
			} else {
				b, _ := json.Marshal(catalog.PlaceOrder{OrderID: p.id, CustomerID: p.customer, Currency: "EUR",
					Items: []catalog.LineItem{{SKU: p.sku, Quantity: p.qty, UnitPrice: 1000}}})
				if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, b); err != nil {
					t.Error(err)
				}
			}
			if p.cancelAfter >= 0 {
				time.Sleep(p.cancelAfter)
				if i%2 == 0 {
					if code := cancelOrder(t, c, p.id); code != http.StatusOK && code != http.StatusConflict && code != http.StatusNotFound {
						t.Errorf("cancel %s: status %d", p.id, code)
					}
				} else if _, err := js.Publish(ctx, catalog.SubjectCancelOrder, []byte(`{"command_id":"c-`+p.id+`","order_id":"`+p.id+`"}`)); err != nil {
					t.Error(err)
				}
			}
		})
		time.Sleep(8 * time.Millisecond) // a steady flow, so the outage hits orders in flight
	}
	wg.Wait()
	setProviderMode(t, c, "normal", nil)
	t.Logf("placed %d orders in %s", n, time.Since(start).Round(time.Millisecond))
	checkInvariants(t, ctx, c, js, plan, received)
}

// checkInvariants waits until the system is quiet, then checks every
// invariant of PRODUCT.md with the checker the chaos test uses
// (internal/sagacheck). A customer whose id starts with "decline" is one
// the provider declines.
func checkInvariants(t *testing.T, ctx context.Context, c *runningChoreo, js jetstream.JetStream, plan []plannedOrder, received map[string]int64) {
	t.Helper()
	// Quiescence, then every invariant.
	checked := make([]sagacheck.Order, len(plan))
	for i, p := range plan {
		checked[i] = sagacheck.Order{ID: p.id, Customer: p.customer, SKU: p.sku, Qty: p.qty, UnitPrice: 1000, CancelAsked: p.cancelAfter >= 0}
	}
	report, err := c.system(js).Settle(ctx, checked, received)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outcomes: %v", report.Outcomes)
	for _, v := range report.Violations {
		t.Error(v)
	}
}
