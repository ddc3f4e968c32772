package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/natstest"
)

var cfg = dlq.Config{Stream: "DEAD", Prefix: "dead"}

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// setup starts a server with a source stream T ("t.>") and the dead-letter
// stream, and returns the queue.
func setup(t *testing.T) (context.Context, jetstream.JetStream, *dlq.Queue) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx, cancel := context.WithTimeout(natstest.Context(t), time.Minute)
	t.Cleanup(cancel)
	for _, sc := range []jetstream.StreamConfig{
		{Name: "T", Subjects: []string{"t.>"}},
		{Name: cfg.Stream, Subjects: []string{cfg.Prefix + ".>"}},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatalf("create stream %s: %v", sc.Name, err)
		}
	}
	q, err := dlq.Open(ctx, js, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return ctx, js, q
}

// deadLetter publishes a message to T and dead-letters it as consumer
// would, with the retry count it carried; it returns the entry's id.
func deadLetter(t *testing.T, ctx context.Context, js jetstream.JetStream, subject, consumer string, retries int, seq uint64) uint64 {
	t.Helper()
	h := nats.Header{}
	h.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	h.Set("X-Operator", "alice")
	h.Set(jetstream.MsgIDHeader, "original-id")
	if retries > 0 {
		h.Set(dlq.HeaderRetryCount, fmt.Sprint(retries))
	}
	if seq == 0 {
		ack, err := js.Publish(ctx, subject, []byte(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		seq = ack.Sequence
	}
	m := dlq.NewMsg(cfg.Prefix+"."+consumer, dlq.Failure{
		Subject: subject, Header: h, Data: []byte(`{"n":1}`), Stream: "T", Sequence: seq,
		Delivered: 4, Consumer: consumer, Reason: errors.New("poison"), At: time.Now(),
	})
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func ids(es []*dlq.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func lastSeq(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func TestListAndGetReadWhatTheConsumerWrote(t *testing.T) {
	ctx, js, q := setup(t)
	a := deadLetter(t, ctx, js, "t.a.1", "svc1", 0, 0)
	b := deadLetter(t, ctx, js, "t.b.1", "svc2", 2, 0)

	all, err := q.All(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), []uint64{a, b}; !slices.Equal(got, want) {
		t.Errorf("all: got %v, want %v", got, want)
	}
	only, err := q.All(ctx, "t.b.>")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(only), []uint64{b}; !slices.Equal(got, want) {
		t.Errorf("t.b.>: got %v, want %v", got, want)
	}

	e, err := q.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"consumer", e.Consumer, "svc2"},
		{"original subject", e.OriginalSubject, "t.b.1"},
		{"original stream", e.OriginalStream, "T"},
		{"original sequence", e.OriginalSequence, uint64(2)},
		{"deliveries", e.DeliveryCount, uint64(4)},
		{"retries", e.RetryCount, 2},
		{"reason", e.Reason, "poison"},
		{"trace id", e.TraceID, traceID},
		{"subject", e.Subject, "dead.svc2.t.b.1"},
		{"body", string(e.Data), `{"n":1}`},
		{"copied header", e.Header.Get("X-Operator"), "alice"},
		{"no Nats-* header copied", e.Header.Get(jetstream.MsgIDHeader), "dlq:T:2:svc2"},
		{"failed at is set", e.FailedAt.IsZero(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	if _, err := q.Get(ctx, 99); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("get 99: got %v, want ErrNotFound", err)
	}
	// Reading the queue leaves no consumer on its stream.
	s, _ := js.Stream(ctx, cfg.Stream)
	if info, err := s.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Errorf("consumers on the DLQ stream after reading it: %v (err %v), want 0", info.State.Consumers, err)
	}
}

func TestRetryRepublishesOnceAndRemoves(t *testing.T) {
	ctx, js, q := setup(t)
	first := deadLetter(t, ctx, js, "t.a.1", "svc1", 1, 0)
	// The same message dead-lettered by a second consumer.
	second := deadLetter(t, ctx, js, "t.a.1", "svc2", 0, 1)
	entries, err := q.All(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	before := lastSeq(t, ctx, js, "T")

	var dry []dlq.Retried
	if err := q.Retry(ctx, entries, true, func(r dlq.Retried) { dry = append(dry, r) }); err != nil {
		t.Fatal(err)
	}
	if len(dry) != 2 || !dry[0].DryRun || dry[0].Count != 2 || dry[1].SameAs != first || lastSeq(t, ctx, js, "T") != before {
		t.Errorf("dry run: got %+v and T at %d (was %d); want both reported, count 2, the second same as %d, nothing published", dry, lastSeq(t, ctx, js, "T"), before, first)
	}

	var done []dlq.Retried
	if err := q.Retry(ctx, entries, false, func(r dlq.Retried) { done = append(done, r) }); err != nil {
		t.Fatal(err)
	}
	if got := lastSeq(t, ctx, js, "T"); got != before+1 {
		t.Errorf("T's last sequence: got %d, want %d: one republish for both entries", got, before+1)
	}
	if len(done) != 2 || done[0].Sequence != before+1 || done[1].Sequence != before+1 || done[1].SameAs != first {
		t.Errorf("retried: got %+v", done)
	}
	s, _ := js.Stream(ctx, "T")
	m, err := s.GetMsg(ctx, before+1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "t.a.1" || string(m.Data) != `{"n":1}` || m.Header.Get(dlq.HeaderRetryCount) != "2" ||
		m.Header.Get("X-Operator") != "alice" || m.Header.Get(dlq.HeaderReason) != "" || m.Header.Get(dlq.HeaderConsumer) != "" {
		t.Errorf("republished: subject %s, body %s, headers %v", m.Subject, m.Data, m.Header)
	}
	for _, id := range []uint64{first, second} {
		if _, err := q.Get(ctx, id); !errors.Is(err, dlq.ErrNotFound) {
			t.Errorf("entry %d after retry: got %v, want it removed", id, err)
		}
	}
}

func TestRetryLoopGuardRefusesBeforeAnything(t *testing.T) {
	ctx, js, q := setup(t)
	fine := deadLetter(t, ctx, js, "t.a.1", "svc1", 0, 0)
	spent := deadLetter(t, ctx, js, "t.a.2", "svc1", dlq.DefaultMaxRetries, 0)
	entries, err := q.All(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	before := lastSeq(t, ctx, js, "T")
	err = q.Retry(ctx, entries, false, func(dlq.Retried) { t.Error("reported a retry the guard refused") })
	var refused *dlq.RefusedError
	if !errors.As(err, &refused) || !slices.Equal(refused.Exhausted, []uint64{spent}) || refused.MaxRetries != dlq.DefaultMaxRetries {
		t.Fatalf("got %v, want a RefusedError naming entry %d", err, spent)
	}
	if got := lastSeq(t, ctx, js, "T"); got != before {
		t.Errorf("T grew from %d to %d: the guard must refuse before republishing anything", before, got)
	}
	if all, _ := q.All(ctx, ""); !slices.Equal(ids(all), []uint64{fine, spent}) {
		t.Errorf("entries after a refused retry: got %v, want both kept", ids(all))
	}
}

func TestDiscard(t *testing.T) {
	ctx, js, q := setup(t)
	id := deadLetter(t, ctx, js, "t.a.1", "svc1", 0, 0)
	if err := q.Discard(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, id); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("after discard: got %v, want ErrNotFound", err)
	}
	if err := q.Discard(ctx, id); err != nil {
		t.Errorf("discarding again: got %v, want nil", err)
	}
}

func TestConfigAndFilterErrors(t *testing.T) {
	ctx, js, _ := setup(t)
	if _, err := dlq.Open(ctx, js, dlq.Config{Stream: "NOPE", Prefix: "x"}); !errors.Is(err, dlq.ErrNoQueue) {
		t.Errorf("missing stream: got %v, want ErrNoQueue", err)
	}
	for _, c := range []dlq.Config{{Prefix: "x"}, {Stream: "DEAD", Prefix: "a.b"}, {Stream: "DEAD", Prefix: "x", MaxRetries: -1}} {
		if _, err := dlq.Open(ctx, js, c); !errors.Is(err, dlq.ErrInvalidConfig) {
			t.Errorf("config %+v: got %v, want ErrInvalidConfig", c, err)
		}
	}
	for _, f := range []string{"a..b", "a.>.b", "a b", "a*"} {
		if err := dlq.ValidFilter(f); !errors.Is(err, dlq.ErrInvalidFilter) {
			t.Errorf("filter %q: got %v, want ErrInvalidFilter", f, err)
		}
	}
	for _, f := range []string{"", "cmd.orders.>", "*.placed.*"} {
		if err := dlq.ValidFilter(f); err != nil {
			t.Errorf("filter %q: got %v, want nil", f, err)
		}
	}
}
