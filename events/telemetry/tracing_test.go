package telemetry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/telemetry"
)

const (
	creationTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	creationSpan  = "00f067aa0ba902b7"
)

func newTracing(t *testing.T, env map[string]string) (*telemetry.Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{Exporter: exp, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

// handle runs a message through the middleware as the consumer does: the
// route fills the message in, the handler works in the context, the
// outcome ends it.
func handle(t *testing.T, mw consumer.Middleware, header nats.Header, outcome consumer.Outcome) trace.SpanContext {
	t.Helper()
	m := &consumer.Message{Subject: "orders.placed.o-1", Header: header, Stream: "ORDERS", Sequence: 7, Delivered: 2, Consumer: "inventory"}
	ctx, done := mw(context.Background(), m)
	m.Route, m.ID, m.Type, m.Key = "orders.placed.*", "evt-1", "choreo.orders.placed.v1", "o-1"
	sc := trace.SpanContextFromContext(ctx)
	done(outcome)
	return sc
}

// The process span of a message is a child of the message's creation
// context, named after its route, with the messaging attributes and the
// outcome; a failure marks it as an error.
func TestTraceMessagesProcessSpan(t *testing.T) {
	tr, exp := newTracing(t, nil)
	mw := telemetry.TraceMessages(tr.Provider("inventory"))
	sampled := nats.Header{events.HeaderTraceParent: {"00-" + creationTrace + "-" + creationSpan + "-01"}}
	sc := handle(t, mw, sampled, consumer.Outcome{Result: consumer.Retried, Err: errors.New("provider down")})
	if sc.TraceID().String() != creationTrace {
		t.Errorf("handling context in trace %s, want the message's %s", sc.TraceID(), creationTrace)
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "process orders.placed.*" || s.SpanKind != trace.SpanKindConsumer {
		t.Errorf("span %q of kind %s, want \"process orders.placed.*\", consumer", s.Name, s.SpanKind)
	}
	if s.Parent.TraceID().String() != creationTrace || s.Parent.SpanID().String() != creationSpan || !s.Parent.IsRemote() {
		t.Errorf("parent %s/%s, want the creation context %s/%s", s.Parent.TraceID(), s.Parent.SpanID(), creationTrace, creationSpan)
	}
	want := map[string]string{
		string(semconv.MessagingSystemKey):              "nats",
		string(semconv.MessagingOperationTypeKey):       "process",
		string(semconv.MessagingDestinationNameKey):     "orders.placed.o-1",
		string(semconv.MessagingDestinationTemplateKey): "orders.placed.*",
		string(semconv.MessagingMessageIDKey):           "evt-1",
		string(semconv.MessagingConsumerGroupNameKey):   "inventory",
		string(semconv.CloudEventsEventTypeKey):         "choreo.orders.placed.v1",
		string(semconv.CloudEventsEventSubjectKey):      "o-1",
		"messaging.nats.delivered":                      "2",
		"choreo.outcome":                                "retried",
	}
	got := map[string]string{}
	for _, kv := range s.Attributes {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	if s.Status.Code != codes.Error || !strings.Contains(s.Status.Description, "provider down") {
		t.Errorf("status %v %q, want an error saying why", s.Status.Code, s.Status.Description)
	}
	if v, _ := s.Resource.Set().Value(semconv.ServiceNameKey); v.AsString() != "inventory" {
		t.Errorf("service.name %q, want inventory", v.AsString())
	}
}

// An upstream that did not sample its trace is honoured: nothing is
// recorded, and the trace (and its flag) carry on.
func TestTraceMessagesHonoursTheSampledFlag(t *testing.T) {
	tr, exp := newTracing(t, nil)
	mw := telemetry.TraceMessages(tr.Provider("inventory"))
	unsampled := nats.Header{events.HeaderTraceParent: {"00-" + creationTrace + "-" + creationSpan + "-00"}}
	sc := handle(t, mw, unsampled, consumer.Outcome{Result: consumer.Handled})
	if sc.TraceID().String() != creationTrace || sc.IsSampled() {
		t.Errorf("handling context %s sampled=%v, want the trace %s, not sampled", sc.TraceID(), sc.IsSampled(), creationTrace)
	}
	_ = tr.ForceFlush(context.Background())
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans recorded for an unsampled trace, want none", n)
	}
}

// Without an exporter nothing is recorded, but a message that starts a
// saga still gets a trace id for everything it causes.
func TestTracesHaveIDsWhenNothingIsExported(t *testing.T) {
	tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	if tr.Exporting() {
		t.Fatal("exporting with an empty environment, want nothing exported")
	}
	mw := telemetry.TraceMessages(tr.Provider("orders"))
	m := &consumer.Message{Subject: "cmd.orders.place", Header: nats.Header{}}
	ctx, done := mw(context.Background(), m)
	defer done(consumer.Outcome{Result: consumer.Handled})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.IsSampled() || trace.SpanFromContext(ctx).IsRecording() {
		t.Errorf("root context %+v recording=%v, want valid ids, not sampled, not recording", sc, trace.SpanFromContext(ctx).IsRecording())
	}
	h := nats.Header{}
	events.InjectTrace(ctx, h)
	if id, ok := events.TraceID(h.Get(events.HeaderTraceParent)); !ok || id != sc.TraceID().String() {
		t.Errorf("an event created there carries %q, want trace %s", h.Get(events.HeaderTraceParent), sc.TraceID())
	}
}

// The environment decides whether spans are exported: nothing by default,
// OTLP over HTTP when an endpoint is set; what choreo cannot do is an
// error that says what to set instead.
func TestTracingEnvironment(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		export  bool
		wantErr string
	}{
		{name: "nothing set", env: nil},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, export: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, export: true},
		{name: "otlp exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, export: true},
		{name: "none wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: "http/protobuf"},
		{name: "zipkin", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "otlp, or none"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{Getenv: func(k string) string { return tt.env[k] }})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			if tr.Exporting() != tt.export {
				t.Errorf("exporting %v, want %v", tr.Exporting(), tt.export)
			}
		})
	}
}
