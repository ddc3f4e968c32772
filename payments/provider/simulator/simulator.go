// Package simulator is a payment provider that runs in the repository: an
// HTTP server with the behaviour of a real card processor that matters to
// the payments service — idempotency keys, declines, refunds and voids —
// and the failures it must survive: outages, slowness, errors, and lost
// responses after the charge was made.
//
// The API (JSON; errors are RFC 9457 problem details):
//
//	POST /v1/captures               {"order_id","customer_id","amount":{"amount","currency"}}
//	                                header Idempotency-Key (required)
//	                                → 201 {"payment_id","status":"captured","amount"}
//	                                → 200 {"status":"declined","reason"}
//	POST /v1/captures/{key}/cancel  optional body {"order_id"}
//	                                → 200 {"status":"refunded","payment_id","amount"}
//	                                → 200 {"status":"voided"}
//	GET  /v1/captures/{key}         → 200 the key's State, 404 if unknown
//	GET  /admin/mode, POST /admin/mode {"mode":"normal|down|slow|error|flaky","latency":"2s","rate":0.3}
//	GET  /admin/rules, POST /admin/rules {"decline_over_amount":n}
//	GET  /admin/stats               → Stats
//	GET  /admin/captures            → every key's State
//	GET  /healthz
//
// Idempotency: the first answer under a key is stored, and a repeat of the
// same request gets it again — status, body and all, with the header
// Idempotent-Replayed: true — even if the rules or the mode have changed
// since. The same key with a different request is refused with 409. A
// cancel is stored the same way. A cancel that finds no capture voids the
// key: a capture that comes later is declined with reason "voided", so a
// capture overtaken by its cancellation never takes money.
//
// Decline rules: a customer id beginning with "decline" is declined
// "card_declined"; an amount over Config.DeclineOverAmount is declined
// "amount_over_limit".
//
// The outage mode (Mode) applies to /v1 routes only; /admin and /healthz
// always answer, so a test can switch modes and read the books during an
// outage.
package simulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
)

// Decline reasons.
const (
	ReasonCardDeclined    = "card_declined"
	ReasonAmountOverLimit = "amount_over_limit"
	// ReasonVoided declines a capture whose key was cancelled before any
	// capture was made under it.
	ReasonVoided = "voided"
)

// DeclinePrefix is the prefix of customer ids whose cards are declined.
const DeclinePrefix = "decline"

// IdempotencyKeyHeader names the header that carries a capture's key.
const IdempotencyKeyHeader = "Idempotency-Key"

// ReplayedHeader is set to "true" on an answer replayed from an earlier
// request with the same key.
const ReplayedHeader = "Idempotent-Replayed"

// Config configures a Server.
type Config struct {
	// DeclineOverAmount declines captures of more than this many minor
	// units, whatever the currency. 0: no limit.
	DeclineOverAmount int64
	// Latency is added to every /v1 request before it is handled, in
	// every mode but down and error (which answer at once). A client that
	// gives up during it leaves no trace.
	Latency time.Duration
	// Logger receives one record per effect (captured, declined, refunded,
	// voided) and per mode change. Default: discard.
	Logger *slog.Logger
	// Seed seeds the random choices (flaky failures, payment ids). 0: a
	// random seed.
	Seed int64
	// KeepKeys bounds the idempotency keys remembered: past it, the
	// oldest is forgotten, as a real provider expires its keys (after a
	// day, typically), so that a long run's memory stays flat. A retry
	// under a forgotten key is treated as new. 0: remember every key.
	KeepKeys int
	// AdminToken, when set, is required as "Authorization: Bearer
	// <token>" by every /admin route: anyone who can reach the simulator
	// could otherwise switch it to an outage or read every payment. ""
	// leaves /admin open, as on a laptop.
	AdminToken string
}

// Status is the state of an idempotency key.
type Status string

// The statuses a key can have.
const (
	// StatusCaptured: the amount was charged.
	StatusCaptured Status = "captured"
	// StatusDeclined: a capture was declined; nothing was charged.
	StatusDeclined Status = "declined"
	// StatusRefunded: the amount was charged, then given back.
	StatusRefunded Status = "refunded"
	// StatusVoided: cancelled with nothing charged; no capture ever will
	// be under this key.
	StatusVoided Status = "voided"
)

// State is what the simulator knows of one idempotency key.
type State struct {
	Key        string        `json:"key"`
	OrderID    string        `json:"order_id,omitempty"`
	CustomerID string        `json:"customer_id,omitempty"`
	Amount     catalog.Money `json:"amount"` // the amount asked for
	Status     Status        `json:"status"`
	PaymentID  string        `json:"payment_id,omitempty"`
	Reason     string        `json:"reason,omitempty"` // why a capture was declined
	// Captured and Refunded are the money that moved: for every key,
	// Captured − Refunded is what the merchant keeps.
	Captured catalog.Money `json:"captured"`
	Refunded catalog.Money `json:"refunded"`
}

// Stats are the simulator's books since it started.
type Stats struct {
	// Requests counts /v1 requests received, whatever the mode made of
	// them: a call a client's circuit breaker stopped is not among them.
	Requests int64 `json:"requests"`
	// Captures, Declines, Refunds and Voids count effects, once per key.
	Captures int `json:"captures"`
	Declines int `json:"declines"`
	Refunds  int `json:"refunds"`
	Voids    int `json:"voids"`
	// CapturedTotal and RefundedTotal sum the money moved, in minor units
	// per currency.
	CapturedTotal map[string]int64 `json:"captured_total"`
	RefundedTotal map[string]int64 `json:"refunded_total"`
}

// Rules are the decline rules that can change at run time.
type Rules struct {
	// DeclineOverAmount: see Config.
	DeclineOverAmount int64 `json:"decline_over_amount"`
}

// Server is the simulator: an http.Handler safe for concurrent use. Its
// state lives in memory and is lost when the process ends.
type Server struct {
	log     *slog.Logger
	latency time.Duration
	mux     http.Handler

	mu    sync.Mutex
	rules Rules
	mode  ModeConfig
	rand  *rand.Rand
	keys  map[string]*entry
	order []string // keys in the order they were first seen, oldest first
	keep  int
	// forgotten counts the effects of the keys forgotten past keep, so
	// that Stats still covers every key.
	forgotten Stats
	requests  int64
}

// entry is one idempotency key: its state and the answers to replay.
type entry struct {
	state   State
	capture *captureBody // the capture request that fixed the answer
	// captureReply and cancelReply are the first answers, replayed to
	// repeats. A voided key has a cancelReply and, until a capture comes,
	// no captureReply.
	captureReply *reply
	cancelReply  *reply
}

// captureBody is the JSON body of POST /v1/captures.
type captureBody struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Amount     catalog.Money `json:"amount"`
}

// cancelBody is the optional JSON body of POST /v1/captures/{key}/cancel.
type cancelBody struct {
	OrderID string `json:"order_id"`
}

// CaptureResponse is the body of a capture's answer.
type CaptureResponse struct {
	Status    Status         `json:"status"` // captured or declined
	PaymentID string         `json:"payment_id,omitempty"`
	Amount    *catalog.Money `json:"amount,omitempty"`
	Reason    string         `json:"reason,omitempty"`
}

// CancelResponse is the body of a cancel's answer.
type CancelResponse struct {
	Status    Status         `json:"status"` // refunded or voided
	PaymentID string         `json:"payment_id,omitempty"`
	Amount    *catalog.Money `json:"amount,omitempty"`
}

// reply is an answer, kept whole so that it can be replayed, delayed or
// lost.
type reply struct {
	status      int
	contentType string
	body        []byte
	replayed    bool
}

func (r *reply) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", r.contentType)
	if r.replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func jsonReply(status int, v any) *reply {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("simulator: encode %T: %v", v, err)) // only our own types are encoded
	}
	return &reply{status: status, contentType: "application/json", body: append(b, '\n')}
}

func problem(r *http.Request, status int, title, detail string) *reply {
	b, _ := json.Marshal(httpx.Problem{Type: "about:blank", Title: title, Status: status, Detail: detail, Instance: r.URL.Path})
	return &reply{status: status, contentType: "application/problem+json", body: append(b, '\n')}
}

// New returns a simulator in normal mode with no keys.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	seed := uint64(cfg.Seed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		log:       cfg.Logger,
		latency:   cfg.Latency,
		rules:     Rules{DeclineOverAmount: cfg.DeclineOverAmount},
		mode:      ModeConfig{Mode: ModeNormal},
		rand:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		keys:      map[string]*entry{},
		keep:      cfg.KeepKeys,
		forgotten: Stats{CapturedTotal: map[string]int64{}, RefundedTotal: map[string]int64{}},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/captures", s.v1(s.capture))
	mux.Handle("POST /v1/captures/{key}/cancel", s.v1(s.cancel))
	mux.Handle("GET /v1/captures/{key}", s.v1(s.get))
	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, adminOnly(cfg.AdminToken, h)) }
	admin("GET /admin/mode", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.Mode())
	})
	admin("POST /admin/mode", s.postMode)
	admin("GET /admin/rules", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.Rules())
	})
	admin("POST /admin/rules", s.postRules)
	admin("GET /admin/stats", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.Stats())
	})
	admin("GET /admin/captures", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.States())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux = httpx.Edge(mux)
	return s
}

// adminOnly requires the bearer token when one is configured. The
// comparison takes the same time wherever the tokens differ.
func adminOnly(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(got))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="simulator admin"`)
			httpx.WriteProblem(w, r, http.StatusUnauthorized, "Unauthorized", "the admin API needs Authorization: Bearer <admin token>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// v1 wraps a /v1 handler in the outage mode and the base latency. The
// handler returns its answer instead of writing it, so that the answer can
// be delayed (slow) or lost after its effect (flaky).
func (s *Server) v1(h func(r *http.Request) *reply) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		m := s.mode
		s.mu.Unlock()
		switch m.Mode {
		case ModeDown:
			// What a load balancer answers when no provider instance is up.
			w.Header().Set("Retry-After", "1")
			problem(r, http.StatusServiceUnavailable, "Service unavailable", "the payment provider is down (simulated outage)").write(w)
			return
		case ModeError:
			problem(r, http.StatusInternalServerError, "Internal error", "the payment provider failed (simulated); nothing was done").write(w)
			return
		}
		if !sleep(r.Context(), s.latency) {
			// The client gave up, or the server is stopping, before the
			// request was handled: nothing was done, and no answer may
			// suggest otherwise.
			panic(http.ErrAbortHandler)
		}
		if m.Mode == ModeFlaky {
			fail, after := s.roll(m.Rate)
			if fail && !after {
				s.log.Debug("simulator: flaky failure before the effect", "method", r.Method, "path", r.URL.Path)
				problem(r, http.StatusInternalServerError, "Internal error", "the payment provider failed (simulated); nothing was done").write(w)
				return
			}
			if fail {
				h(r) // the effect happens; its answer is lost
				s.log.Debug("simulator: flaky failure after the effect", "method", r.Method, "path", r.URL.Path)
				problem(r, http.StatusInternalServerError, "Internal error", "the payment provider failed (simulated); the outcome is unknown, retry with the same key").write(w)
				return
			}
		}
		rep := h(r)
		if m.Mode == ModeSlow {
			// The effect is made at once and the answer is late: a client
			// that times out does not know the outcome, which is what its
			// retry with the same key finds out.
			if !sleep(r.Context(), m.Latency) {
				// Cut the connection rather than let net/http send an
				// empty 200 for a handler that wrote nothing.
				panic(http.ErrAbortHandler)
			}
		}
		rep.write(w)
	})
}

// sleep waits d or until ctx is done, and reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// roll decides whether a flaky request fails, and if so whether after its
// effect.
func (s *Server) roll(rate float64) (fail, after bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rand.Float64() >= rate {
		return false, false
	}
	return true, s.rand.IntN(2) == 1
}

func (s *Server) capture(r *http.Request) *reply {
	key := r.Header.Get(IdempotencyKeyHeader)
	if key == "" {
		return problem(r, http.StatusBadRequest, "Missing idempotency key", "send the "+IdempotencyKeyHeader+" header; a capture without one could not be retried safely")
	}
	var body captureBody
	if rep := decode(r, &body, false); rep != nil {
		return rep
	}
	if msg := body.validate(); msg != "" {
		return problem(r, http.StatusUnprocessableEntity, "Invalid capture", msg)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e != nil && e.captureReply != nil {
		if *e.capture != body {
			return problem(r, http.StatusConflict, "Idempotency key reused",
				fmt.Sprintf("key %q was used for a different capture (order %s, customer %s, %s)", key, e.capture.OrderID, e.capture.CustomerID, e.capture.Amount))
		}
		rep := *e.captureReply
		rep.replayed = true
		return &rep
	}
	if e != nil && e.state.OrderID != "" && e.state.OrderID != body.OrderID {
		return problem(r, http.StatusConflict, "Idempotency key reused",
			fmt.Sprintf("key %q was cancelled for order %s, not %s", key, e.state.OrderID, body.OrderID))
	}
	if e == nil {
		e = &entry{state: State{Key: key}}
		s.remember(key, e)
	}
	e.capture = &body
	e.state.OrderID, e.state.CustomerID, e.state.Amount = body.OrderID, body.CustomerID, body.Amount
	e.state.Captured = catalog.Money{Currency: body.Amount.Currency}
	if e.state.Refunded.Currency == "" {
		e.state.Refunded = catalog.Money{Currency: body.Amount.Currency}
	}

	reason := ""
	switch {
	case e.state.Status == StatusVoided:
		reason = ReasonVoided
	case strings.HasPrefix(body.CustomerID, DeclinePrefix):
		reason = ReasonCardDeclined
	case s.rules.DeclineOverAmount > 0 && body.Amount.Amount > s.rules.DeclineOverAmount:
		reason = ReasonAmountOverLimit
	}
	if reason != "" {
		if e.state.Status != StatusVoided {
			e.state.Status = StatusDeclined
		}
		e.state.Reason = reason
		e.captureReply = jsonReply(http.StatusOK, CaptureResponse{Status: StatusDeclined, Reason: reason})
		s.log.Info("simulator: declined", "key", key, "order_id", body.OrderID, "customer_id", body.CustomerID,
			"amount", body.Amount.Amount, "currency", body.Amount.Currency, "reason", reason)
		return e.captureReply
	}
	e.state.Status = StatusCaptured
	e.state.PaymentID = fmt.Sprintf("pay_%016x", s.rand.Uint64())
	e.state.Captured = body.Amount
	amount := body.Amount
	e.captureReply = jsonReply(http.StatusCreated, CaptureResponse{Status: StatusCaptured, PaymentID: e.state.PaymentID, Amount: &amount})
	s.log.Info("simulator: captured", "key", key, "order_id", body.OrderID, "payment_id", e.state.PaymentID,
		"amount", body.Amount.Amount, "currency", body.Amount.Currency)
	return e.captureReply
}

// remember stores a new key, forgetting the oldest past KeepKeys. Lock
// held.
func (s *Server) remember(key string, e *entry) {
	s.keys[key] = e
	if s.keep <= 0 {
		return
	}
	s.order = append(s.order, key)
	// Slicing off the head frees nothing at once; the next append that
	// outgrows the array copies only the live keys, so the array stays
	// within a small multiple of KeepKeys.
	for len(s.keys) > s.keep && len(s.order) > 0 {
		if old := s.keys[s.order[0]]; old != nil {
			s.forgotten.count(old.state)
		}
		delete(s.keys, s.order[0])
		s.order[0] = ""
		s.order = s.order[1:]
	}
}

func (b captureBody) validate() string {
	var probs []string
	if b.OrderID == "" {
		probs = append(probs, "order_id is required")
	}
	if b.Amount.Amount < 0 {
		probs = append(probs, "amount.amount must not be negative")
	}
	if len(b.Amount.Currency) != 3 {
		probs = append(probs, "amount.currency must be an ISO 4217 code")
	}
	return strings.Join(probs, "; ")
}

func (s *Server) cancel(r *http.Request) *reply {
	key := r.PathValue("key")
	if h := r.Header.Get(IdempotencyKeyHeader); h != "" && h != key {
		return problem(r, http.StatusBadRequest, "Idempotency key mismatch",
			fmt.Sprintf("header %s %q names another key than the path (%q)", IdempotencyKeyHeader, h, key))
	}
	var body cancelBody
	if rep := decode(r, &body, true); rep != nil {
		return rep
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e != nil && body.OrderID != "" && e.state.OrderID != "" && e.state.OrderID != body.OrderID {
		return problem(r, http.StatusConflict, "Idempotency key reused",
			fmt.Sprintf("key %q belongs to order %s, not %s", key, e.state.OrderID, body.OrderID))
	}
	if e != nil && e.cancelReply != nil {
		rep := *e.cancelReply
		rep.replayed = true
		return &rep
	}
	if e == nil {
		e = &entry{state: State{Key: key, OrderID: body.OrderID}}
		s.remember(key, e)
	}
	if e.state.Status == StatusCaptured {
		e.state.Status = StatusRefunded
		e.state.Refunded = e.state.Captured
		amount := e.state.Captured
		e.cancelReply = jsonReply(http.StatusOK, CancelResponse{Status: StatusRefunded, PaymentID: e.state.PaymentID, Amount: &amount})
		s.log.Info("simulator: refunded", "key", key, "order_id", e.state.OrderID, "payment_id", e.state.PaymentID,
			"amount", amount.Amount, "currency", amount.Currency)
		return e.cancelReply
	}
	// Never captured (unknown, or declined): void the key so that no
	// capture under it ever takes money.
	e.state.Status = StatusVoided
	e.cancelReply = jsonReply(http.StatusOK, CancelResponse{Status: StatusVoided})
	s.log.Info("simulator: voided", "key", key, "order_id", e.state.OrderID)
	return e.cancelReply
}

func (s *Server) get(r *http.Request) *reply {
	st, ok := s.State(r.PathValue("key"))
	if !ok {
		return problem(r, http.StatusNotFound, "Not found", fmt.Sprintf("no capture or cancel under key %q", r.PathValue("key")))
	}
	return jsonReply(http.StatusOK, st)
}

// decode reads a strict JSON body into v; an empty body is accepted when
// optional. It returns the problem to answer, or nil.
func decode(r *http.Request, v any, optional bool) *reply {
	b, err := io.ReadAll(io.LimitReader(r.Body, httpx.MaxBodyBytes+1))
	if err != nil {
		return problem(r, http.StatusBadRequest, "Unreadable request body", err.Error())
	}
	if len(b) > httpx.MaxBodyBytes {
		return problem(r, http.StatusRequestEntityTooLarge, "Request body too large", fmt.Sprintf("at most %d bytes", httpx.MaxBodyBytes))
	}
	if optional && len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := events.DecodeData(b, v); err != nil {
		return problem(r, http.StatusBadRequest, "Malformed JSON", events.Detail(err))
	}
	return nil
}

// State returns what the simulator knows of key.
func (s *Server) State(key string) (State, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[key]
	if !ok {
		return State{}, false
	}
	return e.state, true
}

// States returns every key's state, ordered by key.
func (s *Server) States() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]State, 0, len(s.keys))
	for _, e := range s.keys {
		out = append(out, e.state)
	}
	slices.SortFunc(out, func(a, b State) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Stats returns the books.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Requests: s.requests, CapturedTotal: map[string]int64{}, RefundedTotal: map[string]int64{}}
	st.add(s.forgotten)
	for _, e := range s.keys {
		st.count(e.state)
	}
	return st
}

// count adds the effects of one key to st.
func (st *Stats) count(state State) {
	if state.PaymentID != "" {
		st.Captures++
		st.CapturedTotal[state.Captured.Currency] += state.Captured.Amount
	}
	if state.Reason != "" {
		st.Declines++
	}
	switch state.Status {
	case StatusRefunded:
		st.Refunds++
		st.RefundedTotal[state.Refunded.Currency] += state.Refunded.Amount
	case StatusVoided:
		st.Voids++
	}
}

// add adds the effects counted in o to st.
func (st *Stats) add(o Stats) {
	st.Captures += o.Captures
	st.Declines += o.Declines
	st.Refunds += o.Refunds
	st.Voids += o.Voids
	for c, n := range o.CapturedTotal {
		st.CapturedTotal[c] += n
	}
	for c, n := range o.RefundedTotal {
		st.RefundedTotal[c] += n
	}
}

// Rules returns the decline rules in force.
func (s *Server) Rules() Rules {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rules
}

// SetRules changes the decline rules for captures to come; answers
// already given are replayed unchanged.
func (s *Server) SetRules(r Rules) error {
	if r.DeclineOverAmount < 0 {
		return errors.New("simulator: decline_over_amount must not be negative")
	}
	s.mu.Lock()
	s.rules = r
	s.mu.Unlock()
	s.log.Info("simulator: rules changed", "decline_over_amount", r.DeclineOverAmount)
	return nil
}

func (s *Server) postRules(w http.ResponseWriter, r *http.Request) {
	var rules Rules
	if !httpx.DecodeJSON(w, r, &rules) {
		return
	}
	if err := s.SetRules(rules); err != nil {
		httpx.WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid rules", err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s.Rules())
}
