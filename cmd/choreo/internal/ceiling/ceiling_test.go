package ceiling_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/ceiling"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// waitTimeout bounds every probe run by a test. Nothing is asserted about
// time or rates; the bound only turns a hang into a failure.
const waitTimeout = 90 * time.Second

// dbNames are the databases the probes open.
var dbNames = []string{"ceiling_commit", "ceiling_a", "ceiling_b", "ceiling_c", "ceiling_d"}

// mustURLs returns a fresh database on backend b for every name a probe
// opens.
func mustURLs(t testing.TB, b sqltest.Backend) map[string]string {
	t.Helper()
	urls := map[string]string{}
	for _, n := range dbNames {
		urls[n] = b.URL(t) // on PostgreSQL: skips, or fails in CI, without a server
	}
	return urls
}

// opener opens the database a probe asks for by name from urls, as
// `choreo bench` does from its data directory.
func opener(urls map[string]string) ceiling.Opener {
	return func(ctx context.Context, name string) (*sqldb.DB, error) {
		u, ok := urls[name]
		if !ok {
			return nil, errors.New("no database named " + name)
		}
		return sqldb.Open(ctx, u)
	}
}

func mustNATS(t testing.TB) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	return js
}

func runContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// mustNoStreamsLeft fails the test if a stream of a probe remains.
func mustNoStreamsLeft(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var left []string
	for n := range names.Name() {
		if strings.HasPrefix(n, "CEILING_") {
			left = append(left, n)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("streams left behind: got %v, want none", left)
	}
}

// mustNoTablesLeft fails the test if a table of a probe remains in any of
// the databases.
func mustNoTablesLeft(t testing.TB, urls map[string]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(urls)) {
		db := sqltest.MustOpen(t, urls[name])
		q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ceiling%'`
		if db.Dialect.Engine == sqldb.Postgres {
			q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'ceiling%'`
		}
		rows, err := db.QueryContext(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: list tables: %v", name, err)
		}
		var left []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatalf("%s: list tables: %v", name, err)
			}
			left = append(left, n)
		}
		rows.Close()
		if len(left) > 0 {
			t.Errorf("%s: tables left behind: got %v, want none", name, left)
		}
	}
}

// sagaKinds are the eight messages of a minimal saga, by subject without
// the run token and the saga's key.
var sagaKinds = []string{"cmd", "a.placed", "a.scheduled", "b.reserved", "c.captured", "a.confirmed", "b.committed", "d.sent"}

// mustCountPublished counts the messages published on the probes'
// subjects (ceiling.<token>.<kind>.<key>) by kind. The returned function
// waits, for a bounded time, until the counts equal want, and returns them.
func mustCountPublished(t testing.TB, nc *nats.Conn) func(want map[string]int) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
	)
	sub, err := nc.Subscribe("ceiling.*.>", func(m *nats.Msg) {
		tokens := strings.Split(m.Subject, ".")
		kind := strings.Join(tokens[2:len(tokens)-1], ".")
		mu.Lock()
		counts[kind]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return func(want map[string]int) map[string]int {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := maps.Clone(counts)
			mu.Unlock()
			if maps.Equal(got, want) || time.Now().After(deadline) {
				return got
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestPublishRateCountsAckedMessagesAndDeletesItsStream(t *testing.T) {
	js := mustNATS(t)
	res, err := ceiling.PublishRate(runContext(t), js, ceiling.PublishOptions{Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("PublishRate: got %v, want nil", err)
	}
	if res.Name != ceiling.NamePublish || res.Ops <= 0 || res.Elapsed <= 0 || res.PerSec <= 0 {
		t.Errorf("result: got %+v, want %s with Ops, Elapsed and PerSec > 0", res, ceiling.NamePublish)
	}
	t.Logf("%d messages in %s = %.0f/s", res.Ops, res.Elapsed.Round(time.Millisecond), res.PerSec)
	mustNoStreamsLeft(t, js)
}

func TestCommitRateCountsCommitsAndDropsItsTable(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			urls := mustURLs(t, b)
			res, err := ceiling.CommitRate(runContext(t), opener(urls), ceiling.CommitOptions{Duration: 300 * time.Millisecond})
			if err != nil {
				t.Fatalf("CommitRate: got %v, want nil", err)
			}
			if res.Name != ceiling.NameCommit || res.Ops <= 0 || res.Elapsed <= 0 || res.PerSec <= 0 {
				t.Errorf("result: got %+v, want %s with Ops, Elapsed and PerSec > 0", res, ceiling.NameCommit)
			}
			t.Logf("%d transactions in %s = %.0f/s", res.Ops, res.Elapsed.Round(time.Millisecond), res.PerSec)
			mustNoTablesLeft(t, urls)
		})
	}
}

func TestMinimalSagaCompletesEverySagaAndLeavesNothing(t *testing.T) {
	for _, b := range sqltest.Backends() {
		for _, batch := range []int{1, 16} {
			t.Run(b.Name+"/batch="+strconv.Itoa(batch), func(t *testing.T) {
				urls := mustURLs(t, b)
				srv := natstest.Start(t)
				nc, js := natstest.Connect(t, srv.URL)
				published := mustCountPublished(t, nc)
				res, err := ceiling.MinimalSaga(runContext(t), js, nc, opener(urls), ceiling.SagaOptions{
					Duration: 500 * time.Millisecond,
					Inflight: 16,
					Batch:    batch,
				})
				if err != nil {
					t.Fatalf("MinimalSaga: got %v, want nil", err)
				}
				if res.Name != ceiling.NameMinimalSaga || res.Ops <= 0 || res.Elapsed <= 0 || res.PerSec <= 0 {
					t.Errorf("result: got %s ops %d elapsed %s, want %s with Ops and Elapsed > 0", res.Name, res.Ops, res.Elapsed, ceiling.NameMinimalSaga)
				}
				if res.Ops != res.Placed {
					t.Errorf("completed sagas: got %d, want every one placed (%d)", res.Ops, res.Placed)
				}
				if len(res.Latency) != res.Ops {
					t.Errorf("latencies: got %d, want one per completed saga (%d)", len(res.Latency), res.Ops)
				}
				if res.Batch != batch {
					t.Errorf("batch: got %d, want %d", res.Batch, batch)
				}
				if res.OutboxLeft != 0 || res.Unacked != 0 {
					t.Errorf("left when stopped: got %d outbox rows and %d unacked messages, want none", res.OutboxLeft, res.Unacked)
				}
				// The shape of choreo's happy path: eight publishes per saga,
				// one of each kind, the trailing ones included.
				want := map[string]int{}
				for _, kind := range sagaKinds {
					want[kind] = res.Placed
				}
				if got := published(want); !maps.Equal(got, want) {
					t.Errorf("messages published by kind: got %v, want %v", got, want)
				}
				mustNoStreamsLeft(t, js)
				mustNoTablesLeft(t, urls)
			})
		}
	}
}

// TestMinimalSagaCleansUpWhenCancelled cancels a run half-way: the probe
// reports the cancellation and still removes its streams and tables (and,
// checked by TestMain, stops its goroutines).
func TestMinimalSagaCleansUpWhenCancelled(t *testing.T) {
	urls := mustURLs(t, sqltest.Backends()[0])
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.URL)
	ctx, cancel := context.WithCancel(runContext(t))
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := ceiling.MinimalSaga(ctx, js, nc, opener(urls), ceiling.SagaOptions{Duration: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("MinimalSaga cancelled: got %v, want context.Canceled", err)
	}
	mustNoStreamsLeft(t, js)
	mustNoTablesLeft(t, urls)
}

func TestRejectsNegativeOptions(t *testing.T) {
	ctx := runContext(t)
	js := mustNATS(t)
	open := opener(mustURLs(t, sqltest.Backends()[0]))
	if _, err := ceiling.PublishRate(ctx, js, ceiling.PublishOptions{PayloadBytes: -1}); !errors.Is(err, ceiling.ErrInvalidOption) {
		t.Errorf("PublishRate: got %v, want ErrInvalidOption", err)
	}
	if _, err := ceiling.CommitRate(ctx, open, ceiling.CommitOptions{Workers: -1}); !errors.Is(err, ceiling.ErrInvalidOption) {
		t.Errorf("CommitRate: got %v, want ErrInvalidOption", err)
	}
	if _, err := ceiling.MinimalSaga(ctx, js, nil, open, ceiling.SagaOptions{Batch: -1}); !errors.Is(err, ceiling.ErrInvalidOption) {
		t.Errorf("MinimalSaga: got %v, want ErrInvalidOption", err)
	}
}

// TestMinimalSagaRates is a sanity run, not a benchmark: it logs the rates
// of one-message and 32-message transactions and asserts nothing about
// them.
func TestMinimalSagaRates(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, batch := range []int{1, 32} {
				urls := mustURLs(t, b)
				srv := natstest.Start(t)
				nc, js := natstest.Connect(t, srv.URL)
				res, err := ceiling.MinimalSaga(runContext(t), js, nc, opener(urls), ceiling.SagaOptions{Duration: time.Second, Batch: batch})
				if err != nil {
					t.Fatalf("MinimalSaga batch %d: got %v, want nil", batch, err)
				}
				lat := slices.Sorted(slices.Values(res.Latency))
				t.Logf("%s batch=%d: %d sagas in %s = %.0f/s, latency p50 %s p99 %s",
					b.Name, batch, res.Ops, res.Elapsed.Round(time.Millisecond), res.PerSec,
					lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
			}
		})
	}
}
