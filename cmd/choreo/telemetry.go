package main

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events/httpauth"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/telemetry"
)

// testSpanExporter, when a test sets it, receives the spans of every
// system the test starts, instead of what the environment says.
var testSpanExporter sdktrace.SpanExporter

// routes is the mux a service registers its routes on: each route gets a
// server span (named "<METHOD> <route>", a child of the caller's W3C
// trace context) from the service's own tracer provider, and its requests
// are counted and timed by route and status.
type routes struct {
	mux     *apiMux
	service string
	tracer  trace.TracerProvider
	metrics *telemetry.Metrics
	// auth checks each route's scope (nil: authentication off); limit is
	// the per-client rate limit (nil: none).
	auth  *httpauth.Verifier
	limit *httpauth.Limiter
}

var _ httpx.Mux = routes{}

func (r routes) Handle(pattern string, h http.Handler) {
	// The limit inside the check, so that it counts per token subject.
	h = r.auth.Require(scopeOf(r.service, pattern), r.limit.Wrap(h))
	r.mux.handleFor(r.service, pattern, otelhttp.NewHandler(r.metrics.HTTP(r.service, pattern, h), pattern,
		otelhttp.WithTracerProvider(r.tracer),
		otelhttp.WithSpanNameFormatter(func(op string, req *http.Request) string {
			if req.Pattern != "" {
				return req.Pattern
			}
			return op
		})))
}

func (r routes) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	r.Handle(pattern, http.HandlerFunc(h))
}
