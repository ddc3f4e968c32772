// Package telemetry makes choreo's services observable the way operators
// expect: OpenTelemetry traces that follow a saga across services (set up
// from the standard OTEL_* environment variables), Prometheus metrics, and
// structured logs that name the trace and the message they are about.
// Each piece wraps the events library in one place — a consumer
// Middleware, a relay Observer, an HTTP handler — so that a service's own
// code carries none of it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
)

// TraceMessages is a consumer Middleware that handles each message in a
// process span, as the OpenTelemetry messaging conventions have it: kind
// Consumer, its parent the message's creation context (the create span of
// the service that published it), named after the route's subject
// pattern ("process orders.placed.*"). The events its handling publishes
// are created in it, so one saga is one trace. The span records the
// outcome; a retry or a dead letter marks it as an error.
func TraceMessages(tp trace.TracerProvider) consumer.Middleware {
	tracer := tp.Tracer(events.TracerName)
	return func(ctx context.Context, m *consumer.Message) (context.Context, func(consumer.Outcome)) {
		ctx, span := tracer.Start(events.ExtractTrace(ctx, m.Header), "process "+events.SubjectTemplate(m.Subject),
			trace.WithSpanKind(trace.SpanKindConsumer))
		return ctx, func(o consumer.Outcome) {
			defer span.End()
			if !span.IsRecording() {
				return
			}
			template := m.Route
			if template == "" {
				template = events.SubjectTemplate(m.Subject)
			}
			span.SetName("process " + template)
			typ := m.Type
			if typ == m.Subject {
				typ = "" // a command: no CloudEvents type
			}
			span.SetAttributes(events.MessageAttributes("process", m.Subject, template, m.ID, typ)...)
			span.SetAttributes(
				semconv.MessagingConsumerGroupName(m.Consumer),
				semconv.MessagingMessageBodySize(len(m.Data)),
				attrStream.String(m.Stream),
				attrSequence.Int64(int64(m.Sequence)),
				attrDelivered.Int64(int64(m.Delivered)),
				attrOutcome.String(string(o.Result)))
			if m.Key != "" {
				span.SetAttributes(semconv.CloudEventsEventSubject(m.Key))
			}
			if o.Err != nil {
				span.RecordError(o.Err)
				span.SetStatus(codes.Error, o.Err.Error())
			}
		}
	}
}

// Span attributes choreo adds beyond the conventions.
const (
	attrStream    = attribute.Key("messaging.nats.stream")
	attrSequence  = attribute.Key("messaging.nats.stream.sequence")
	attrDelivered = attribute.Key("messaging.nats.delivered")
	attrOutcome   = attribute.Key("choreo.outcome")
)

// TracingConfig configures the tracer providers of a process.
type TracingConfig struct {
	// Getenv reads the environment (default: none set). The OTel SDK also
	// reads OTEL_TRACES_SAMPLER(_ARG), OTEL_RESOURCE_ATTRIBUTES and the
	// OTLP exporter's OTEL_EXPORTER_OTLP_* variables itself, from the
	// process environment.
	Getenv func(string) string
	// Exporter, when set, receives every span, whatever the environment
	// says: tests pass an in-memory one. It stays the caller's to shut
	// down.
	Exporter sdktrace.SpanExporter
	// Version is the service.version of every span.
	Version string
}

// Tracing holds the tracer providers of a process: one per service, so
// that each span names its service, all sharing one exporter.
type Tracing struct {
	exporter  sdktrace.SpanExporter // nil: nothing is exported
	owned     bool                  // the exporter is ours to shut down
	sampler   sdktrace.Sampler      // nil: the SDK's, from the environment
	version   string
	mu        sync.Mutex
	providers map[string]*sdktrace.TracerProvider
}

// NewTracing sets up tracing from the environment. Nothing is exported
// unless the environment asks for it: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, or OTEL_TRACES_EXPORTER=otlp.
// Then spans go over OTLP/HTTP (http/protobuf) and the SDK's default
// sampler applies (OTEL_TRACES_SAMPLER, parentbased_always_on when
// unset). When nothing is exported, spans still get ids — every event
// carries a trace id that logs and `choreo trace` show — but none is
// recorded unless the incoming trace context says it is sampled.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	t := &Tracing{exporter: cfg.Exporter, version: cfg.Version, providers: map[string]*sdktrace.TracerProvider{}}
	if t.exporter == nil {
		export, err := exportRequested(getenv)
		if err != nil {
			return nil, err
		}
		if export {
			if t.exporter, err = otlptracehttp.New(ctx); err != nil {
				return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
			}
			t.owned = true
		}
	}
	if getenv("OTEL_TRACES_SAMPLER") == "" && t.exporter == nil {
		// Recording spans nobody exports costs CPU for nothing; ids and
		// an upstream's sampling decision still propagate.
		t.sampler = sdktrace.ParentBased(sdktrace.NeverSample())
	}
	return t, nil
}

// exportRequested reads what the environment says about exporting traces.
func exportRequested(getenv func(string) string) (bool, error) {
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false, nil
	case "", "otlp":
		if exp == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, nil
		}
	default:
		return false, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: choreo exports traces with otlp, or none", exp)
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" {
		return false, fmt.Errorf("telemetry: OTLP protocol %q: choreo exports OTLP over http/protobuf (port 4318); set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", protocol)
	}
	return true, nil
}

// Exporting reports whether spans are exported.
func (t *Tracing) Exporting() bool { return t.exporter != nil }

// Provider returns the tracer provider of the named service, creating it
// on first use; its spans carry service.name=service.
func (t *Tracing) Provider(service string) trace.TracerProvider {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp, ok := t.providers[service]; ok {
		return tp
	}
	res, err := resource.New(context.Background(),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES; the service name below wins
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceNamespace("choreo"), semconv.ServiceVersion(t.version)))
	if err != nil {
		otel.Handle(err) // a partial resource is still one
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if t.sampler != nil {
		opts = append(opts, sdktrace.WithSampler(t.sampler))
	}
	if t.exporter != nil {
		opts = append(opts, sdktrace.WithBatcher(sharedExporter{t.exporter}))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.providers[service] = tp
	return tp
}

// Install makes the provider of service the global one, and W3C Trace
// Context and Baggage the global propagators: what code without a
// provider of its own (HTTP instrumentation, say) uses.
func (t *Tracing) Install(service string) {
	otel.SetTracerProvider(t.Provider(service))
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

// ForceFlush exports every span ended so far.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	var errs []error
	for _, tp := range t.snapshot() {
		errs = append(errs, tp.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes and stops every provider, then the exporter unless
// the config gave it.
func (t *Tracing) Shutdown(ctx context.Context) error {
	var errs []error
	for _, tp := range t.snapshot() {
		errs = append(errs, tp.Shutdown(ctx))
	}
	if t.owned {
		errs = append(errs, t.exporter.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

func (t *Tracing) snapshot() []*sdktrace.TracerProvider {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*sdktrace.TracerProvider, 0, len(t.providers))
	for _, tp := range t.providers {
		out = append(out, tp)
	}
	return out
}

// sharedExporter is the exporter as each provider's batcher sees it: a
// provider shutting down must not stop the exporter the others share.
type sharedExporter struct{ sdktrace.SpanExporter }

func (sharedExporter) Shutdown(context.Context) error { return nil }
