package main

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events/httpx"
)

// testSpanExporter, when a test sets it, receives the spans of every
// system the test starts, instead of what the environment says.
var testSpanExporter sdktrace.SpanExporter

// routes is the mux a service registers its routes on: each route gets a
// server span (named "<METHOD> <route>", a child of the caller's W3C
// trace context) from the service's own tracer provider.
type routes struct {
	mux    *http.ServeMux
	tracer trace.TracerProvider
}

var _ httpx.Mux = routes{}

func (r routes) Handle(pattern string, h http.Handler) {
	r.mux.Handle(pattern, otelhttp.NewHandler(h, pattern,
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
