package consumer_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// store is the smallest service a consumer can apply work to.
type store = consumer.CounterStore

func mustStore(t testing.TB, b sqltest.Backend) *store { return consumer.NewCounterStore(t, b) }

func forEachBackend(t *testing.T, f func(t *testing.T, b sqltest.Backend)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

// Messages fetched together are applied in one transaction, each once
// however often it is delivered, and every one is acked.
func TestBatchAppliesFetchedMessagesTogether(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b sqltest.Backend) {
		f := mustFixture(t)
		s := mustStore(t, b)
		const n = 40
		// Published before the consumer starts, so that they are all
		// there to be batched; each twice, as a redelivery would be.
		for i := range n {
			for range 2 {
				mustPublish(t, f.js, "t.happened."+strconv.Itoa(i), strconv.Itoa(i), nil)
			}
		}
		var log consumer.TxLog
		cfg := config()
		cfg.Batch = 16
		cfg.Outbox = s.Outbox
		cfg.Handler = func(_ context.Context, m *consumer.Message) (consumer.Work, error) {
			return consumer.Work{
				Key: inbox.Key{Consumer: "svc", EventID: string(m.Data)},
				Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
					log.Add(tx, m.Subject)
					return s.Increment(string(m.Data))(ctx, tx)
				},
			}, nil
		}
		mustStartHandler(t, f.js, cfg)
		waitSettled(t, f.js, "T", "svc")
		got := s.Counters(t)
		if len(got) != n {
			t.Errorf("counters: got %d keys, want %d", len(got), n)
		}
		for k, v := range got {
			if v != 1 {
				t.Errorf("counter %s = %d, want 1 (applied once per message, duplicates skipped)", k, v)
			}
		}
		if got := log.Largest(); got < 2 {
			t.Errorf("largest batch: %d message(s) in one transaction, want several", got)
		}
		if got := len(streamMsgs(t, f.js, "DLQ")); got != 0 {
			t.Errorf("dead letters: got %d, want 0", got)
		}
	})
}

// A message whose work fails does not take its batch down: the batch is
// applied again without it (apply_test.go counts the transactions), the
// poison message is dead-lettered, its neighbours applied once.
func TestPoisonMessageInABatchSparesItsNeighbours(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b sqltest.Backend) {
		f := mustFixture(t)
		s := mustStore(t, b)
		const n = 20
		for i := range n {
			body := strconv.Itoa(i)
			if i == 7 {
				body = "poison"
			}
			mustPublish(t, f.js, "t.happened."+strconv.Itoa(i), body, nil)
		}
		cfg := config()
		cfg.Batch = 32
		cfg.Outbox = s.Outbox
		cfg.Handler = func(_ context.Context, m *consumer.Message) (consumer.Work, error) {
			return consumer.Work{
				Key: inbox.Key{Consumer: "svc", EventID: m.Subject},
				Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
					if string(m.Data) == "poison" {
						// Change something first: the rollback must undo it.
						if _, err := s.Increment("poison")(ctx, tx); err != nil {
							return nil, err
						}
						return nil, events.Permanent(errors.New("cannot apply poison"))
					}
					return s.Increment(string(m.Data))(ctx, tx)
				},
			}, nil
		}
		mustStartHandler(t, f.js, cfg)
		dl := waitDeadLetters(t, f.js, 1)[0]
		if got := dl.Header.Get(dlq.HeaderOriginalSubject); got != "t.happened.7" {
			t.Errorf("dead letter: got %s, want t.happened.7", got)
		}
		waitSettled(t, f.js, "T", "svc")
		got := s.Counters(t)
		if len(got) != n-1 {
			t.Errorf("counters: got %d keys (%v), want %d: every neighbour, not the poison", len(got), got, n-1)
		}
		for k, v := range got {
			if v != 1 || k == "poison" {
				t.Errorf("counter %s = %d, want 1 and no poison counter", k, v)
			}
		}
	})
}

// Work returned by After is applied, its own After runs, and only then is
// the message acked; follow-ups of a batch share a transaction.
func TestFollowUpWorkIsAppliedBeforeTheAck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b sqltest.Backend) {
		f := mustFixture(t)
		s := mustStore(t, b)
		const n = 12
		for i := range n {
			mustPublish(t, f.js, "t.happened."+strconv.Itoa(i), strconv.Itoa(i), nil)
		}
		var (
			log  consumer.TxLog
			mu   sync.Mutex
			done []string
		)
		cfg := config()
		cfg.Batch = 16
		cfg.Concurrency = 4
		cfg.Outbox = s.Outbox
		cfg.Handler = func(_ context.Context, m *consumer.Message) (consumer.Work, error) {
			id := string(m.Data)
			return consumer.Work{
				Key:   inbox.Key{Consumer: "svc", EventID: id},
				Apply: s.Increment("step1-" + id),
				After: func(context.Context, bool) (consumer.Work, error) {
					// A call outside the database, then its answer recorded.
					return consumer.Work{
						Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
							log.Add(tx, id)
							return s.Increment("step3-"+id)(ctx, tx)
						},
						After: func(context.Context, bool) (consumer.Work, error) {
							mu.Lock()
							done = append(done, id)
							mu.Unlock()
							return consumer.Work{}, nil
						},
					}, nil
				},
			}, nil
		}
		mustStartHandler(t, f.js, cfg)
		waitSettled(t, f.js, "T", "svc")
		got := s.Counters(t)
		if len(got) != 2*n {
			t.Errorf("counters: got %d keys, want %d (both steps of every message)", len(got), 2*n)
		}
		for k, v := range got {
			if v != 1 {
				t.Errorf("counter %s = %d, want 1", k, v)
			}
		}
		mu.Lock()
		if len(done) != n {
			t.Errorf("follow-ups' After: ran %d times, want %d", len(done), n)
		}
		mu.Unlock()
		if got := log.Largest(); got < 2 {
			t.Errorf("largest follow-up transaction: %d message(s), want several", got)
		}
	})
}

// A failing After is the message's failure: retried, and its state change
// applied once (the redelivery finds the claim and only calls After).
func TestFailingAfterRetriesWithoutApplyingTwice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b sqltest.Backend) {
		f := mustFixture(t)
		s := mustStore(t, b)
		rec := &recorder{}
		cfg := config()
		cfg.MaxDeliver = 5
		cfg.Outbox = s.Outbox
		cfg.Handler = func(_ context.Context, m *consumer.Message) (consumer.Work, error) {
			return consumer.Work{
				Key:   inbox.Key{Consumer: "svc", EventID: "e-1"},
				Apply: s.Increment("k"),
				After: func(_ context.Context, applied bool) (consumer.Work, error) {
					rec.add(&consumer.Message{Subject: fmt.Sprintf("applied=%v", applied), Delivered: m.Delivered})
					if m.Delivered < 3 {
						return consumer.Work{}, errors.New("provider down")
					}
					return consumer.Work{}, nil
				},
			}, nil
		}
		mustStartHandler(t, f.js, cfg)
		mustPublish(t, f.js, "t.happened.1", "{}", nil)
		waitFor(t, "the third delivery", func() bool { return rec.has("applied=false@3") })
		waitSettled(t, f.js, "T", "svc")
		if got := strings.Join(rec.list(), ","); got != "applied=true@1,applied=false@2,applied=false@3" {
			t.Errorf("After calls: got %s, want the first applied and the redeliveries not", got)
		}
		if got := s.Counters(t)["k"]; got != 1 {
			t.Errorf("counter: got %d, want 1", got)
		}
	})
}
