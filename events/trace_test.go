package events_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
)

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parent      = "00-" + parentTrace + "-00f067aa0ba902b7-01"
)

// A trace context goes into NATS headers and comes out as it went in,
// tracestate and sampled flag included; header keys are the W3C ones,
// lower case, as NATS headers are case-sensitive.
func TestTraceContextRoundTripsThroughHeaders(t *testing.T) {
	in := nats.Header{events.HeaderTraceParent: {parent}, events.HeaderTraceState: {"vendor=value"}}
	ctx := events.ExtractTrace(context.Background(), in)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceID().String() != parentTrace || !sc.IsSampled() {
		t.Fatalf("extracted %+v, want the remote, sampled span context of %s", sc, parent)
	}
	if got := sc.TraceState().Get("vendor"); got != "value" {
		t.Errorf("tracestate vendor=%q, want value", got)
	}
	out := nats.Header{}
	events.InjectTrace(ctx, out)
	if out.Get(events.HeaderTraceParent) != parent || out.Get(events.HeaderTraceState) != "vendor=value" {
		t.Errorf("injected %v, want %s and vendor=value", out, parent)
	}

	unsampled := "00-" + parentTrace + "-00f067aa0ba902b7-00"
	ctx = events.ExtractTrace(context.Background(), nats.Header{events.HeaderTraceParent: {unsampled}})
	if sc := trace.SpanContextFromContext(ctx); !sc.IsValid() || sc.IsSampled() {
		t.Errorf("extracted %+v from %s, want valid and not sampled", sc, unsampled)
	}
	if ctx := events.ExtractTrace(context.Background(), nats.Header{"Traceparent": {parent}}); trace.SpanContextFromContext(ctx).IsValid() {
		t.Errorf("a Traceparent header (not the W3C name) was read as trace context")
	}
	empty := nats.Header{}
	events.InjectTrace(context.Background(), empty)
	if len(empty) != 0 {
		t.Errorf("no span in the context: injected %v, want nothing", empty)
	}
}

func TestTraceID(t *testing.T) {
	if id, ok := events.TraceID(parent); !ok || id != parentTrace {
		t.Errorf("TraceID(%q) = %q, %v; want %s", parent, id, ok, parentTrace)
	}
	for _, bad := range []string{
		"",
		"garbage",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id is invalid
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // 31 hex digits
		"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", // not hex
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01",   // short span id
	} {
		if id, ok := events.TraceID(bad); ok {
			t.Errorf("TraceID(%q) = %q, ok; want not ok", bad, id)
		}
	}
}

// Spans started in a context take the tracer of that context's span, so
// that each service's spans keep its provider; without one, the global.
func TestTracerFollowsTheContextsProvider(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "parent")
	defer span.End()
	_, child := events.Tracer(ctx).Start(ctx, "child")
	defer child.End()
	if !child.IsRecording() || child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Errorf("child of a recorded span: recording %v, trace %s; want recording in %s",
			child.IsRecording(), child.SpanContext().TraceID(), span.SpanContext().TraceID())
	}
	if _, s := events.Tracer(context.Background()).Start(context.Background(), "orphan"); s.IsRecording() {
		t.Errorf("no span in the context and no global provider: got a recording span")
	}
}

func TestSubjectTemplate(t *testing.T) {
	for subject, want := range map[string]string{
		"orders.placed.o-1":             "orders.placed.*",
		"schedules.orders.deadline.o-1": "schedules.orders.deadline.*",
		"single":                        "single",
	} {
		if got := events.SubjectTemplate(subject); got != want {
			t.Errorf("SubjectTemplate(%q) = %q, want %q", subject, got, want)
		}
	}
}
