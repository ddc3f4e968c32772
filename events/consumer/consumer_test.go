package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/streams"
)

// waitTimeout bounds every wait for something to happen; nothing is
// asserted about how long it takes.
const waitTimeout = 20 * time.Second

type fixture struct {
	srv *natstest.Server
	js  jetstream.JetStream
}

// mustFixture starts a server with a work stream T ("t.>") and a DLQ
// stream ("dlq.>").
func mustFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{srv: natstest.Start(t)}
	_, f.js = natstest.Connect(t, f.srv.URL)
	mustStreams(t, f.js, streams.Spec{Name: "T", Subjects: []string{"t.>"}}, streams.Spec{Name: "DLQ", Subjects: []string{"dlq.>"}})
	return f
}

func mustStreams(t testing.TB, js jetstream.JetStream, specs ...streams.Spec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := streams.Ensure(ctx, js, specs, streams.Options{}); err != nil {
		t.Fatalf("streams.Ensure: %v", err)
	}
}

func config() consumer.Config {
	return consumer.Config{
		Sources:     []consumer.Source{{Stream: "T", Durable: "svc"}},
		DLQSubject:  "dlq.svc",
		MaxDeliver:  3,
		Backoff:     func(int) time.Duration { return 10 * time.Millisecond },
		Concurrency: 1,
	}
}

// mustStart starts a consumer whose handler handles each message by
// itself (no database) and stops it when the test ends.
func mustStart(t testing.TB, js jetstream.JetStream, cfg consumer.Config, h func(context.Context, *consumer.Message) error) *consumer.Consumer {
	t.Helper()
	cfg.Handler = consumer.HandlerFunc(h)
	return mustStartHandler(t, js, cfg)
}

// mustStartHandler starts a consumer with cfg's handler and stops it when
// the test ends.
func mustStartHandler(t testing.TB, js jetstream.JetStream, cfg consumer.Config) *consumer.Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := consumer.Start(ctx, js, cfg)
	if err != nil {
		t.Fatalf("consumer.Start: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// mustPublish publishes to the stream, retrying while the server is away
// (a restart), and returns the stream sequence.
func mustPublish(t testing.TB, js jetstream.JetStream, subject, body string, hdr nats.Header) uint64 {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(body)
		for k, vs := range hdr {
			msg.Header[k] = vs
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ack, err := js.PublishMsg(ctx, msg)
		cancel()
		if err == nil {
			return ack.Sequence
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish to %s: %v", subject, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamMsgs returns the messages stored in a stream, in order.
func streamMsgs(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream %s seq %d: %v", name, seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// waitDeadLetters waits for n messages in the DLQ stream and returns them.
func waitDeadLetters(t testing.TB, js jetstream.JetStream, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	var msgs []*jetstream.RawStreamMsg
	waitFor(t, fmt.Sprintf("%d dead letter(s)", n), func() bool {
		msgs = streamMsgs(t, js, "DLQ")
		return len(msgs) >= n
	})
	if len(msgs) != n {
		t.Fatalf("dead letters: got %d, want %d", len(msgs), n)
	}
	return msgs
}

// waitSettled waits until the durable has nothing pending or unacked.
func waitSettled(t testing.TB, js jetstream.JetStream, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitFor(t, "the consumer to settle", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, stream, durable)
		if err != nil {
			return false
		}
		info, err = c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	return info
}

// recorder remembers what a handler saw.
type recorder struct {
	mu   sync.Mutex
	seen []string // subject@delivered
}

func (r *recorder) add(m *consumer.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, m.Subject+"@"+strconv.FormatUint(m.Delivered, 10))
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.seen {
		if x == s {
			return true
		}
	}
	return false
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func TestStartRejectsInvalidConfig(t *testing.T) {
	f := mustFixture(t)
	noop := consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil })
	for name, mut := range map[string]func(*consumer.Config){
		"NoSources":           func(c *consumer.Config) { c.Sources = nil },
		"NoStream":            func(c *consumer.Config) { c.Sources[0].Stream = "" },
		"NoDurable":           func(c *consumer.Config) { c.Sources[0].Durable = "" },
		"NoHandler":           func(c *consumer.Config) { c.Handler = nil },
		"NoDLQSubject":        func(c *consumer.Config) { c.DLQSubject = "" },
		"NegativeMaxDeliver":  func(c *consumer.Config) { c.MaxDeliver = -1 },
		"NegativeBatch":       func(c *consumer.Config) { c.Batch = -1 },
		"NegativeConcurrency": func(c *consumer.Config) { c.Concurrency = -1 },
	} {
		cfg := config()
		cfg.Handler = noop
		mut(&cfg)
		c, err := consumer.Start(context.Background(), f.js, cfg)
		if !errors.Is(err, consumer.ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
		if c != nil {
			c.Stop()
		}
	}
	cfg := config()
	cfg.Handler = noop
	cfg.Sources = append(cfg.Sources, consumer.Source{Stream: "NOPE", Durable: "svc"})
	if c, err := consumer.Start(context.Background(), f.js, cfg); err == nil {
		c.Stop()
		t.Error("Start on a stream that does not exist: got nil error, want one")
	}
}

func TestExponentialBackoff(t *testing.T) {
	b := consumer.ExponentialBackoff(100*time.Millisecond, time.Second)
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := b(i + 1); got != w {
			t.Errorf("backoff after delivery %d: got %s, want %s", i+1, got, w)
		}
	}
	if got := b(1000); got != time.Second {
		t.Errorf("backoff after delivery 1000: got %s, want %s", got, time.Second)
	}
}

func TestHandlerReceivesMessage(t *testing.T) {
	f := mustFixture(t)
	type seen struct {
		msg   consumer.Message
		inCtx bool
	}
	got := make(chan seen, 1)
	mustStart(t, f.js, config(), func(ctx context.Context, m *consumer.Message) error {
		got <- seen{msg: *m, inCtx: consumer.MessageFrom(ctx) == m}
		return nil
	})
	seq := mustPublish(t, f.js, "t.happened.k1", `{"x":1}`, nil)
	var s seen
	select {
	case s = <-got:
	case <-time.After(waitTimeout):
		t.Fatal("handler never called")
	}
	if s.msg.Subject != "t.happened.k1" || string(s.msg.Data) != `{"x":1}` {
		t.Errorf("message: got %s %s, want %s %s", s.msg.Subject, s.msg.Data, "t.happened.k1", `{"x":1}`)
	}
	if s.msg.Stream != "T" || s.msg.Sequence != seq || s.msg.Delivered != 1 || s.msg.Time.IsZero() {
		t.Errorf("metadata: got stream %q seq %d delivered %d time %s, want T %d 1 and a time",
			s.msg.Stream, s.msg.Sequence, s.msg.Delivered, s.msg.Time, seq)
	}
	if s.msg.Consumer != "svc" {
		t.Errorf("consumer: got %q, want svc", s.msg.Consumer)
	}
	if !s.inCtx {
		t.Errorf("the handler's context does not carry the message")
	}
	if info := waitSettled(t, f.js, "T", "svc"); info.NumRedelivered != 0 {
		t.Errorf("redelivered: got %d, want 0 (acked once handled)", info.NumRedelivered)
	}
}

func TestFilterSubjects(t *testing.T) {
	f := mustFixture(t)
	rec := &recorder{}
	cfg := config()
	cfg.Sources[0].FilterSubjects = []string{"t.a.>", "t.b.>"}
	mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error { rec.add(m); return nil })
	for _, s := range []string{"t.a.1", "t.c.1", "t.b.1"} {
		mustPublish(t, f.js, s, "{}", nil)
	}
	waitFor(t, "t.a.1 and t.b.1", func() bool { return rec.has("t.a.1@1") && rec.has("t.b.1@1") })
	waitSettled(t, f.js, "T", "svc")
	if got := rec.list(); len(got) != 2 {
		t.Errorf("handled: got %v, want only t.a.1 and t.b.1", got)
	}
}

func TestPoisonMessageGoesToDLQ(t *testing.T) {
	f := mustFixture(t)
	rec := &recorder{}
	mustStart(t, f.js, config(), func(_ context.Context, m *consumer.Message) error {
		rec.add(m)
		if strings.Contains(string(m.Data), "poison") {
			return events.Permanent(errors.New("undecodable: poison"))
		}
		return nil
	})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	seq := mustPublish(t, f.js, "t.happened.k1", `{"poison":true}`, nats.Header{
		events.HeaderTraceParent: {tp},
		jetstream.MsgIDHeader:    {"m-1"},
	})
	mustPublish(t, f.js, "t.happened.k2", `{"fine":true}`, nil)

	dl := waitDeadLetters(t, f.js, 1)[0]
	if want := "dlq.svc.t.happened.k1"; dl.Subject != want {
		t.Errorf("dead letter subject: got %q, want %q", dl.Subject, want)
	}
	if string(dl.Data) != `{"poison":true}` {
		t.Errorf("dead letter body: got %s, want the original %s", dl.Data, `{"poison":true}`)
	}
	wantHeaders := map[string]string{
		dlq.HeaderOriginalSubject: "t.happened.k1",
		dlq.HeaderOriginalStream:  "T",
		dlq.HeaderOriginalSeq:     strconv.FormatUint(seq, 10),
		dlq.HeaderDeliveryCount:   "1",
		dlq.HeaderConsumer:        "svc",
		events.HeaderTraceParent:  tp, // original headers travel along
	}
	for k, want := range wantHeaders {
		if got := dl.Header.Get(k); got != want {
			t.Errorf("dead letter header %s: got %q, want %q", k, got, want)
		}
	}
	if got := dl.Header.Get(dlq.HeaderReason); !strings.Contains(got, "undecodable: poison") {
		t.Errorf("dead letter header %s: got %q, want the handler's error", dlq.HeaderReason, got)
	}
	if _, err := time.Parse(time.RFC3339Nano, dl.Header.Get(dlq.HeaderFailedAt)); err != nil {
		t.Errorf("dead letter header %s: got %q, want an RFC 3339 time", dlq.HeaderFailedAt, dl.Header.Get(dlq.HeaderFailedAt))
	}
	if got := dl.Header.Get(jetstream.MsgIDHeader); got == "m-1" {
		t.Errorf("dead letter Nats-Msg-Id: got the original %q, want one of its own", got)
	}

	waitFor(t, "the next message to be handled", func() bool { return rec.has("t.happened.k2@1") })
	waitSettled(t, f.js, "T", "svc")
	if got := rec.list(); len(got) != 2 {
		t.Errorf("handled: got %v, want the poison message once (terminated, not redelivered) and the next one", got)
	}
}

func TestTransientErrorIsRedelivered(t *testing.T) {
	f := mustFixture(t)
	rec := &recorder{}
	cfg := config()
	cfg.MaxDeliver = 5
	mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error {
		rec.add(m)
		if m.Delivered < 3 {
			return errors.New("database busy")
		}
		return nil
	})
	mustPublish(t, f.js, "t.happened.k1", "{}", nil)
	waitFor(t, "the third delivery", func() bool { return rec.has("t.happened.k1@3") })
	waitSettled(t, f.js, "T", "svc")
	want := []string{"t.happened.k1@1", "t.happened.k1@2", "t.happened.k1@3"}
	if got := rec.list(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("deliveries: got %v, want %v", got, want)
	}
	if got := len(streamMsgs(t, f.js, "DLQ")); got != 0 {
		t.Errorf("dead letters: got %d, want 0", got)
	}
}

func TestExhaustedDeliveriesGoToDLQ(t *testing.T) {
	f := mustFixture(t)
	var calls atomic.Int64
	mustStart(t, f.js, config(), func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return errors.New("provider down")
	})
	mustPublish(t, f.js, "t.happened.k1", `{"x":1}`, nil)
	dl := waitDeadLetters(t, f.js, 1)[0]
	reason := dl.Header.Get(dlq.HeaderReason)
	if !strings.Contains(reason, "3 deliveries") || !strings.Contains(reason, "provider down") {
		t.Errorf("dead letter reason: got %q, want it to name the 3 deliveries and the last error", reason)
	}
	if got := dl.Header.Get(dlq.HeaderDeliveryCount); got != "3" {
		t.Errorf("delivery count: got %q, want %q", got, "3")
	}
	waitSettled(t, f.js, "T", "svc")
	if got := calls.Load(); got != 3 {
		t.Errorf("handler calls: got %d, want 3 (MaxDeliver)", got)
	}
}

// A dependency outage is retried past MaxDeliver and never dead-lettered:
// the message itself is fine and will succeed once the dependency is back.
// A message that came before the one it follows is retried by the clock,
// past MaxDeliver, while it is younger than the reorder wait: a consumer
// behind on another stream catches up later than MaxDeliver's back-off.
func TestRetriedPastMaxDeliver(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"Unavailable", events.Unavailable(errors.New("payment provider down"))},
		{"EarlyWithinTheReorderWait", events.Early(errors.New("orders.placed not seen yet"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFixture(t)
			rec := &recorder{}
			cfg := config() // MaxDeliver 3
			cfg.ReorderWait = time.Hour
			mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error {
				rec.add(m)
				if m.Delivered <= uint64(cfg.MaxDeliver)+2 {
					return tc.err
				}
				return nil
			})
			mustPublish(t, f.js, "t.happened.k1", "{}", nil)
			last := fmt.Sprintf("t.happened.k1@%d", cfg.MaxDeliver+3)
			waitFor(t, "the delivery once the handler can", func() bool { return rec.has(last) })
			waitSettled(t, f.js, "T", "svc")
			if got := len(streamMsgs(t, f.js, "DLQ")); got != 0 {
				t.Errorf("dead letters: got %d, want 0", got)
			}
		})
	}
}

// A handler that keeps its message alive outlasts the ack wait without a
// redelivery.
func TestKeepAliveHoldsOffRedelivery(t *testing.T) {
	f := mustFixture(t)
	rec := &recorder{}
	cfg := config()
	cfg.AckWait = 300 * time.Millisecond
	cfg.HandlerTimeout = 10 * time.Second
	mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error {
		rec.add(m)
		stop := m.KeepAlive(50 * time.Millisecond)
		defer stop()
		time.Sleep(4 * cfg.AckWait) // a slow provider call
		return nil
	})
	mustPublish(t, f.js, "t.happened.k1", "{}", nil)
	waitSettled(t, f.js, "T", "svc")
	if got := rec.list(); len(got) != 1 {
		t.Errorf("deliveries: got %v, want exactly one", got)
	}
}

func TestHandlerPanicGoesToDLQ(t *testing.T) {
	f := mustFixture(t)
	rec := &recorder{}
	mustStart(t, f.js, config(), func(_ context.Context, m *consumer.Message) error {
		rec.add(m)
		if m.Subject == "t.happened.boom" {
			panic("nil map somewhere")
		}
		return nil
	})
	mustPublish(t, f.js, "t.happened.boom", "{}", nil)
	mustPublish(t, f.js, "t.happened.next", "{}", nil)
	dl := waitDeadLetters(t, f.js, 1)[0]
	if got := dl.Header.Get(dlq.HeaderReason); !strings.Contains(got, "panic") || !strings.Contains(got, "nil map somewhere") {
		t.Errorf("dead letter reason: got %q, want it to report the panic", got)
	}
	waitFor(t, "the next message to be handled", func() bool { return rec.has("t.happened.next@1") })
	waitSettled(t, f.js, "T", "svc")
}

func TestDeadLetterWaitsForDLQStream(t *testing.T) {
	f := mustFixture(t)
	ctx := context.Background()
	if err := f.js.DeleteStream(ctx, "DLQ"); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	mustStart(t, f.js, config(), func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return events.Permanent(errors.New("bad input"))
	})
	mustPublish(t, f.js, "t.happened.k1", `{"x":1}`, nil)
	// With nowhere to put it, the message is not dropped: it comes back.
	waitFor(t, "a second attempt at dead-lettering", func() bool { return calls.Load() >= 2 })
	mustStreams(t, f.js, streams.Spec{Name: "DLQ", Subjects: []string{"dlq.>"}})
	dl := waitDeadLetters(t, f.js, 1)[0]
	if string(dl.Data) != `{"x":1}` {
		t.Errorf("dead letter body: got %s, want %s", dl.Data, `{"x":1}`)
	}
	waitSettled(t, f.js, "T", "svc")
}

func TestStopWaitsForInFlightHandlers(t *testing.T) {
	f := mustFixture(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	c := mustStart(t, f.js, config(), func(context.Context, *consumer.Message) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	mustPublish(t, f.js, "t.happened.k1", "{}", nil)
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("handler never called")
	}
	stopped := make(chan struct{})
	go func() {
		c.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a handler was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("Stop did not return after the handler finished")
	}
	if !finished.Load() {
		t.Error("handler: got cut short, want it to finish before Stop returns")
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done after Stop: got open, want closed")
	}
	c.Stop() // a second Stop is harmless
	// The in-flight message was acked, not left for redelivery.
	waitSettled(t, f.js, "T", "svc")
}

func TestConsumerSurvivesNATSRestart(t *testing.T) {
	f := mustFixture(t)
	rec := &recorder{}
	mustStart(t, f.js, config(), func(_ context.Context, m *consumer.Message) error { rec.add(m); return nil })
	mustPublish(t, f.js, "t.happened.before", "{}", nil)
	waitFor(t, "the message before the restart", func() bool { return rec.has("t.happened.before@1") })
	// Let its ack reach the server first: an ack lost in the restart would
	// bring the message back only after the 30s ack wait.
	waitSettled(t, f.js, "T", "svc")

	f.srv.Restart(t)

	mustPublish(t, f.js, "t.happened.after", "{}", nil)
	waitFor(t, "the message after the restart", func() bool { return rec.has("t.happened.after@1") })
	waitSettled(t, f.js, "T", "svc")
}

func TestConcurrentHandlers(t *testing.T) {
	f := mustFixture(t)
	cfg := config()
	cfg.Concurrency = 4
	var (
		inFlight, peak atomic.Int64
		handled        atomic.Int64
	)
	gate := make(chan struct{})
	mustStart(t, f.js, cfg, func(context.Context, *consumer.Message) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-gate
		handled.Add(1)
		return nil
	})
	for i := range 8 {
		mustPublish(t, f.js, "t.happened."+strconv.Itoa(i), "{}", nil)
	}
	waitFor(t, "four handlers at once", func() bool { return peak.Load() == 4 })
	close(gate)
	waitFor(t, "every message", func() bool { return handled.Load() == 8 })
	if got := peak.Load(); got != 4 {
		t.Errorf("handlers at once: got %d, want at most Concurrency=4", got)
	}
}

// A catch-all source beside a source per kind: each message is handled
// once, by the durable consumer of its kind, and the catch-all acks what
// the other takes without handling it.
func TestSkipLeavesAKindToItsOwnSource(t *testing.T) {
	f := mustFixture(t)
	cfg := config()
	cfg.Sources = []consumer.Source{
		{Stream: "T", Durable: "svc", FilterSubjects: []string{"t.>"}, Skip: []string{"t.kind"}},
		{Stream: "T", Durable: "svc-kind", FilterSubjects: []string{"t.kind"}},
	}
	var (
		mu      sync.Mutex
		handled []string
	)
	mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, m.Subject+" by "+m.Consumer)
		return nil
	})
	mustPublish(t, f.js, "t.kind", "1", nil)
	mustPublish(t, f.js, "t.other", "2", nil)
	mustPublish(t, f.js, "t.kind", "3", nil)
	waitFor(t, "three messages handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) >= 3 })
	ctx := context.Background()
	for _, durable := range []string{"svc", "svc-kind"} {
		waitFor(t, durable+" acked everything", func() bool {
			c, err := f.js.Consumer(ctx, "T", durable)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.NumAckPending == 0 && info.NumPending == 0
		})
	}
	time.Sleep(100 * time.Millisecond) // anything handled twice would show by now
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(handled, ", ")
	if len(handled) != 3 || strings.Count(got, "t.kind by svc-kind") != 2 || !strings.Contains(got, "t.other by svc") {
		t.Errorf("handled %s; want t.kind twice by svc-kind and t.other once by svc", got)
	}
}

// A message that came before what it follows comes back after
// EarlyBackoff, not Backoff: what it follows is usually a few milliseconds
// behind on another stream, and a saga should not wait 200ms for it. It
// is logged at debug level until it has waited long (then as a warning).
func TestEarlyMessageComesBackSoon(t *testing.T) {
	f := mustFixture(t)
	var logs bytes.Buffer
	var mu, logMu sync.Mutex
	var retryIns []time.Duration
	cfg := config()
	cfg.MaxDeliver = 20
	cfg.Backoff = func(int) time.Duration { return time.Hour } // would stall the test
	cfg.EarlyBackoff = func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	cfg.Middleware = []consumer.Middleware{func(ctx context.Context, m *consumer.Message) (context.Context, func(consumer.Outcome)) {
		return ctx, func(o consumer.Outcome) {
			if o.Result == consumer.Retried {
				mu.Lock()
				retryIns = append(retryIns, o.RetryIn)
				mu.Unlock()
			}
		}
	}, consumer.LogOutcomes(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelInfo})))}
	const early = 9 // past the delivery from which a wait is a warning
	rec := &recorder{}
	mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error {
		rec.add(m)
		if m.Delivered <= early {
			return events.Early(errors.New("orders.placed not seen yet"))
		}
		return nil
	})
	mustPublish(t, f.js, "t.happened.k1", "{}", nil)
	waitFor(t, "the delivery after what it follows came", func() bool { return rec.has(fmt.Sprintf("t.happened.k1@%d", early+1)) })
	waitSettled(t, f.js, "T", "svc")
	mu.Lock()
	defer mu.Unlock()
	logMu.Lock()
	defer logMu.Unlock()
	if len(retryIns) != early {
		t.Fatalf("retries: got %d (%v), want %d", len(retryIns), retryIns, early)
	}
	for i, d := range retryIns {
		if want := time.Duration(i+1) * time.Millisecond; d != want {
			t.Errorf("retry %d: retry in %s, want %s (EarlyBackoff)", i+1, d, want)
		}
	}
	// Deliveries 1..7 are expected reordering (debug, not shown at info);
	// 8 and 9 have waited long enough to be worth a warning.
	if got := strings.Count(logs.String(), "came before what it follows"); got != early-7 {
		t.Errorf("warnings about the early message: got %d, want %d:\n%s", got, early-7, logs.String())
	}
}

// A consumer whose After calls fall behind stops taking messages: the
// ones it holds, waiting for a slot, stay bounded (a few batches), and the
// rest wait in the stream — not in memory until their ack wait ends and
// the server sends them again. Released, it handles every message once.
func TestSlowAfterCallsHoldBackNewMessages(t *testing.T) {
	f := mustFixture(t)
	const (
		n     = 200
		batch = 4
		// What the consumer may hold: its bound on messages waiting for
		// their After (2 batches here, with one slot), and the batch the
		// batcher took before it stopped.
		most = 2*batch + batch
	)
	for i := range n {
		mustPublish(t, f.js, "t.happened."+strconv.Itoa(i), strconv.Itoa(i), nil)
	}
	var taken, settled atomic.Int64
	gate := make(chan struct{})
	cfg := config()
	cfg.Batch = batch
	cfg.Concurrency = 1
	cfg.Middleware = []consumer.Middleware{func(ctx context.Context, _ *consumer.Message) (context.Context, func(consumer.Outcome)) {
		taken.Add(1)
		return ctx, func(consumer.Outcome) { settled.Add(1) }
	}}
	var handled recorder
	mustStart(t, f.js, cfg, func(_ context.Context, m *consumer.Message) error {
		<-gate
		handled.add(m)
		return nil
	})
	// Registered after mustStart's Stop, so it runs first: a test that
	// fails with the gate shut must not leave Stop waiting on it.
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release)
	waitFor(t, "the consumer to take its first messages", func() bool { return taken.Load() >= batch })
	// It has what it may hold within a moment; a consumer without the
	// bound would take all n as fast.
	for range 20 {
		if got := taken.Load(); got > most {
			release()
			t.Fatalf("with every After call stuck, the consumer took %d messages, want at most %d", got, most)
		}
		time.Sleep(10 * time.Millisecond)
	}
	release()
	deadline := time.Now().Add(waitTimeout)
	for settled.Load() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := settled.Load(); got != n {
		t.Fatalf("settled %d messages (took %d deliveries, handled %d) after %s, want %d", got, taken.Load(), len(handled.list()), waitTimeout, n)
	}
	if got := len(handled.list()); got != n {
		t.Errorf("handled %d messages, want %d", got, n)
	}
	if got := taken.Load(); got != n {
		t.Errorf("took %d deliveries, want %d: none redelivered", got, n)
	}
	waitSettled(t, f.js, "T", "svc")
}
