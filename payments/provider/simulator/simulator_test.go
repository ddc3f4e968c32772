package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/payments/provider/simulator"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// listener not stopped, or a slow-mode answer still held back.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sim is a simulator listening on 127.0.0.1:0 and a client of it.
type sim struct {
	*simulator.Listener
	client *http.Client
}

func mustStart(t testing.TB, cfg simulator.Config) *sim {
	t.Helper()
	l, err := simulator.ListenAndServe(context.Background(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	s := &sim{Listener: l, client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		s.client.CloseIdleConnections()
	})
	return s
}

type response struct {
	status   int
	header   http.Header
	body     []byte
	replayed bool
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// do sends a request; key, when set, goes in the Idempotency-Key header.
func (s *sim) do(t testing.TB, ctx context.Context, method, path, key string, body any) (response, error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set(simulator.IdempotencyKeyHeader, key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, replayed: resp.Header.Get(simulator.ReplayedHeader) == "true"}, nil
}

func (s *sim) mustDo(t testing.TB, method, path, key string, body any) response {
	t.Helper()
	r, err := s.do(t, context.Background(), method, path, key, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

type captureReq struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Amount     catalog.Money `json:"amount"`
}

func eur(n int64) catalog.Money { return catalog.Money{Amount: n, Currency: "EUR"} }

func capture(order string, amount int64) captureReq {
	return captureReq{OrderID: order, CustomerID: "cust-1", Amount: eur(amount)}
}

func (s *sim) capture(t testing.TB, key string, body captureReq) response {
	t.Helper()
	return s.mustDo(t, http.MethodPost, "/v1/captures", key, body)
}

func (s *sim) cancel(t testing.TB, key string) response {
	t.Helper()
	return s.mustDo(t, http.MethodPost, "/v1/captures/"+key+"/cancel", "", nil)
}

func (s *sim) setMode(t testing.TB, m simulator.ModeConfig) {
	t.Helper()
	if err := s.SetMode(m); err != nil {
		t.Fatalf("SetMode(%+v): %v", m, err)
	}
}

func mustCaptured(t testing.TB, r response) simulator.CaptureResponse {
	t.Helper()
	var c simulator.CaptureResponse
	r.decode(t, &c)
	if r.status != http.StatusCreated || c.Status != simulator.StatusCaptured || c.PaymentID == "" {
		t.Fatalf("capture: got %s, want 201 captured with a payment id", r)
	}
	return c
}

func mustDeclined(t testing.TB, r response, reason string) {
	t.Helper()
	var c simulator.CaptureResponse
	r.decode(t, &c)
	if r.status != http.StatusOK || c.Status != simulator.StatusDeclined || c.Reason != reason || c.PaymentID != "" {
		t.Fatalf("capture: got %s, want 200 declined %q", r, reason)
	}
}

func mustProblem(t testing.TB, r response, status int) httpx.Problem {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %s (%s), want a %d problem", r, r.header.Get("Content-Type"), status)
	}
	var p httpx.Problem
	r.decode(t, &p)
	if p.Status != status || p.Title == "" {
		t.Fatalf("problem: got %+v, want status %d and a title", p, status)
	}
	return p
}

// wantStats compares the counters and the EUR totals.
func wantStats(t testing.TB, got simulator.Stats, captures, declines, refunds, voids int, captured, refunded int64) {
	t.Helper()
	if got.Captures != captures || got.Declines != declines || got.Refunds != refunds || got.Voids != voids ||
		got.CapturedTotal["EUR"] != captured || got.RefundedTotal["EUR"] != refunded {
		t.Errorf("stats: got %+v, want captures %d declines %d refunds %d voids %d captured %d EUR refunded %d EUR",
			got, captures, declines, refunds, voids, captured, refunded)
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

func TestCaptureIsIdempotent(t *testing.T) {
	s := mustStart(t, simulator.Config{Seed: 1})
	first := s.capture(t, "order-1", capture("order-1", 1299))
	c := mustCaptured(t, first)
	if first.replayed || c.Amount == nil || *c.Amount != eur(1299) {
		t.Errorf("first capture: got %s replayed=%v, want 1299 EUR, not replayed", first, first.replayed)
	}
	again := s.capture(t, "order-1", capture("order-1", 1299))
	if again.status != first.status || !bytes.Equal(again.body, first.body) || !again.replayed {
		t.Errorf("repeat: got %s replayed=%v, want %s replayed", again, again.replayed, first)
	}
	other := mustCaptured(t, s.capture(t, "order-2", capture("order-2", 1)))
	if other.PaymentID == c.PaymentID {
		t.Errorf("other key: got payment id %s again, want a new one", c.PaymentID)
	}
	wantStats(t, s.Stats(), 2, 0, 0, 0, 1300, 0)

	var st simulator.State
	r := s.mustDo(t, http.MethodGet, "/v1/captures/order-1", "", nil)
	r.decode(t, &st)
	want := simulator.State{Key: "order-1", OrderID: "order-1", CustomerID: "cust-1", Amount: eur(1299),
		Status: simulator.StatusCaptured, PaymentID: c.PaymentID, Captured: eur(1299), Refunded: eur(0)}
	if r.status != http.StatusOK || st != want {
		t.Errorf("GET: got %d %+v, want 200 %+v", r.status, st, want)
	}
	mustProblem(t, s.mustDo(t, http.MethodGet, "/v1/captures/nope", "", nil), http.StatusNotFound)
}

func TestCaptureSameKeyDifferentRequestConflicts(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	mustCaptured(t, s.capture(t, "order-1", capture("order-1", 1299)))
	for name, body := range map[string]captureReq{
		"Amount":   capture("order-1", 1300),
		"Currency": {OrderID: "order-1", CustomerID: "cust-1", Amount: catalog.Money{Amount: 1299, Currency: "USD"}},
		"Customer": {OrderID: "order-1", CustomerID: "cust-2", Amount: eur(1299)},
		"Order":    capture("order-2", 1299),
	} {
		t.Run(name, func(t *testing.T) {
			mustProblem(t, s.capture(t, "order-1", body), http.StatusConflict)
		})
	}
	wantStats(t, s.Stats(), 1, 0, 0, 0, 1299, 0)
}

func TestCaptureRefusesBadRequests(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	mustProblem(t, s.capture(t, "", capture("order-1", 1)), http.StatusBadRequest)
	mustProblem(t, s.capture(t, "k", captureReq{CustomerID: "c", Amount: eur(1)}), http.StatusUnprocessableEntity)
	mustProblem(t, s.capture(t, "k", capture("order-1", -1)), http.StatusUnprocessableEntity)
	mustProblem(t, s.capture(t, "k", captureReq{OrderID: "o", Amount: catalog.Money{Amount: 1}}), http.StatusUnprocessableEntity)
	mustProblem(t, s.mustDo(t, http.MethodPost, "/v1/captures", "k", map[string]any{"order_id": "o", "amount": eur(1), "tip": 5}), http.StatusBadRequest)
	if st := s.Stats(); st.Captures != 0 || len(s.States()) != 0 {
		t.Errorf("after refusals: got %+v and %d keys, want nothing recorded", st, len(s.States()))
	}
}

func TestDeclineRules(t *testing.T) {
	s := mustStart(t, simulator.Config{DeclineOverAmount: 10000})
	tests := []struct {
		name     string
		body     captureReq
		declined string // "" means captured
	}{
		{"DeclinedCustomer", captureReq{OrderID: "o-1", CustomerID: "decline-me", Amount: eur(100)}, simulator.ReasonCardDeclined},
		{"OverLimit", capture("o-2", 10001), simulator.ReasonAmountOverLimit},
		{"AtLimit", capture("o-3", 10000), ""},
		{"PrefixOnlyAtStart", captureReq{OrderID: "o-4", CustomerID: "cust-decline", Amount: eur(1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.capture(t, tt.body.OrderID, tt.body)
			if tt.declined == "" {
				mustCaptured(t, r)
				return
			}
			mustDeclined(t, r, tt.declined)
		})
	}
	wantStats(t, s.Stats(), 2, 2, 0, 0, 10001, 0)

	t.Run("RepeatAfterRulesChange", func(t *testing.T) {
		if err := s.SetRules(simulator.Rules{DeclineOverAmount: 5}); err != nil {
			t.Fatal(err)
		}
		mustDeclined(t, s.capture(t, "o-2", capture("o-2", 10001)), simulator.ReasonAmountOverLimit)
		mustCaptured(t, s.capture(t, "o-3", capture("o-3", 10000)))
		mustDeclined(t, s.capture(t, "o-5", capture("o-5", 6)), simulator.ReasonAmountOverLimit)
		var rules simulator.Rules
		s.mustDo(t, http.MethodPost, "/admin/rules", "", simulator.Rules{}).decode(t, &rules)
		mustCaptured(t, s.capture(t, "o-6", capture("o-6", 1_000_000)))
		wantStats(t, s.Stats(), 3, 3, 0, 0, 1_010_001, 0)
	})
}

func TestCancelAfterCaptureRefunds(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	c := mustCaptured(t, s.capture(t, "order-1", capture("order-1", 1299)))
	first := s.cancel(t, "order-1")
	var cr simulator.CancelResponse
	first.decode(t, &cr)
	if first.status != http.StatusOK || cr.Status != simulator.StatusRefunded || cr.Amount == nil || *cr.Amount != eur(1299) || cr.PaymentID != c.PaymentID {
		t.Fatalf("cancel: got %s, want 200 refunded 1299 EUR of %s", first, c.PaymentID)
	}
	if again := s.cancel(t, "order-1"); !bytes.Equal(again.body, first.body) || !again.replayed {
		t.Errorf("repeat cancel: got %s, want %s replayed", again, first)
	}
	// A late capture retry replays the first answer and charges nothing.
	if again := mustCaptured(t, s.capture(t, "order-1", capture("order-1", 1299))); again.PaymentID != c.PaymentID {
		t.Errorf("capture after refund: got %s, want the first payment %s", again.PaymentID, c.PaymentID)
	}
	st, _ := s.State("order-1")
	if st.Status != simulator.StatusRefunded || st.Captured.Amount-st.Refunded.Amount != 0 {
		t.Errorf("state: got %+v, want refunded with captured − refunded = 0", st)
	}
	wantStats(t, s.Stats(), 1, 0, 1, 0, 1299, 1299)
}

func TestCancelBeforeCaptureVoids(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	first := s.mustDo(t, http.MethodPost, "/v1/captures/order-1/cancel", "order-1", map[string]string{"order_id": "order-1"})
	var cr simulator.CancelResponse
	first.decode(t, &cr)
	if first.status != http.StatusOK || cr.Status != simulator.StatusVoided || cr.Amount != nil {
		t.Fatalf("cancel: got %s, want 200 voided", first)
	}
	if again := s.cancel(t, "order-1"); !bytes.Equal(again.body, first.body) || !again.replayed {
		t.Errorf("repeat cancel: got %s, want %s replayed", again, first)
	}
	// The capture overtaken by its cancellation takes no money, now or on
	// a retry.
	mustDeclined(t, s.capture(t, "order-1", capture("order-1", 1299)), simulator.ReasonVoided)
	mustDeclined(t, s.capture(t, "order-1", capture("order-1", 1299)), simulator.ReasonVoided)
	mustProblem(t, s.capture(t, "order-1", capture("order-1", 5)), http.StatusConflict)
	mustProblem(t, s.capture(t, "order-1", capture("order-2", 1299)), http.StatusConflict)
	st, _ := s.State("order-1")
	if st.Status != simulator.StatusVoided || st.PaymentID != "" || st.Captured.Amount != 0 {
		t.Errorf("state: got %+v, want voided with nothing captured", st)
	}
	wantStats(t, s.Stats(), 0, 1, 0, 1, 0, 0)

	t.Run("CancelNamesAnotherOrder", func(t *testing.T) {
		mustProblem(t, s.mustDo(t, http.MethodPost, "/v1/captures/order-1/cancel", "", map[string]string{"order_id": "order-9"}), http.StatusConflict)
		mustProblem(t, s.mustDo(t, http.MethodPost, "/v1/captures/order-1/cancel", "order-9", nil), http.StatusBadRequest)
	})
}

func TestCancelAfterDeclineVoids(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	body := captureReq{OrderID: "order-1", CustomerID: "declined-card", Amount: eur(10)}
	mustDeclined(t, s.capture(t, "order-1", body), simulator.ReasonCardDeclined)
	var cr simulator.CancelResponse
	s.cancel(t, "order-1").decode(t, &cr)
	if cr.Status != simulator.StatusVoided {
		t.Errorf("cancel: got %+v, want voided", cr)
	}
	mustDeclined(t, s.capture(t, "order-1", body), simulator.ReasonCardDeclined)
	wantStats(t, s.Stats(), 0, 1, 0, 1, 0, 0)
}

func TestModeDownAnswers503WithoutEffect(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeDown})
	mustProblem(t, s.capture(t, "order-1", capture("order-1", 1)), http.StatusServiceUnavailable)
	mustProblem(t, s.cancel(t, "order-2"), http.StatusServiceUnavailable)
	mustProblem(t, s.mustDo(t, http.MethodGet, "/v1/captures/order-1", "", nil), http.StatusServiceUnavailable)
	// The admin routes still answer.
	var m simulator.ModeConfig
	r := s.mustDo(t, http.MethodGet, "/admin/mode", "", nil)
	if r.decode(t, &m); r.status != http.StatusOK || m.Mode != simulator.ModeDown {
		t.Errorf("GET /admin/mode: got %s, want 200 down", r)
	}
	var st simulator.Stats
	s.mustDo(t, http.MethodGet, "/admin/stats", "", nil).decode(t, &st)
	wantStats(t, st, 0, 0, 0, 0, 0, 0)
	if st.Requests != 3 || len(s.States()) != 0 {
		t.Errorf("got %d requests and %d keys, want 3 and none", st.Requests, len(s.States()))
	}
	s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeNormal})
	mustCaptured(t, s.capture(t, "order-1", capture("order-1", 1)))
}

func TestModeErrorAnswers500WithoutEffect(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	mustCaptured(t, s.capture(t, "order-1", capture("order-1", 7)))
	s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeError})
	mustProblem(t, s.capture(t, "order-2", capture("order-2", 1)), http.StatusInternalServerError)
	mustProblem(t, s.cancel(t, "order-1"), http.StatusInternalServerError)
	mustProblem(t, s.capture(t, "order-1", capture("order-1", 7)), http.StatusInternalServerError)
	wantStats(t, s.Stats(), 1, 0, 0, 0, 7, 0)
	if _, ok := s.State("order-2"); ok {
		t.Error("order-2: got a state, want none")
	}
}

func TestModeSlowHandlesAtOnceAndAnswersLate(t *testing.T) {
	s := mustStart(t, simulator.Config{})

	t.Run("ClientGivesUp", func(t *testing.T) {
		s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeSlow, Latency: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := s.do(t, ctx, http.MethodPost, "/v1/captures", "order-1", capture("order-1", 5))
			errc <- err
		}()
		// The charge is made although no answer has come.
		eventually(t, "order-1 captured", func() bool {
			st, ok := s.State("order-1")
			return ok && st.Status == simulator.StatusCaptured
		})
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("slow capture: got an answer, want the client to give up first")
		}
		s.setMode(t, simulator.ModeConfig{})
		r := s.capture(t, "order-1", capture("order-1", 5))
		st, _ := s.State("order-1")
		if c := mustCaptured(t, r); c.PaymentID != st.PaymentID || !r.replayed {
			t.Errorf("retry: got %s, want the charge made during the slow call (%s), replayed", r, st.PaymentID)
		}
		wantStats(t, s.Stats(), 1, 0, 0, 0, 5, 0)
	})

	t.Run("AnswersAfterLatency", func(t *testing.T) {
		s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeSlow, Latency: 20 * time.Millisecond})
		mustCaptured(t, s.capture(t, "order-2", capture("order-2", 5)))
		var cr simulator.CancelResponse
		s.cancel(t, "order-2").decode(t, &cr)
		if cr.Status != simulator.StatusRefunded {
			t.Errorf("cancel: got %+v, want refunded", cr)
		}
	})
}

func TestBaseLatencyClientGivesUpLeavesNoTrace(t *testing.T) {
	s := mustStart(t, simulator.Config{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := s.do(t, ctx, http.MethodPost, "/v1/captures", "order-1", capture("order-1", 5))
		errc <- err
	}()
	eventually(t, "the request to arrive", func() bool { return s.Stats().Requests == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("capture: got an answer, want the client to give up first")
	}
	// Handled or not yet, the request can only end without its effect.
	if _, ok := s.State("order-1"); ok {
		t.Error("order-1: got a state, want none")
	}
}

func TestModeFlakyLosesAnswersBeforeAndAfterTheEffect(t *testing.T) {
	s := mustStart(t, simulator.Config{Seed: 42})
	s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeFlaky, Rate: 1})
	var before, after []string
	for i := 0; len(before) < 2 || len(after) < 2; i++ {
		if i == 200 {
			t.Fatalf("after %d captures: %d failed before and %d after the effect, want both kinds", i, len(before), len(after))
		}
		key := fmt.Sprintf("order-%d", i)
		mustProblem(t, s.capture(t, key, capture(key, 100)), http.StatusInternalServerError)
		if _, ok := s.State(key); ok {
			after = append(after, key)
		} else {
			before = append(before, key)
		}
	}
	charged := s.Stats().Captures
	if charged != len(after) {
		t.Fatalf("captures: got %d, want %d (one per lost answer)", charged, len(after))
	}

	s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeNormal})
	for _, key := range after {
		st, _ := s.State(key)
		r := s.capture(t, key, capture(key, 100))
		if c := mustCaptured(t, r); c.PaymentID != st.PaymentID || !r.replayed {
			t.Errorf("retry of %s: got %s, want the lost answer's payment %s, replayed", key, r, st.PaymentID)
		}
	}
	if got := s.Stats().Captures; got != charged {
		t.Errorf("captures after retries of lost answers: got %d, want %d", got, charged)
	}
	for _, key := range before {
		r := s.capture(t, key, capture(key, 100))
		if mustCaptured(t, r); r.replayed {
			t.Errorf("retry of %s: got a replay, want a first capture", key)
		}
	}
	wantStats(t, s.Stats(), len(before)+len(after), 0, 0, 0, int64(100*(len(before)+len(after))), 0)

	t.Run("RateZeroIsDefault", func(t *testing.T) {
		s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeFlaky})
		if m := s.Mode(); m.Rate != simulator.DefaultFlakyRate {
			t.Errorf("mode: got %+v, want rate %g", m, simulator.DefaultFlakyRate)
		}
	})
}

func TestAdminMode(t *testing.T) {
	s := mustStart(t, simulator.Config{})
	tests := []struct {
		body       string
		wantStatus int
		want       string // the mode in force afterwards, as JSON
	}{
		{`{"mode":"slow"}`, 200, `{"mode":"slow","latency":"2s"}`},
		{`{"mode":"slow","latency":"150ms","rate":0.5}`, 200, `{"mode":"slow","latency":"150ms"}`},
		{`{"mode":"flaky","rate":0.25}`, 200, `{"mode":"flaky","rate":0.25}`},
		{`{"mode":"flaky"}`, 200, `{"mode":"flaky","rate":0.3}`},
		{`{"mode":"down"}`, 200, `{"mode":"down"}`},
		{`{"mode":"error","latency":"1s"}`, 200, `{"mode":"error"}`},
		{`{"mode":"normal"}`, 200, `{"mode":"normal"}`},
		{`{"mode":"bogus"}`, 422, `{"mode":"normal"}`},
		{`{"mode":"flaky","rate":1.5}`, 422, `{"mode":"normal"}`},
		{`{"mode":"slow","latency":"-1s"}`, 422, `{"mode":"normal"}`},
		{`{"mode":"slow","latency":"soon"}`, 400, `{"mode":"normal"}`},
		{`{"mode":"slow","rat":0.5}`, 400, `{"mode":"normal"}`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/admin/mode", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("POST: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			got := s.mustDo(t, http.MethodGet, "/admin/mode", "", nil)
			if string(bytes.TrimSpace(got.body)) != tt.want {
				t.Errorf("GET: got %s, want %s", got.body, tt.want)
			}
		})
	}
}

func TestConcurrentCapturesChargeOncePerKey(t *testing.T) {
	s := mustStart(t, simulator.Config{Seed: 7})
	s.setMode(t, simulator.ModeConfig{Mode: simulator.ModeFlaky, Rate: 0.3})
	rng := rand.New(rand.NewPCG(7, 7))
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
			for attempt := 0; attempt < 100; attempt++ {
				r, err := s.do(t, context.Background(), http.MethodPost, "/v1/captures", key, capture(key, 10))
				if err != nil {
					t.Error(err)
					return
				}
				if r.status == http.StatusCreated {
					var c simulator.CaptureResponse
					r.decode(t, &c)
					ids[i] = c.PaymentID
					return
				}
			}
			t.Errorf("%s: no capture after 100 attempts", key)
		})
	}
	wg.Wait()
	for i, key := range keys {
		if st, _ := s.State(key); ids[i] != st.PaymentID {
			t.Errorf("call %d (%s): got payment %s, want %s", i, key, ids[i], st.PaymentID)
		}
	}
	wantStats(t, s.Stats(), len(distinct), 0, 0, 0, int64(10*len(distinct)), 0)
}

func TestListenAndServeStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l, err := simulator.ListenAndServe(ctx, "127.0.0.1:0", simulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(l.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: got %d, want 200", resp.StatusCode)
	}
	if !strings.HasPrefix(l.URL, "http://127.0.0.1:") || strings.HasSuffix(l.Addr, ":0") {
		t.Errorf("address: got %s (%s), want the bound port", l.Addr, l.URL)
	}
	cancel()
	<-l.Done()
	if err := l.Stop(); err != nil {
		t.Errorf("Stop after ctx done: %v", err)
	}
	if _, err := simulator.ListenAndServe(context.Background(), "127.0.0.1:-1", simulator.Config{}); err == nil {
		t.Error("ListenAndServe on a bad address: got no error")
	}
}

func TestStopCutsSlowAnswersShort(t *testing.T) {
	l, err := simulator.ListenAndServe(context.Background(), "127.0.0.1:0", simulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetMode(simulator.ModeConfig{Mode: simulator.ModeSlow, Latency: time.Hour}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Post(l.URL+"/v1/captures/k/cancel", "application/json", nil)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, "the request to arrive", func() bool { return l.Stats().Requests == 1 })
	if err := l.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	<-errc // answered or cut; either way not an hour later
}

// With KeepKeys, the simulator remembers the newest keys only: a long run
// holds a bounded number, and its books still count every effect.
func TestKeepKeysForgetsTheOldest(t *testing.T) {
	s := mustStart(t, simulator.Config{Seed: 1, KeepKeys: 3})
	for i := range 5 {
		mustCaptured(t, s.capture(t, fmt.Sprintf("order-%d", i), capture(fmt.Sprintf("order-%d", i), 100)))
	}
	states := s.States()
	var keys []string
	for _, st := range states {
		keys = append(keys, st.Key)
	}
	if want := []string{"order-2", "order-3", "order-4"}; !slices.Equal(keys, want) {
		t.Errorf("keys kept: got %v, want %v", keys, want)
	}
	mustProblem(t, s.mustDo(t, http.MethodGet, "/v1/captures/order-0", "", nil), http.StatusNotFound)
	// A kept key still replays its first answer.
	if again := s.capture(t, "order-4", capture("order-4", 100)); !again.replayed {
		t.Errorf("repeat of a kept key: got %s, want it replayed", again)
	}
	wantStats(t, s.Stats(), 5, 0, 0, 0, 500, 0)
}
