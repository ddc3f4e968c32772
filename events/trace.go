package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// HeaderTraceParent is the W3C Trace Context header; choreo carries it on
// every NATS message so one saga can be followed across services.
const HeaderTraceParent = "traceparent"

type traceKey struct{}

// NewTraceParent starts a new trace: version 00, a random trace id, a random
// parent id, sampled.
func NewTraceParent() string {
	return "00-" + randomHex(16) + "-" + randomHex(8) + "-01"
}

// ChildTraceParent keeps the trace id of parent and gives the next hop a
// fresh span id. An invalid or empty parent starts a new trace.
func ChildTraceParent(parent string) string {
	id, ok := TraceID(parent)
	if !ok {
		return NewTraceParent()
	}
	return "00-" + id + "-" + randomHex(8) + "-01"
}

// TraceID returns the trace id of a W3C traceparent value.
func TraceID(traceparent string) (string, bool) {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
		return "", false
	}
	if _, err := hex.DecodeString(parts[1]); err != nil || parts[1] == strings.Repeat("0", 32) {
		return "", false
	}
	return parts[1], true
}

// WithTraceParent returns a context carrying traceparent.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	return context.WithValue(ctx, traceKey{}, traceparent)
}

// TraceParentFrom returns the traceparent carried by ctx, or "".
func TraceParentFrom(ctx context.Context) string {
	s, _ := ctx.Value(traceKey{}).(string)
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
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
