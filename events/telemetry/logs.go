package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events/consumer"
)

// NewLogHandler wraps h so that every record says what it is about: one
// logged in a span's context gets the trace_id and span_id (the ids a
// trace backend and `choreo trace` show), one logged while a message is
// handled (see consumer.MessageFrom) gets the message's subject, stream
// position, consumer, event id and key (order_id, sku). Log with the
// *Context methods, or LogAttrs, to pass the context along.
func NewLogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ next slog.Handler }

func (h logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if m := consumer.MessageFrom(ctx); m != nil {
		r.AddAttrs(consumer.MessageAttrs(m)...)
	}
	return h.next.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.next.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.next.WithGroup(name)} }

// ReadableDurations is a slog.HandlerOptions.ReplaceAttr that writes
// durations as Go duration strings ("1.5s", "250ms") rather than the
// nanoseconds a JSON handler would.
func ReadableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
