package events_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/choreo-dev/choreo/events"
)

var traceParentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)

func TestNewTraceParent(t *testing.T) {
	a, b := events.NewTraceParent(), events.NewTraceParent()
	for _, tp := range []string{a, b} {
		if !traceParentRE.MatchString(tp) {
			t.Errorf("NewTraceParent: got %q, want the form 00-<32 hex>-<16 hex>-01", tp)
		}
		if _, ok := events.TraceID(tp); !ok {
			t.Errorf("TraceID(%q): got ok=false, want true", tp)
		}
	}
	idA, _ := events.TraceID(a)
	idB, _ := events.TraceID(b)
	if idA == idB {
		t.Errorf("two new traces: got the same trace id %s twice, want distinct ids", idA)
	}
}

func TestChildTraceParentKeepsTraceID(t *testing.T) {
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	child := events.ChildTraceParent(parent)
	if !traceParentRE.MatchString(child) {
		t.Fatalf("ChildTraceParent: got %q, want a valid traceparent", child)
	}
	got, ok := events.TraceID(child)
	if !ok || got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id of the child: got %q (ok=%v), want %q", got, ok, "4bf92f3577b34da6a3ce929d0e0e4736")
	}
	if child[36:52] == parent[36:52] {
		t.Errorf("span id of the child: got %s, want a fresh one (not the parent's)", child[36:52])
	}
	grandchild := events.ChildTraceParent(child)
	if id, _ := events.TraceID(grandchild); id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id two hops later: got %q, want %q", id, "4bf92f3577b34da6a3ce929d0e0e4736")
	}
}

func TestChildTraceParentOfInvalidStartsNewTrace(t *testing.T) {
	for _, parent := range []string{
		"",
		"garbage",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id is invalid
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // 31 hex digits
		"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", // not hex
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01",   // short span id
	} {
		if _, ok := events.TraceID(parent); ok {
			t.Errorf("TraceID(%q): got ok=true, want false", parent)
		}
		child := events.ChildTraceParent(parent)
		if !traceParentRE.MatchString(child) {
			t.Errorf("ChildTraceParent(%q): got %q, want a new valid traceparent", parent, child)
		}
	}
}

func TestTraceParentContext(t *testing.T) {
	ctx := context.Background()
	if got := events.TraceParentFrom(ctx); got != "" {
		t.Errorf("TraceParentFrom(empty context): got %q, want \"\"", got)
	}
	tp := events.NewTraceParent()
	if got := events.TraceParentFrom(events.WithTraceParent(ctx, tp)); got != tp {
		t.Errorf("TraceParentFrom: got %q, want %q", got, tp)
	}
}
