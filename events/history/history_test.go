package history_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/history"
	"github.com/choreo-dev/choreo/events/natstest"
)

// mustStream starts a server with stream T on "t.>" holding n messages,
// alternating between t.a.<i> and t.b.<i>.
func mustStream(t *testing.T, n int, cfg jetstream.StreamConfig) (jetstream.JetStream, context.Context) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx, cancel := context.WithTimeout(natstest.Context(t), 60*time.Second)
	t.Cleanup(cancel)
	cfg.Name, cfg.Subjects = "T", []string{"t.>"}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for i := 1; i <= n; i++ {
		mustPublish(t, ctx, js, i)
	}
	return js, ctx
}

func mustPublish(t *testing.T, ctx context.Context, js jetstream.JetStream, i int) {
	t.Helper()
	kind := "a"
	if i%2 == 0 {
		kind = "b"
	}
	if _, err := js.Publish(ctx, fmt.Sprintf("t.%s.%d", kind, i), []byte(fmt.Sprint(i))); err != nil {
		t.Fatalf("publish %d: %v", i, err)
	}
}

func mustReader(t *testing.T, js jetstream.JetStream, opts ...history.Option) *history.Reader {
	t.Helper()
	r, err := history.NewReader(js, opts...)
	if err != nil {
		t.Fatalf("new reader: %v", err)
	}
	return r
}

// read returns the sequences Read hands over, and what it returns.
func read(t *testing.T, ctx context.Context, r *history.Reader, q history.Query) ([]uint64, uint64) {
	t.Helper()
	var seqs []uint64
	upTo, err := r.Read(ctx, q, func(m history.Message) error {
		if m.Stream != q.Stream || m.Subject == "" || string(m.Data) != fmt.Sprint(m.Sequence) {
			t.Errorf("message %d: got stream %q subject %q data %q", m.Sequence, m.Stream, m.Subject, m.Data)
		}
		seqs = append(seqs, m.Sequence)
		return nil
	})
	if err != nil {
		t.Fatalf("read %+v: %v", q, err)
	}
	return seqs, upTo
}

// consumerNames lists the consumers the server has on the stream.
func consumerNames(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) []string {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("consumer names: %v", err)
	}
	return names
}

func mustLeaveNoConsumer(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	if names := consumerNames(t, ctx, js, "T"); len(names) != 0 {
		t.Errorf("consumers left on the stream: got %v, want none", names)
	}
}

func seqRange(from, to, step uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s += step {
		out = append(out, s)
	}
	return out
}

func TestReadFromSequenceFilteredOnTheServer(t *testing.T) {
	js, ctx := mustStream(t, 20, jetstream.StreamConfig{})
	// A page of 3 makes the 20 messages take several pages.
	r := mustReader(t, js, history.WithPageSize(3))

	got, upTo := read(t, ctx, r, history.Query{Stream: "T"})
	if want := seqRange(1, 20, 1); !slices.Equal(got, want) || upTo != 20 {
		t.Errorf("everything: got %v up to %d, want %v up to 20", got, upTo, want)
	}
	got, _ = read(t, ctx, r, history.Query{Stream: "T", FromSeq: 6, Subjects: []string{"t.a.>"}})
	if want := seqRange(7, 20, 2); !slices.Equal(got, want) {
		t.Errorf("t.a.> from 6: got %v, want %v", got, want)
	}
	got, _ = read(t, ctx, r, history.Query{Stream: "T", Subjects: []string{"t.a.3", "t.b.10"}})
	if want := []uint64{3, 10}; !slices.Equal(got, want) {
		t.Errorf("two subjects: got %v, want %v", got, want)
	}
	// Tools pass one filter list to several streams: a filter outside the
	// stream's subjects just matches nothing there.
	got, _ = read(t, ctx, r, history.Query{Stream: "T", Subjects: []string{"t.a.1", "elsewhere.>"}})
	if want := []uint64{1}; !slices.Equal(got, want) {
		t.Errorf("a filter of another stream alongside: got %v, want %v", got, want)
	}
	got, _ = read(t, ctx, r, history.Query{Stream: "T", Subjects: []string{"t.nothing.>"}})
	if len(got) != 0 {
		t.Errorf("a filter nothing matches: got %v, want nothing", got)
	}
	got, _ = read(t, ctx, r, history.Query{Stream: "T", FromSeq: 5, UpTo: 8})
	if want := seqRange(5, 8, 1); !slices.Equal(got, want) {
		t.Errorf("5 up to 8: got %v, want %v", got, want)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestReadSinceATime(t *testing.T) {
	js, ctx := mustStream(t, 10, jetstream.StreamConfig{})
	r := mustReader(t, js)
	s, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	m7, err := s.GetMsg(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	// Not asserting times: what Since returns must be exactly the messages
	// stored at or after the 7th one's time, as the server timestamped them.
	var want []uint64
	if _, err := r.Read(ctx, history.Query{Stream: "T"}, func(m history.Message) error {
		if !m.Time.Before(m7.Time) {
			want = append(want, m.Sequence)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _ := read(t, ctx, r, history.Query{Stream: "T", Since: m7.Time})
	if !slices.Equal(got, want) || !slices.Contains(got, 7) {
		t.Errorf("since message 7's time: got %v, want %v", got, want)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestReadEndsAtTheLastSequenceWhenItStarted(t *testing.T) {
	js, ctx := mustStream(t, 5, jetstream.StreamConfig{})
	r := mustReader(t, js, history.WithPageSize(1))
	n := 0
	got, upTo := []uint64{}, uint64(0)
	upTo, err := r.Read(ctx, history.Query{Stream: "T"}, func(m history.Message) error {
		got = append(got, m.Sequence)
		if n++; n == 1 {
			// The stream grows while it is read: the read still ends.
			for i := 6; i <= 9; i++ {
				mustPublish(t, ctx, js, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := seqRange(1, 5, 1); !slices.Equal(got, want) || upTo != 5 {
		t.Errorf("got %v up to %d, want %v up to 5", got, upTo, want)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestReadStopsOnTheCallersErrorAndDeletesItsConsumer(t *testing.T) {
	js, ctx := mustStream(t, 10, jetstream.StreamConfig{})
	r := mustReader(t, js, history.WithPageSize(2))
	stop := errors.New("enough")
	n := 0
	_, err := r.Read(ctx, history.Query{Stream: "T"}, func(history.Message) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("got %v after %d messages, want the callback's error after 3", err, n)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestReadSkipsMessagesRemovedAfterItStarted(t *testing.T) {
	js, ctx := mustStream(t, 6, jetstream.StreamConfig{})
	r := mustReader(t, js, history.WithPageSize(1), history.WithIdleCheck(100*time.Millisecond))
	s, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	_, err = r.Read(ctx, history.Query{Stream: "T"}, func(m history.Message) error {
		got = append(got, m.Sequence)
		if m.Sequence == 1 {
			// Counted when the read started, gone before it is delivered.
			if err := s.DeleteMsg(ctx, 6); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := seqRange(1, 5, 1); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestReadErrors(t *testing.T) {
	js, ctx := mustStream(t, 3, jetstream.StreamConfig{})
	r := mustReader(t, js)
	noop := func(history.Message) error { return nil }
	if _, err := r.Read(ctx, history.Query{Stream: "T", FromSeq: 4}, noop); !errors.Is(err, history.ErrPastEnd) {
		t.Errorf("from past the end: got %v, want ErrPastEnd", err)
	}
	if _, err := r.Read(ctx, history.Query{Stream: "NOPE"}, noop); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("no such stream: got %v, want ErrStreamNotFound", err)
	}
	if _, err := r.Read(ctx, history.Query{Stream: "T", FromSeq: 1, Since: time.Now()}, noop); !errors.Is(err, history.ErrInvalidOption) {
		t.Errorf("sequence and time: got %v, want ErrInvalidOption", err)
	}
	if _, err := history.NewReader(js, history.WithPageSize(0)); !errors.Is(err, history.ErrInvalidOption) {
		t.Errorf("page size 0: got %v, want ErrInvalidOption", err)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestFollowThenStop(t *testing.T) {
	js, ctx := mustStream(t, 4, jetstream.StreamConfig{})
	r := mustReader(t, js)
	_, upTo := read(t, ctx, r, history.Query{Stream: "T"})

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := make(chan uint64, 16)
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(fctx, history.Query{Stream: "T", FromSeq: upTo + 1, Subjects: []string{"t.b.>"}}, func(m history.Message) error {
			seen <- m.Sequence
			return nil
		})
	}()
	for i := 5; i <= 9; i++ {
		mustPublish(t, ctx, js, i)
	}
	var got []uint64
	for len(got) < 2 {
		select {
		case s := <-seen:
			got = append(got, s)
		case <-ctx.Done():
			t.Fatalf("followed %v, want [6 8]", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended by its context: got %v, want nil", err)
	}
	if want := []uint64{6, 8}; !slices.Equal(got, want) {
		t.Errorf("followed %v, want %v", got, want)
	}
	mustLeaveNoConsumer(t, ctx, js)
}

func TestReach(t *testing.T) {
	js, ctx := mustStream(t, 8, jetstream.StreamConfig{MaxMsgs: 5})
	h, err := history.StreamReach(ctx, js, "T")
	if err != nil {
		t.Fatal(err)
	}
	if h.Msgs != 5 || h.FirstSeq != 4 || h.LastSeq != 8 {
		t.Errorf("reach: got %d messages %d..%d, want 5 messages 4..8", h.Msgs, h.FirstSeq, h.LastSeq)
	}
	if !h.Dropped(1, time.Time{}) || h.Dropped(4, time.Time{}) {
		t.Errorf("dropped: from 1 got %v, from 4 got %v; want true, false", h.Dropped(1, time.Time{}), h.Dropped(4, time.Time{}))
	}
	if !h.Dropped(0, h.FirstTime.Add(-time.Hour)) || h.Dropped(0, h.FirstTime) {
		t.Error("dropped by time: want true before the first message, false at it")
	}
	if want := "T holds 5 messages from sequence 4"; len(h.String()) < len(want) || h.String()[:len(want)] != want {
		t.Errorf("String: got %q, want it to start %q", h.String(), want)
	}
	if got, want := h.Limits(), "at most 5 messages"; got != want {
		t.Errorf("Limits: got %q, want %q", got, want)
	}
	if _, err := history.StreamReach(ctx, js, "NOPE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("no such stream: got %v, want ErrStreamNotFound", err)
	}
}
