package payments_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/provider"
	"github.com/choreo-dev/choreo/payments/provider/simulator"
)

// TestWithSimulator runs the service against the provider simulator
// through the real HTTP client, breaker and all: the provider as it is
// deployed, rather than a fake of it.
func TestWithSimulator(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("DeclineRulePublishesDeclined", func(t *testing.T) { testSimulatorDecline(t, b) })
			t.Run("CancelAfterCaptureRefunds", func(t *testing.T) { testSimulatorRefund(t, b) })
			t.Run("OutageIsUnavailableThenCancelVoids", func(t *testing.T) { testSimulatorOutage(t, b) })
		})
	}
}

// simulated is a simulator and a payments service calling it over HTTP,
// on a harness's store.
type simulated struct {
	*harness
	sim    *simulator.Server
	url    string
	client *provider.HTTP
}

func newSimulated(t *testing.T, b sqltest.Backend, cfg simulator.Config) *simulated {
	t.Helper()
	s := &simulated{harness: newHarness(t, b), sim: simulator.New(cfg)}
	srv := httptest.NewServer(s.sim)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	s.restart(t)
	return s
}

// restart gives the service a new provider client, as a restarted
// replica has: its circuit breaker closed.
func (s *simulated) restart(t *testing.T) {
	t.Helper()
	client, err := provider.NewHTTP(provider.HTTPConfig{BaseURL: s.url, BreakerFailures: 2, BreakerOpenTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := payments.New(payments.Config{Store: s.store, Provider: client, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	s.client, s.svc = client, svc
}

func testSimulatorDecline(t *testing.T, b sqltest.Backend) {
	s := newSimulated(t, b, simulator.Config{DeclineOverAmount: 1000, Seed: 1})
	s.mustHandle(t, placedMsg(t, "order-1"))
	s.mustHandle(t, reservedMsg(t, "order-1"))
	s.mustHandle(t, placedMsg(t, "order-1"))
	if p := s.mustGet(t, "order-1"); p.Status != payments.Declined || p.DeclineReason != simulator.ReasonAmountOverLimit {
		t.Errorf("payment: got %s %q, want DECLINED %q", p.Status, p.DeclineReason, simulator.ReasonAmountOverLimit)
	}
	got := eventData[catalog.PaymentDeclined](t, s.db, "order-1", catalog.EventDeclined)
	if want := (catalog.PaymentDeclined{OrderID: "order-1", Reason: simulator.ReasonAmountOverLimit}); got != want {
		t.Errorf("payments.declined: got %+v, want %+v", got, want)
	}
	if st := s.sim.Stats(); st.Declines != 1 || st.Captures != 0 {
		t.Errorf("simulator: got %d declines %d captures, want 1 and 0", st.Declines, st.Captures)
	}
}

func testSimulatorRefund(t *testing.T, b sqltest.Backend) {
	s := newSimulated(t, b, simulator.Config{Seed: 1})
	s.mustHandle(t, placedMsg(t, "order-1"))
	s.mustHandle(t, reservedMsg(t, "order-1"))
	cancelled := cancelledMsg(t, "order-1", catalog.ReasonCustomerCancelled)
	s.mustHandle(t, cancelled)
	s.mustHandle(t, cancelled)
	if got := eventNames(t, s.db, "order-1"); len(got) != 2 || got[0] != catalog.EventCaptured || got[1] != catalog.EventRefunded {
		t.Errorf("events: got %v, want [captured refunded]", got)
	}
	st, ok := s.sim.State("order-1")
	if !ok || st.Status != simulator.StatusRefunded || st.Captured != eur1200 || st.Refunded != eur1200 {
		t.Errorf("simulator: got %+v, want refunded 1200 of 1200", st)
	}
	all, err := s.store.Money(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m := all["order-1"]; m.Captured != 1200 || m.Refunded != 1200 {
		t.Errorf("money: got %+v, want 1200 captured and refunded", m)
	}
	if p := s.mustGet(t, "order-1"); p.Status != payments.Refunded || p.PaymentID != st.PaymentID {
		t.Errorf("payment: got %s %q, want REFUNDED %q", p.Status, p.PaymentID, st.PaymentID)
	}
}

// testSimulatorOutage: while the provider is down, every delivery fails
// as unavailable (5xx first, then the open breaker, which no longer
// calls the provider at all), and the payment stays pending. The deadline
// cancels the order during the outage; once the provider is back, the
// cancellation voids the key, and nothing is ever charged.
func testSimulatorOutage(t *testing.T, b sqltest.Backend) {
	s := newSimulated(t, b, simulator.Config{Seed: 1})
	ctx := context.Background()
	if err := s.sim.SetMode(simulator.ModeConfig{Mode: simulator.ModeDown}); err != nil {
		t.Fatal(err)
	}
	s.mustHandle(t, placedMsg(t, "order-1"))
	reserved := reservedMsg(t, "order-1")
	for i := range 3 {
		err := s.svc.Handle(ctx, reserved)
		if events.KindOf(err) != events.KindUnavailable || events.IsPermanent(err) {
			t.Fatalf("delivery %d during the outage: got %v (kind %s), want kind unavailable", i+1, err, events.KindOf(err))
		}
		if i == 2 && !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("delivery 3: got %v, want the open breaker's provider.ErrUnavailable", err)
		}
	}
	if n := s.sim.Stats().Requests; n != 2 {
		t.Errorf("requests that reached the simulator: got %d, want 2 (then the breaker opened)", n)
	}
	cancelled := cancelledMsg(t, "order-1", catalog.ReasonTimeout)
	if err := s.svc.Handle(ctx, cancelled); events.KindOf(err) != events.KindUnavailable {
		t.Fatalf("cancelled during the outage: got %v (kind %s), want kind unavailable", err, events.KindOf(err))
	}
	if p := s.mustGet(t, "order-1"); p.Status != payments.CancelPending {
		t.Fatalf("payment during the outage: got %s, want CANCEL_PENDING", p.Status)
	}

	if err := s.sim.SetMode(simulator.ModeConfig{Mode: simulator.ModeNormal}); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	s.mustHandle(t, reserved)  // redelivered: settles the payment, which owes a cancel, not a capture
	s.mustHandle(t, cancelled) // redelivered: nothing left to do
	if p := s.mustGet(t, "order-1"); p.Status != payments.Voided {
		t.Errorf("payment: got %s, want VOIDED", p.Status)
	}
	if got := eventNames(t, s.db, "order-1"); len(got) != 1 || got[0] != catalog.EventVoided {
		t.Errorf("events: got %v, want [voided]", got)
	}
	// A capture a replica still had in flight is declined.
	res, err := s.client.Capture(ctx, payments.CaptureRequest{IdempotencyKey: "order-1", OrderID: "order-1",
		CustomerID: "cust-1", Amount: eur1200})
	if err != nil || !res.Declined || res.DeclineReason != payments.DeclineVoided {
		t.Errorf("late capture: got %+v %v, want declined %q", res, err, payments.DeclineVoided)
	}
	if st := s.sim.Stats(); st.Captures != 0 || st.Voids != 1 {
		t.Errorf("simulator: got %d captures %d voids, want 0 and 1", st.Captures, st.Voids)
	}
}
