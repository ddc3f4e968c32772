package provider_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/payments"
	"github.com/choreo-dev/choreo/payments/provider"
	"github.com/choreo-dev/choreo/payments/provider/simulator"
)

func mustSimulator(t testing.TB, cfg simulator.Config) *simulator.Listener {
	t.Helper()
	l, err := simulator.ListenAndServe(context.Background(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return l
}

func mustHTTP(t testing.TB, cfg provider.HTTPConfig) *provider.HTTP {
	t.Helper()
	h, err := provider.NewHTTP(cfg)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	return h
}

func mustMode(t testing.TB, l *simulator.Listener, m simulator.ModeConfig) {
	t.Helper()
	if err := l.SetMode(m); err != nil {
		t.Fatalf("SetMode(%+v): %v", m, err)
	}
}

// eventually polls cond until it holds, failing the test after a generous
// bound: it waits for something that is bound to happen, it does not time
// it.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestHTTPCaptureAndCancel(t *testing.T) {
	l := mustSimulator(t, simulator.Config{DeclineOverAmount: 100_00})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL + "/"})
	ctx := context.Background()

	t.Run("Captured", func(t *testing.T) {
		res, err := h.Capture(ctx, req("order-1", 1299))
		st, _ := l.State("order-1")
		if err != nil || res.Declined || res.PaymentID == "" || res.PaymentID != st.PaymentID {
			t.Fatalf("Capture: got %+v %v, want the simulator's payment %s", res, err, st.PaymentID)
		}
		if again, err := h.Capture(ctx, req("order-1", 1299)); err != nil || again != res {
			t.Errorf("repeat: got %+v %v, want %+v", again, err, res)
		}
		got, err := h.Cancel(ctx, cancelReq("order-1"))
		want := payments.CancelResult{Refunded: true, Amount: catalog.Money{Amount: 1299, Currency: "EUR"}, PaymentID: res.PaymentID}
		if err != nil || got != want {
			t.Errorf("Cancel: got %+v %v, want %+v", got, err, want)
		}
		if again, err := h.Cancel(ctx, cancelReq("order-1")); err != nil || again != want {
			t.Errorf("repeat Cancel: got %+v %v, want %+v", again, err, want)
		}
	})

	t.Run("Declined", func(t *testing.T) {
		for _, tt := range []struct {
			req    payments.CaptureRequest
			reason string
		}{
			{payments.CaptureRequest{IdempotencyKey: "order-2", OrderID: "order-2", CustomerID: "decline-7", Amount: catalog.Money{Amount: 5, Currency: "EUR"}}, simulator.ReasonCardDeclined},
			{req("order-3", 100_01), simulator.ReasonAmountOverLimit},
		} {
			res, err := h.Capture(ctx, tt.req)
			if err != nil || !res.Declined || res.DeclineReason != tt.reason || res.PaymentID != "" {
				t.Errorf("Capture(%s): got %+v %v, want declined %q", tt.req.IdempotencyKey, res, err, tt.reason)
			}
		}
	})

	t.Run("KeyNeedsEscaping", func(t *testing.T) {
		const key = "order/5 ?#%"
		r := payments.CaptureRequest{IdempotencyKey: key, OrderID: "order-5", CustomerID: "c", Amount: catalog.Money{Amount: 5, Currency: "EUR"}}
		if _, err := h.Capture(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := h.Cancel(ctx, payments.CancelRequest{IdempotencyKey: key, OrderID: "order-5"})
		if st, _ := l.State(key); err != nil || !got.Refunded || st.Status != simulator.StatusRefunded {
			t.Errorf("Cancel(%q): got %+v %v and state %+v, want refunded", key, got, err, st)
		}
	})

	t.Run("CancelFirstVoids", func(t *testing.T) {
		got, err := h.Cancel(ctx, cancelReq("order-4"))
		if err != nil || got != (payments.CancelResult{Voided: true}) {
			t.Fatalf("Cancel: got %+v %v, want voided", got, err)
		}
		res, err := h.Capture(ctx, req("order-4", 1299))
		if err != nil || !res.Declined || res.DeclineReason != payments.DeclineVoided {
			t.Errorf("Capture after cancel: got %+v %v, want declined %q", res, err, payments.DeclineVoided)
		}
	})

	st := l.Stats()
	if st.Captures != 2 || st.Declines != 3 || st.Refunds != 2 || st.Voids != 1 || st.CapturedTotal["EUR"] != 1304 || st.RefundedTotal["EUR"] != 1304 {
		t.Errorf("stats: got %+v, want 2 captures, 3 declines, 2 refunds, 1 void, 1304 EUR captured and refunded", st)
	}
}

func TestHTTPRefusedRequestIsStatusErrorNotBreakerFailure(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, BreakerFailures: 1, BreakerOpenTimeout: time.Hour})
	ctx := context.Background()
	if _, err := h.Capture(ctx, req("order-1", 1299)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := h.Capture(ctx, req("order-1", 1300)) // same key, another amount
		var se *provider.StatusError
		if !errors.As(err, &se) || se.StatusCode != 409 || !se.Permanent() || se.Detail == "" || errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Capture with a reused key: got %v, want a permanent 409 StatusError with the problem's detail", err)
		}
	}
	_, err := h.Capture(ctx, payments.CaptureRequest{IdempotencyKey: "order-2", OrderID: "order-2", Amount: catalog.Money{Amount: 1}})
	var se *provider.StatusError
	if !errors.As(err, &se) || se.StatusCode != 422 {
		t.Errorf("Capture without currency: got %v, want a 422 StatusError", err)
	}
	if got := h.BreakerState(); got != "closed" {
		t.Errorf("breaker: got %s, want closed", got)
	}
	if _, err := h.Capture(ctx, req("", 1)); !errors.Is(err, provider.ErrNoIdempotencyKey) {
		t.Errorf("no key: got %v, want ErrNoIdempotencyKey", err)
	}
	if _, err := h.Cancel(ctx, cancelReq("")); !errors.Is(err, provider.ErrNoIdempotencyKey) {
		t.Errorf("cancel without key: got %v, want ErrNoIdempotencyKey", err)
	}
}

func TestHTTPTimeoutThenRetryChargesOnce(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, Timeout: 100 * time.Millisecond})
	ctx := context.Background()
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeSlow, Latency: time.Hour})
	_, err := h.Capture(ctx, req("order-1", 1299))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("slow Capture: got %v, want a deadline error, not ErrUnavailable", err)
	}
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeNormal})
	res, err := h.Capture(ctx, req("order-1", 1299))
	st, _ := l.State("order-1")
	if err != nil || res.PaymentID == "" || res.PaymentID != st.PaymentID {
		t.Fatalf("retry: got %+v %v, want the simulator's payment %s", res, err, st.PaymentID)
	}
	if got := l.Stats(); got.Captures != 1 || got.CapturedTotal["EUR"] != 1299 {
		t.Errorf("stats: got %+v, want one capture of 1299 EUR", got)
	}
}

func TestHTTPBreakerOpensAndFailsFast(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, BreakerFailures: 3, BreakerOpenTimeout: time.Hour})
	ctx := context.Background()
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeDown})
	for i := range 3 {
		_, err := h.Capture(ctx, req("order-1", 1))
		var se *provider.StatusError
		if !errors.As(err, &se) || se.StatusCode != 503 || se.Permanent() || errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("call %d: got %v, want a 503 StatusError", i, err)
		}
	}
	if got := h.BreakerState(); got != "open" {
		t.Fatalf("breaker after 3 failures: got %s, want open", got)
	}
	hits := l.Stats().Requests
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeNormal}) // the breaker cannot know
	for range 5 {
		if _, err := h.Capture(ctx, req("order-1", 1)); !errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Capture with the breaker open: got %v, want ErrUnavailable", err)
		}
		if _, err := h.Cancel(ctx, cancelReq("order-1")); !errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Cancel with the breaker open: got %v, want ErrUnavailable", err)
		}
	}
	if got := l.Stats().Requests; got != hits {
		t.Errorf("server requests: got %d, want %d (none while open)", got, hits)
	}
	// The payments service tells an outage by its own sentinel.
	if _, err := h.Capture(ctx, req("order-1", 1)); !errors.Is(err, payments.ErrProviderUnavailable) {
		t.Errorf("Capture with the breaker open: got %v, want payments.ErrProviderUnavailable", err)
	}
}

func TestHTTPBreakerClosesWhenProviderIsBack(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, BreakerFailures: 2, BreakerOpenTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeError})
	for range 2 {
		if _, err := h.Capture(ctx, req("order-1", 1)); err == nil {
			t.Fatal("Capture in error mode: got no error")
		}
	}
	// Open, or already half-open if the machine is slow: not closed.
	if got := h.BreakerState(); got == "closed" {
		t.Fatalf("breaker: got %s, want open", got)
	}

	// Still failing: the probe after the open timeout reaches the server,
	// fails, and opens the breaker again.
	hits := l.Stats().Requests
	eventually(t, "a probe", func() bool {
		_, err := h.Capture(ctx, req("order-1", 1))
		if err != nil && !errors.Is(err, provider.ErrUnavailable) {
			return true
		}
		if err == nil {
			t.Fatal("Capture in error mode: got no error")
		}
		return false
	})
	if got := l.Stats().Requests; got != hits+1 {
		t.Errorf("server requests: got %d, want %d (one probe)", got, hits+1)
	}
	if got := h.BreakerState(); got == "closed" {
		t.Errorf("breaker after a failed probe: got %s, want open", got)
	}

	// Back: the next probe succeeds and closes it.
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeNormal})
	var res payments.CaptureResult
	eventually(t, "a successful probe", func() bool {
		var err error
		res, err = h.Capture(ctx, req("order-1", 1))
		if err != nil && !errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Capture with the provider back: got %v, want success or ErrUnavailable", err)
		}
		return err == nil
	})
	if got := h.BreakerState(); got != "closed" || res.PaymentID == "" {
		t.Errorf("after recovery: got breaker %s and %+v, want closed and a payment", got, res)
	}
	if _, err := h.Capture(ctx, req("order-2", 1)); err != nil {
		t.Errorf("Capture after recovery: %v", err)
	}
}

func TestHTTPBulkheadFailsFastWhenFull(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, MaxConcurrent: 2, Timeout: time.Hour, BreakerFailures: 1})
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeSlow, Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := h.Capture(ctx, req(fmt.Sprintf("order-%d", i), 1))
			errs <- err
		}()
	}
	eventually(t, "two calls in flight", func() bool { return l.Stats().Requests == 2 })
	_, err := h.Capture(context.Background(), req("order-3", 1))
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("third call: got %v, want ErrUnavailable", err)
	}
	if got := l.Stats().Requests; got != 2 {
		t.Errorf("server requests: got %d, want 2 (the third call rejected before sending)", got)
	}
	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled call: got %v, want context.Canceled", err)
		}
	}
	// Neither a full bulkhead nor a caller's cancellation says anything
	// about the provider: the breaker (1 failure opens it) stays closed.
	if got := h.BreakerState(); got != "closed" {
		t.Errorf("breaker: got %s, want closed", got)
	}
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeNormal})
	if _, err := h.Capture(context.Background(), req("order-3", 1)); err != nil {
		t.Errorf("Capture with slots free: %v", err)
	}
}

func TestHTTPBulkheadQueueTimeout(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, MaxConcurrent: 1, Timeout: time.Hour, QueueTimeout: 20 * time.Millisecond})
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeSlow, Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := h.Capture(ctx, req("order-1", 1))
		first <- err
	}()
	eventually(t, "the first call in flight", func() bool { return l.Stats().Requests == 1 })

	// A call that waits out QueueTimeout for the busy slot fails without
	// sending.
	if _, err := h.Capture(context.Background(), req("order-2", 1)); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("queued call: got %v, want ErrUnavailable", err)
	}
	// So does one whose caller gives up while it waits.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := h.Capture(cctx, req("order-2", 1)); !errors.Is(err, provider.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("queued call, caller gone: got %v, want ErrUnavailable and context.Canceled", err)
	}
	if got := l.Stats().Requests; got != 1 {
		t.Errorf("server requests: got %d, want 1", got)
	}

	// A call that gets the slot within QueueTimeout goes through.
	h2 := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, MaxConcurrent: 1, QueueTimeout: time.Hour})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	held := make(chan error, 1)
	go func() {
		_, err := h2.Capture(ctx2, req("order-3", 1))
		held <- err
	}()
	eventually(t, "the slot taken", func() bool { return l.Stats().Requests == 2 })
	queued := make(chan error, 1)
	go func() {
		_, err := h2.Capture(context.Background(), req("order-4", 1))
		queued <- err
	}()
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeNormal})
	cancel2()
	if err := <-queued; err != nil {
		t.Errorf("queued call once the slot is free: %v", err)
	}
	<-held
	cancel()
	<-first
}

func TestHTTPConcurrentCapturesChargeOncePerKey(t *testing.T) {
	l := mustSimulator(t, simulator.Config{Seed: 3})
	mustMode(t, l, simulator.ModeConfig{Mode: simulator.ModeFlaky, Rate: 0.3})
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: l.URL, MaxConcurrent: 8, BreakerFailures: 1 << 30})
	rng := rand.New(rand.NewPCG(3, 3))
	keys := make([]string, 50)
	distinct := map[string]bool{}
	for i := range keys {
		keys[i] = fmt.Sprintf("order-%d", rng.IntN(20))
		distinct[keys[i]] = true
	}
	ids := make([]string, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		wg.Go(func() {
			// Retry with the same key, as the payments service does on
			// redelivery, through lost answers and a full bulkhead.
			for attempt := 0; attempt < 1000; attempt++ {
				res, err := h.Capture(context.Background(), req(key, 10))
				if err == nil {
					ids[i] = res.PaymentID
					return
				}
				if errors.Is(err, provider.ErrUnavailable) {
					time.Sleep(time.Millisecond)
				}
			}
			t.Errorf("%s: no capture after 1000 attempts", key)
		})
	}
	wg.Wait()
	for i, key := range keys {
		if st, _ := l.State(key); ids[i] == "" || ids[i] != st.PaymentID {
			t.Errorf("call %d (%s): got payment %q, want %q", i, key, ids[i], st.PaymentID)
		}
	}
	st := l.Stats()
	if st.Captures != len(distinct) || st.CapturedTotal["EUR"] != int64(10*len(distinct)) {
		t.Errorf("stats: got %+v, want %d captures of 10 EUR (one per key)", st, len(distinct))
	}
}

func TestNewHTTPValidates(t *testing.T) {
	for _, cfg := range []provider.HTTPConfig{
		{},
		{BaseURL: "127.0.0.1:8090"},
		{BaseURL: "ftp://example.com"},
		{BaseURL: "http://%zz"},
		{BaseURL: "http://127.0.0.1:8090", Timeout: -1},
		{BaseURL: "http://127.0.0.1:8090", MaxConcurrent: -1},
		{BaseURL: "http://127.0.0.1:8090", QueueTimeout: -1},
		{BaseURL: "http://127.0.0.1:8090", BreakerFailures: -1},
		{BaseURL: "http://127.0.0.1:8090", BreakerOpenTimeout: -1},
	} {
		if _, err := provider.NewHTTP(cfg); !errors.Is(err, provider.ErrInvalidConfig) {
			t.Errorf("NewHTTP(%+v): got %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestHTTPUnreachableProviderIsAnError(t *testing.T) {
	l := mustSimulator(t, simulator.Config{})
	url := l.URL
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	h := mustHTTP(t, provider.HTTPConfig{BaseURL: url, BreakerFailures: 2, BreakerOpenTimeout: time.Hour})
	for range 2 {
		if _, err := h.Capture(context.Background(), req("order-1", 1)); err == nil || errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Capture with nobody listening: got %v, want a connection error", err)
		}
	}
	if _, err := h.Capture(context.Background(), req("order-1", 1)); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("third call: got %v, want ErrUnavailable (breaker open)", err)
	}
}
