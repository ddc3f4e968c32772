package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
)

// One saga placed over HTTP and one placed as a bare cmd.orders.place (no
// traceparent, the way `go tool nats pub` sends it) each make exactly one
// trace, whose spans cover every service from the command to
// notifications.sent, parent and child as the messaging conventions say:
// a process span's parent is the create span of the event it handles, a
// create span's parent is the span that decided to publish (a process or
// HTTP server span), a send span's parent is its create span.
func TestEachSagaIsOneTrace(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	testSpanExporter = exporter
	t.Cleanup(func() { testSpanExporter = nil })

	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, js := natstest.Connect(t, c.natsURL)
	restock(t, ctx, js, "SKU-T", 10)

	placeOrder(t, c, "trace-http", "cust-1", "SKU-T", 1)
	body := `{"command_id":"trace-nats","order_id":"trace-nats","customer_id":"cust-1","currency":"EUR","items":[{"sku":"SKU-T","quantity":1,"unit_price":1000}]}`
	if err := nc.Publish(catalog.SubjectPlaceOrder, []byte(body)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"trace-http", "trace-nats"} {
		waitFinal(t, ctx, c, id)
		waitFor(t, ctx, "notifications.sent of "+id, func() (bool, string) {
			n, err := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent."+id)
			return err == nil && n["notifications.sent."+id] == 1, fmt.Sprint(n)
		})
	}
	c.stop() // flushes every span

	spans := exporter.GetSpans()
	for _, id := range []string{"trace-http", "trace-nats"} {
		t.Run(id, func(t *testing.T) {
			checkSagaTrace(t, spans, id)
		})
	}
}

func checkSagaTrace(t *testing.T, all tracetest.SpanStubs, orderID string) {
	// The saga's spans: those about the order (its events' subject), and
	// every span of the trace they are in.
	traces := map[trace.TraceID]bool{}
	for _, s := range all {
		if attr(s, semconv.CloudEventsEventSubjectKey) == orderID || strings.HasSuffix(attr(s, semconv.MessagingDestinationNameKey), "."+orderID) {
			traces[s.SpanContext.TraceID()] = true
		}
	}
	if len(traces) != 1 {
		t.Fatalf("spans about order %s are in %d traces, want exactly one", orderID, len(traces))
	}
	var tid trace.TraceID
	for id := range traces {
		tid = id
	}
	byID := map[trace.SpanID]tracetest.SpanStub{}
	var spans []tracetest.SpanStub
	for _, s := range all {
		if s.SpanContext.TraceID() == tid {
			spans = append(spans, s)
			byID[s.SpanContext.SpanID()] = s
		}
	}

	services := map[string]bool{}
	var roots []string
	for _, s := range spans {
		services[serviceOf(s)] = true
		parent, hasParent := byID[s.Parent.SpanID()]
		if !s.Parent.IsValid() {
			roots = append(roots, s.Name)
			continue
		}
		if !hasParent {
			t.Errorf("span %q (%s): its parent %s is not in the trace", s.Name, serviceOf(s), s.Parent.SpanID())
			continue
		}
		op := attr(s, semconv.MessagingOperationTypeKey)
		switch {
		case op == "process":
			wantParent(t, s, parent, trace.SpanKindProducer, "create")
			if s.SpanKind != trace.SpanKindConsumer {
				t.Errorf("span %q: kind %s, want consumer", s.Name, s.SpanKind)
			}
		case op == "send":
			wantParent(t, s, parent, trace.SpanKindProducer, "create")
			if s.SpanKind != trace.SpanKindClient {
				t.Errorf("span %q: kind %s, want client (the message carries its create span's context)", s.Name, s.SpanKind)
			}
		case op == "create":
			if parent.SpanKind != trace.SpanKindConsumer && parent.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q: parent %q is a %s span, want the process or server span that decided to publish", s.Name, parent.Name, parent.SpanKind)
			}
			if serviceOf(parent) != serviceOf(s) {
				t.Errorf("span %q of %s: parent %q of %s, want the same service", s.Name, serviceOf(s), parent.Name, serviceOf(parent))
			}
		}
	}
	if len(roots) != 1 {
		t.Errorf("roots %v, want one: the command's span", roots)
	} else if want := map[string]string{"trace-http": "POST /orders", "trace-nats": "process cmd.orders.place"}[orderID]; roots[0] != want {
		t.Errorf("root %q, want %q", roots[0], want)
	}
	for _, svc := range []string{"orders", "inventory", "payments", "notifications"} {
		if !services[svc] {
			t.Errorf("no span of the %s service in the saga's trace", svc)
		}
	}
	names := spanNames(spans)
	for _, want := range []string{
		"process orders.placed.*", "create inventory.reserved.*", "process inventory.reserved.*",
		"POST /v1/captures", "create payments.captured.*", "send payments.captured.*",
		"create orders.confirmed.*", "process orders.confirmed.*", "create notifications.sent.*", "send notifications.sent.*",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("no span %q in the saga's trace; it has %v", want, names)
		}
	}
}

func wantParent(t *testing.T, s, parent tracetest.SpanStub, kind trace.SpanKind, op string) {
	t.Helper()
	if parent.SpanKind != kind || attr(parent, semconv.MessagingOperationTypeKey) != op ||
		attr(parent, semconv.MessagingMessageIDKey) != attr(s, semconv.MessagingMessageIDKey) {
		t.Errorf("span %q (message %s): parent %q (message %s), want the %s span of the same message",
			s.Name, attr(s, semconv.MessagingMessageIDKey), parent.Name, attr(parent, semconv.MessagingMessageIDKey), op)
	}
}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func serviceOf(s tracetest.SpanStub) string {
	if s.Resource == nil {
		return ""
	}
	v, _ := s.Resource.Set().Value(semconv.ServiceNameKey)
	return v.AsString()
}

func spanNames(spans []tracetest.SpanStub) []string {
	names := make([]string, 0, len(spans))
	for _, s := range spans {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return slices.Compact(names)
}

var _ sdktrace.SpanExporter = (*tracetest.InMemoryExporter)(nil)
