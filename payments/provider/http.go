package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/payments"
)

// ErrUnavailable is wrapped by every error of a call that HTTP refused to
// make because the provider is known to be failing (the circuit breaker is
// open, or half-open with its probe already in flight) or because all
// MaxConcurrent slots are busy. Such a call never reached the provider, so
// unlike other errors its outcome is known: nothing happened.
//
// It wraps payments.ErrProviderUnavailable, the sentinel the payments
// service looks for, so errors.Is matches either.
var ErrUnavailable = fmt.Errorf("provider: %w", payments.ErrProviderUnavailable)

// ErrInvalidConfig is wrapped by the errors of NewHTTP for a config it
// cannot use.
var ErrInvalidConfig = errors.New("provider: invalid config")

// StatusError is an answer the provider gave with an unexpected HTTP
// status: 5xx (the provider failed; the outcome is unknown) or 4xx other
// than a decline (the provider refused the request itself — a missing
// key, a malformed body, a key reused for a different request — and the
// same request will be refused again). HTTP returns it wrapped, as a plain
// error: it does not mark it events.Permanent, since the caller knows
// better what a refused request means to it; check Permanent or the
// status code with errors.As.
type StatusError struct {
	StatusCode int
	// Title and Detail come from the RFC 9457 problem in the body, if any.
	Title  string
	Detail string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("provider answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Detail != "" {
		msg += ": " + e.Detail
	} else if e.Title != "" {
		msg += ": " + e.Title
	}
	return msg
}

// Permanent reports whether the provider refused the request itself (a
// 4xx): repeating it unchanged will not help.
func (e *StatusError) Permanent() bool { return e.StatusCode >= 400 && e.StatusCode < 500 }

// HTTPConfig configures an HTTP provider client. Zero fields take the
// documented defaults.
type HTTPConfig struct {
	// BaseURL is the provider's API root, for example
	// "http://127.0.0.1:8090" (the /v1 paths are appended). Required.
	BaseURL string
	// Timeout bounds each call, from sending the request to reading the
	// answer. Default 2s.
	Timeout time.Duration
	// MaxConcurrent is the bulkhead: at most this many calls are in flight
	// at once. Default 16.
	MaxConcurrent int
	// QueueTimeout is how long a call waits for a free slot when all
	// MaxConcurrent are busy, within its context. Default 0: it does not
	// wait but fails at once with ErrUnavailable — a consumer that
	// redelivers later is better off than a pile of handlers queued
	// behind a slow provider.
	QueueTimeout time.Duration
	// BreakerFailures is how many consecutive failures (transport errors,
	// timeouts, 5xx) open the circuit breaker. Default 5.
	BreakerFailures int
	// BreakerOpenTimeout is how long the breaker stays open before it lets
	// one probe call through; the probe's success closes it, its failure
	// opens it again. Default 2s.
	BreakerOpenTimeout time.Duration
	// HTTPClient makes the requests. Default: a client whose transport
	// keeps MaxConcurrent idle connections to the provider. Its own
	// Timeout, if any, applies on top of Timeout.
	HTTPClient *http.Client
	// Logger receives breaker state changes. Default: discard.
	Logger *slog.Logger
}

func (c *HTTPConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 16
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpenTimeout == 0 {
		c.BreakerOpenTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.MaxConcurrent
		// Each call is a client span in the caller's trace, and carries
		// its trace context to the provider.
		c.HTTPClient = &http.Client{Transport: otelhttp.NewTransport(t, otelhttp.WithSpanNameFormatter(clientSpanName))}
	}
}

// clientSpanName names a call's client span after its method and URL
// template, as the HTTP conventions have it: the capture key in a cancel's
// path would make every name unique.
func clientSpanName(_ string, r *http.Request) string {
	path := r.URL.Path
	if strings.HasPrefix(path, "/v1/captures/") && strings.HasSuffix(path, "/cancel") {
		path = "/v1/captures/{key}/cancel"
	}
	return r.Method + " " + path
}

// Validate reports the first problem of c, after defaults.
func (c HTTPConfig) Validate() error {
	u, err := url.Parse(c.BaseURL)
	switch {
	case c.BaseURL == "":
		return fmt.Errorf("%w: base url is required", ErrInvalidConfig)
	case err != nil:
		return fmt.Errorf("%w: base url: %w", ErrInvalidConfig, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("%w: base url %q is not an http(s) url", ErrInvalidConfig, c.BaseURL)
	case c.Timeout < 0:
		return fmt.Errorf("%w: timeout %s is negative", ErrInvalidConfig, c.Timeout)
	case c.MaxConcurrent < 0:
		return fmt.Errorf("%w: max concurrent %d is negative", ErrInvalidConfig, c.MaxConcurrent)
	case c.QueueTimeout < 0:
		return fmt.Errorf("%w: queue timeout %s is negative", ErrInvalidConfig, c.QueueTimeout)
	case c.BreakerFailures < 0:
		return fmt.Errorf("%w: breaker failures %d is negative", ErrInvalidConfig, c.BreakerFailures)
	case c.BreakerOpenTimeout < 0:
		return fmt.Errorf("%w: breaker open timeout %s is negative", ErrInvalidConfig, c.BreakerOpenTimeout)
	}
	return nil
}

// HTTP is a payments.Provider that calls a provider over HTTP with the API
// of package simulator. It protects its caller three ways:
//
//   - a timeout per call (HTTPConfig.Timeout);
//   - a bulkhead: at most MaxConcurrent calls in flight; a call that finds
//     them all busy fails with ErrUnavailable, at once or after
//     QueueTimeout;
//   - a circuit breaker: after BreakerFailures consecutive failures, calls
//     fail at once with ErrUnavailable, without reaching the provider,
//     for BreakerOpenTimeout; then one probe call decides whether it
//     closes again.
//
// Transport errors, timeouts and 5xx answers are failures for the breaker
// and are returned as errors (the outcome is unknown: retry with the same
// key). A decline is a result, neither an error nor a breaker failure. A
// 4xx other than a decline is returned as a *StatusError and is not a
// breaker failure: the provider is up, the request is wrong. A call whose
// caller's context ends is not counted either way.
//
// It is safe for concurrent use.
type HTTP struct {
	base    string
	client  *http.Client
	timeout time.Duration
	queue   time.Duration
	slots   chan struct{}
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	log     *slog.Logger
	calls   *prometheus.HistogramVec
	state   prometheus.GaugeFunc
}

var _ payments.Provider = (*HTTP)(nil)

// NewHTTP returns a client of the provider at cfg.BaseURL. It makes no
// request.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &HTTP{
		base:    strings.TrimRight(cfg.BaseURL, "/"),
		client:  cfg.HTTPClient,
		timeout: cfg.Timeout,
		queue:   cfg.QueueTimeout,
		slots:   make(chan struct{}, cfg.MaxConcurrent),
		log:     cfg.Logger,
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "choreo_provider_request_duration_seconds",
			Help:    "Payment provider calls by operation (capture, cancel) and outcome: captured, declined, refunded, voided, rejected (a 4xx), unavailable (not made: breaker open or bulkhead full), failed (no answer, a 5xx, a timeout).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation", "outcome"}),
	}
	h.state = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "choreo_circuit_breaker_state",
		Help:        "State of a circuit breaker: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"breaker": "payment-provider"},
	}, func() float64 { return float64(h.breaker.State()) })
	failures := uint32(cfg.BreakerFailures)
	h.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    "payment-provider",
		Timeout: cfg.BreakerOpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= failures
		},
		// A refused request proves the provider is up.
		IsSuccessful: func(err error) bool {
			var se *StatusError
			return err == nil || errors.As(err, &se) && se.Permanent()
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			h.log.Log(context.Background(), lvl, "provider: circuit breaker "+to.String(),
				"breaker", name, "from", from.String(), "to", to.String(), "base_url", h.base)
		},
	})
	return h, nil
}

// Collectors returns the client's metrics, for a Prometheus registry: the
// calls' durations by outcome and the circuit breaker's state.
func (h *HTTP) Collectors() []prometheus.Collector { return []prometheus.Collector{h.calls, h.state} }

// observe records a call of operation that started at start.
func (h *HTTP) observe(operation string, start time.Time, outcome string, err error) {
	if err != nil {
		var se *StatusError
		switch {
		case errors.Is(err, ErrUnavailable):
			outcome = "unavailable"
		case errors.As(err, &se) && se.Permanent():
			outcome = "rejected"
		default:
			outcome = "failed"
		}
	}
	h.calls.WithLabelValues(operation, outcome).Observe(time.Since(start).Seconds())
}

// BreakerState returns the circuit breaker's state: "closed", "half-open"
// or "open".
func (h *HTTP) BreakerState() string { return h.breaker.State().String() }

// errCallerGone marks a call that ended because its caller's context did,
// which says nothing about the provider's health.
var errCallerGone = errors.New("caller context done")

type captureBody struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Amount     catalog.Money `json:"amount"`
}

type cancelBody struct {
	OrderID string `json:"order_id,omitempty"`
}

type answer struct {
	Status    string         `json:"status"`
	PaymentID string         `json:"payment_id"`
	Amount    *catalog.Money `json:"amount"`
	Reason    string         `json:"reason"`
}

// Capture implements payments.Provider with POST /v1/captures. The errors
// it returns wrap ErrUnavailable (the call was not made), a *StatusError
// (the provider answered with a failure), or the transport's or the
// context's error.
func (h *HTTP) Capture(ctx context.Context, req payments.CaptureRequest) (payments.CaptureResult, error) {
	if req.IdempotencyKey == "" {
		return payments.CaptureResult{}, ErrNoIdempotencyKey
	}
	body := captureBody{OrderID: req.OrderID, CustomerID: req.CustomerID, Amount: req.Amount}
	start := time.Now()
	a, err := h.call(ctx, req.IdempotencyKey, "/v1/captures", body)
	if err == nil && !(a.Status == "captured" && a.PaymentID != "") && a.Status != "declined" {
		err = fmt.Errorf("unexpected answer %+v", a)
	}
	h.observe("capture", start, a.Status, err)
	if err != nil {
		return payments.CaptureResult{}, fmt.Errorf("provider: capture %s: %w", req.IdempotencyKey, err)
	}
	if a.Status == "declined" {
		return payments.CaptureResult{Declined: true, DeclineReason: a.Reason}, nil
	}
	return payments.CaptureResult{PaymentID: a.PaymentID}, nil
}

// Cancel implements payments.Provider with POST
// /v1/captures/{key}/cancel. Its errors are those of Capture.
func (h *HTTP) Cancel(ctx context.Context, req payments.CancelRequest) (payments.CancelResult, error) {
	if req.IdempotencyKey == "" {
		return payments.CancelResult{}, ErrNoIdempotencyKey
	}
	path := "/v1/captures/" + url.PathEscape(req.IdempotencyKey) + "/cancel"
	start := time.Now()
	a, err := h.call(ctx, req.IdempotencyKey, path, cancelBody{OrderID: req.OrderID})
	if err == nil && !(a.Status == "refunded" && a.Amount != nil) && a.Status != "voided" {
		err = fmt.Errorf("unexpected answer %+v", a)
	}
	h.observe("cancel", start, a.Status, err)
	if err != nil {
		return payments.CancelResult{}, fmt.Errorf("provider: cancel %s: %w", req.IdempotencyKey, err)
	}
	if a.Status == "voided" {
		return payments.CancelResult{Voided: true}, nil
	}
	return payments.CancelResult{Refunded: true, Amount: *a.Amount, PaymentID: a.PaymentID}, nil
}

// call POSTs body to path under the bulkhead and the breaker, and decodes
// a 2xx answer.
func (h *HTTP) call(ctx context.Context, key, path string, body any) (answer, error) {
	if err := h.acquire(ctx); err != nil {
		return answer{}, err
	}
	defer func() { <-h.slots }()

	done, err := h.breaker.Allow()
	if err != nil {
		// Open, or half-open with the probe already out.
		return answer{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	a, err := h.post(ctx, key, path, body)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", errCallerGone, err)
	}
	done(err)
	return a, err
}

// acquire takes a bulkhead slot, waiting at most QueueTimeout.
func (h *HTTP) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	full := fmt.Errorf("%w: all %d calls in flight", ErrUnavailable, cap(h.slots))
	if h.queue <= 0 {
		return full
	}
	t := time.NewTimer(h.queue)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return full
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", full, context.Cause(ctx))
	}
}

// post makes one request within the per-call timeout.
func (h *HTTP) post(ctx context.Context, key, path string, body any) (answer, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return answer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+path, bytes.NewReader(b))
	if err != nil {
		return answer{}, err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Idempotency-Key", key)
	resp, err := h.client.Do(r)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, httpx.MaxBodyBytes))
	if err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{StatusCode: resp.StatusCode}
		var p httpx.Problem
		if json.Unmarshal(data, &p) == nil {
			se.Title, se.Detail = p.Title, p.Detail
		}
		return answer{}, se
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return answer{}, fmt.Errorf("decode answer: %w", err)
	}
	return a, nil
}
