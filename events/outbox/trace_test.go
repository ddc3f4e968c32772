package outbox_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// observer counts what a relay reports.
type observer struct {
	mu       sync.Mutex
	acked    map[string]int
	notAcked int
}

func (o *observer) Acked(subject string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.acked == nil {
		o.acked = map[string]int{}
	}
	o.acked[subject]++
}

func (o *observer) Active(bool) {}

func (o *observer) NotAcked(string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.notAcked++
}

// Writing an event is a create span, a child of the span that wrote it,
// whose context the event carries (headers and envelope alike); the
// relay's publish is a send span, a child of that create span, ended when
// the server acked it, which the observer hears of.
func TestEventsAreCreatedAndSentInTheirTrace(t *testing.T) {
	f := mustFixture(t, sqltest.Backends()[0])
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	ctx, handling := tp.Tracer("test").Start(context.Background(), "handling", trace.WithSpanKind(trace.SpanKindConsumer))
	evts := []events.Outgoing{testEvent("t", 0), testEvent("t", 1)}
	if err := f.db.InTx(ctx, func(tx *sql.Tx) error { return f.ob.Add(ctx, tx, evts...) }); err != nil {
		t.Fatal(err)
	}
	handling.End()
	obs := &observer{}
	r := mustRelay(t, f, outboxWithTracing(tp, obs)...)
	if n, err := r.PublishPending(context.Background()); err != nil || n != 2 {
		t.Fatalf("PublishPending: (%d, %v), want (2, nil)", n, err)
	}

	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byID[s.SpanContext.SpanID()] = s
	}
	msgs := streamMsgs(t, f.js, "TEST")
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for i, m := range msgs {
		ctx := events.ExtractTrace(context.Background(), m.Header)
		create, ok := byID[trace.SpanContextFromContext(ctx).SpanID()]
		if !ok || create.Name != "create test.happened.*" || create.SpanKind != trace.SpanKindProducer {
			t.Fatalf("message %d carries span %v (%q, %s), want its create span", i, trace.SpanContextFromContext(ctx).SpanID(), create.Name, create.SpanKind)
		}
		if create.Parent.SpanID() != handling.SpanContext().SpanID() {
			t.Errorf("create span of message %d: parent %s, want the handling span %s", i, create.Parent.SpanID(), handling.SpanContext().SpanID())
		}
		env, err := events.Decode(m.Data)
		if err != nil || env.TraceParent != m.Header.Get(events.HeaderTraceParent) {
			t.Errorf("message %d: envelope traceparent %q (err %v), want the header's %q", i, env.TraceParent, err, m.Header.Get(events.HeaderTraceParent))
		}
		var sends int
		for _, s := range exp.GetSpans() {
			if s.Parent.SpanID() == create.SpanContext.SpanID() && s.Name == "send test.happened.*" && s.SpanKind == trace.SpanKindClient {
				sends++
			}
		}
		if sends != 1 {
			t.Errorf("message %d: %d send spans under its create span, want 1", i, sends)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.acked) != 2 || obs.notAcked != 0 {
		t.Errorf("observer heard acked %v, not acked %d; want each of the 2 subjects once, nothing lost", obs.acked, obs.notAcked)
	}
}

func outboxWithTracing(tp trace.TracerProvider, o outbox.Observer) []outbox.Option {
	return []outbox.Option{outbox.WithTracerProvider(tp), outbox.WithObserver(o)}
}
