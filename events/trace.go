package events

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Trace context travels with every message in the W3C Trace Context
// headers, and inside every event's envelope as the CloudEvents
// distributed-tracing extension (the same two values), so that a consumer
// that only sees the CloudEvent keeps the trace too. The context a
// message carries is its creation context: the span in which the event
// was written to the outbox.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// TracerName is the instrumentation scope of the spans package events
// and its subpackages start.
const TracerName = "github.com/choreo-dev/choreo/events"

// MessagingSystem is the messaging.system attribute of choreo's spans.
const MessagingSystem = "nats"

// w3c is OTel's W3C Trace Context propagator: traceparent and tracestate,
// with the sampled flag, exactly as the specification has them.
var w3c = propagation.TraceContext{}

// HeaderCarrier lets OTel's propagators read and write NATS headers, whose
// keys, unlike HTTP's, are case-sensitive.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the keys present.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes the trace context of ctx's span into h (nothing when
// ctx has none).
func InjectTrace(ctx context.Context, h nats.Header) { w3c.Inject(ctx, HeaderCarrier(h)) }

// ExtractTrace returns ctx with the remote span context h carries, if any.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	return w3c.Extract(ctx, HeaderCarrier(h))
}

// TraceID returns the trace id of a W3C traceparent value.
func TraceID(traceparent string) (string, bool) {
	sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.MapCarrier{HeaderTraceParent: traceparent}))
	if !sc.IsValid() {
		return "", false
	}
	return sc.TraceID().String(), true
}

// Tracer returns the tracer for spans started in ctx: that of the
// provider of ctx's span, so that a service's spans share its provider
// (and its service.name) wherever they are started, else the global one.
func Tracer(ctx context.Context) trace.Tracer {
	tp := otel.GetTracerProvider()
	if span := trace.SpanFromContext(ctx); span.SpanContext().IsValid() {
		tp = span.TracerProvider()
	}
	return tp.Tracer(TracerName)
}

// SubjectTemplate returns the subject with its last token, the aggregate's
// id, as a wildcard: "orders.placed.*" for "orders.placed.o-1". A span's
// name needs a destination of low cardinality.
func SubjectTemplate(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[:i] + ".*"
	}
	return subject
}

// MessageAttributes are the OpenTelemetry messaging and CloudEvents
// attributes of a span about the event with the given subject, id and
// type, for the operation op ("create", "send", "process").
func MessageAttributes(op, subject, template, id, typ string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(MessagingSystem),
		semconv.MessagingOperationTypeKey.String(op),
		semconv.MessagingOperationName(op),
		semconv.MessagingDestinationName(subject),
		semconv.MessagingDestinationTemplate(template),
	}
	if id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id), semconv.CloudEventsEventID(id))
	}
	if typ != "" {
		attrs = append(attrs, semconv.CloudEventsEventType(typ))
	}
	return attrs
}

type causeKey struct{}

// WithCause returns a context naming id as the cause of the events created
// in it: the consumer sets it to the id of the message being handled, and
// the outbox records it in each event's causationid.
func WithCause(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, causeKey{}, id)
}

// CauseFrom returns the cause carried by ctx, or "".
func CauseFrom(ctx context.Context) string {
	s, _ := ctx.Value(causeKey{}).(string)
	return s
}
