package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// TestStore is the conformance suite of the store mechanics every service
// relies on (inbox claim, state change and outbox rows in one transaction),
// run unchanged against every engine.
func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("ApplyCommitsStateInboxAndOutboxTogether", func(t *testing.T) { testApplyCommits(t, b) })
			t.Run("DuplicateIsNoop", func(t *testing.T) { testDuplicateIsNoop(t, b) })
			t.Run("ClaimsArePerConsumer", func(t *testing.T) { testClaimsArePerConsumer(t, b) })
			t.Run("EmptyEventIDSkipsInbox", func(t *testing.T) { testEmptyEventIDSkipsInbox(t, b) })
			t.Run("HandlerErrorRollsBackEverything", func(t *testing.T) { testHandlerErrorRollsBack(t, b) })
			t.Run("InvalidOutgoingRollsBackEverything", func(t *testing.T) { testInvalidOutgoingRollsBack(t, b) })
			t.Run("ConcurrentAppliesToSameKeySerialise", func(t *testing.T) { testConcurrentAppliesSerialise(t, b) })
			t.Run("ConcurrentDuplicatesApplyOnce", func(t *testing.T) { testConcurrentDuplicatesApplyOnce(t, b) })
			t.Run("OutboxAddSkipsDuplicateEventID", func(t *testing.T) { testOutboxAddSkipsDuplicate(t, b) })
			t.Run("OutboxBacklog", func(t *testing.T) { testOutboxBacklog(t, b) })
			t.Run("ClaimNeedsConsumerAndEventID", func(t *testing.T) { testClaimNeedsIDs(t, b) })
			t.Run("KeyReusedWithAnotherBodyIsAConflict", func(t *testing.T) { testKeyReused(t, b) })
			t.Run("ErrRetryRunsTheUnitAgain", func(t *testing.T) { testErrRetry(t, b) })
			t.Run("ApplyAllClaimsEachUnitOnce", func(t *testing.T) { testApplyAll(t, b) })
			t.Run("PruneForgetsOnlyOldClaims", func(t *testing.T) { testPrune(t, b) })
		})
	}
}

// store is one fresh database with the outbox, the inbox and a test-only
// state table: counters(key, value).
type store struct {
	db *sqldb.DB
	ob *outbox.Outbox
}

func mustStore(t testing.TB, b sqltest.Backend) store {
	t.Helper()
	ctx := context.Background()
	db := b.Open(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatalf("outbox.Migrate: %v", err)
	}
	if err := inbox.Migrate(ctx, db); err != nil {
		t.Fatalf("inbox.Migrate: %v", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`); err != nil {
		t.Fatalf("create counters: %v", err)
	}
	return store{db: db, ob: outbox.New(db)}
}

// increment adds one to counter key inside tx, reading it with a row lock
// first: the read-modify-write every handler does.
func (s store) increment(ctx context.Context, tx *sql.Tx, key string) (int, error) {
	var v int
	err := tx.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT value FROM counters WHERE key = ?`+s.db.Dialect.ForUpdate()), key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO counters (key, value) VALUES (?, 1)`), key)
		return 1, err
	case err != nil:
		return 0, err
	}
	_, err = tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE counters SET value = ? WHERE key = ?`), v+1, key)
	return v + 1, err
}

func (s store) counter(t testing.TB, key string) int {
	t.Helper()
	var v int
	err := s.db.QueryRowContext(context.Background(), s.db.Dialect.Rebind(`SELECT value FROM counters WHERE key = ?`), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatalf("read counter %s: %v", key, err)
	}
	return v
}

func (s store) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), s.db.Dialect.Rebind(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (s store) claimed(t testing.TB, key inbox.Key) bool {
	t.Helper()
	return s.count(t, `SELECT COUNT(*) FROM inbox WHERE consumer = ? AND event_id = ?`, key.Consumer, key.EventID) == 1
}

func (s store) outboxEventIDs(t testing.TB) []string {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), `SELECT event_id FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// incremented is the event a counter handler publishes.
func incremented(cause, key string, value int) events.Outgoing {
	return events.Outgoing{
		ID:      events.DerivedID(cause, "incremented"),
		Subject: "test.incremented." + key,
		Type:    "choreo.test.incremented.v1",
		Source:  "choreo/test",
		Data:    map[string]any{"key": key, "value": value},
	}
}

// incrementHandler increments key and emits one event derived from the
// input's id.
func (s store) incrementHandler(ctx context.Context, eventID, key string) func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
	return func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		v, err := s.increment(ctx, tx, key)
		if err != nil {
			return nil, err
		}
		return []events.Outgoing{incremented(eventID, key, v)}, nil
	}
}

func testApplyCommits(t *testing.T, b sqltest.Backend) {
	// In a trace, which the event written keeps.
	ctx := events.ExtractTrace(context.Background(), nats.Header{events.HeaderTraceParent: {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	s := mustStore(t, b)
	key := inbox.Key{Consumer: "counter", EventID: "in-1"}
	applied, err := inbox.Apply(ctx, s.ob, key, s.incrementHandler(ctx, key.EventID, "k"))
	if err != nil || !applied {
		t.Fatalf("Apply: got (%v, %v), want (true, nil)", applied, err)
	}
	if got := s.counter(t, "k"); got != 1 {
		t.Errorf("counter: got %d, want 1", got)
	}
	if !s.claimed(t, key) {
		t.Errorf("inbox claim of %+v: got none, want one", key)
	}
	want := events.DerivedID("in-1", "incremented")
	if got := s.outboxEventIDs(t); len(got) != 1 || got[0] != want {
		t.Fatalf("outbox: got %v, want [%s]", got, want)
	}
	var subject, headers string
	var payload []byte
	if err := s.db.QueryRowContext(ctx, `SELECT subject, headers, payload FROM outbox`).Scan(&subject, &headers, &payload); err != nil {
		t.Fatal(err)
	}
	if subject != "test.incremented.k" {
		t.Errorf("outbox subject: got %q, want %q", subject, "test.incremented.k")
	}
	if !strings.Contains(headers, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") {
		t.Errorf("outbox headers: got %s, want the traceparent", headers)
	}
	env, err := events.Decode(payload)
	if err != nil {
		t.Fatalf("outbox payload: got %v decoding %s, want a valid CloudEvent", err, payload)
	}
	if env.ID != want || env.Type != "choreo.test.incremented.v1" || env.Subject != "k" {
		t.Errorf("outbox payload: got id %q type %q subject %q, want %q %q %q", env.ID, env.Type, env.Subject, want, "choreo.test.incremented.v1", "k")
	}
	if string(env.Data) != `{"key":"k","value":1}` {
		t.Errorf("outbox data: got %s, want %s", env.Data, `{"key":"k","value":1}`)
	}
}

func testDuplicateIsNoop(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	key := inbox.Key{Consumer: "counter", EventID: "in-1"}
	if applied, err := inbox.Apply(ctx, s.ob, key, s.incrementHandler(ctx, key.EventID, "k")); err != nil || !applied {
		t.Fatalf("first Apply: got (%v, %v), want (true, nil)", applied, err)
	}
	called := false
	applied, err := inbox.Apply(ctx, s.ob, key, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		called = true
		v, err := s.increment(ctx, tx, "k")
		return []events.Outgoing{incremented("other", "k", v)}, err
	})
	if err != nil || applied {
		t.Errorf("second Apply: got (%v, %v), want (false, nil)", applied, err)
	}
	if called {
		t.Error("handler on a duplicate: got called, want not called")
	}
	if got := s.counter(t, "k"); got != 1 {
		t.Errorf("counter: got %d, want 1", got)
	}
	if got := s.outboxEventIDs(t); len(got) != 1 {
		t.Errorf("outbox rows: got %v, want exactly one", got)
	}
}

func testClaimsArePerConsumer(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	for _, consumer := range []string{"a", "b"} {
		key := inbox.Key{Consumer: consumer, EventID: "in-1"}
		applied, err := inbox.Apply(ctx, s.ob, key, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
			_, err := s.increment(ctx, tx, "k")
			return nil, err
		})
		if err != nil || !applied {
			t.Errorf("Apply for consumer %s: got (%v, %v), want (true, nil)", consumer, applied, err)
		}
	}
	if got := s.counter(t, "k"); got != 2 {
		t.Errorf("counter: got %d, want 2 (one event, two consumers)", got)
	}
}

func testEmptyEventIDSkipsInbox(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	for i := range 2 {
		applied, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "http"}, s.incrementHandler(ctx, "req-"+strconv.Itoa(i), "k"))
		if err != nil || !applied {
			t.Fatalf("Apply %d without an event id: got (%v, %v), want (true, nil)", i, applied, err)
		}
	}
	if got := s.counter(t, "k"); got != 2 {
		t.Errorf("counter: got %d, want 2", got)
	}
	if got := s.count(t, `SELECT COUNT(*) FROM inbox`); got != 0 {
		t.Errorf("inbox rows: got %d, want 0", got)
	}
	if got := s.outboxEventIDs(t); len(got) != 2 {
		t.Errorf("outbox rows: got %v, want two", got)
	}
}

func testHandlerErrorRollsBack(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	key := inbox.Key{Consumer: "counter", EventID: "in-1"}
	errBoom := errors.New("boom")
	applied, err := inbox.Apply(ctx, s.ob, key, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		v, err := s.increment(ctx, tx, "k")
		if err != nil {
			return nil, err
		}
		// Rows written by the handler itself, too, must go.
		if err := s.ob.Add(ctx, tx, incremented("direct", "k", v)); err != nil {
			return nil, err
		}
		return []events.Outgoing{incremented(key.EventID, "k", v)}, events.Permanent(fmt.Errorf("rejected: %w", errBoom))
	})
	if applied {
		t.Error("Apply with a failing handler: got applied=true, want false")
	}
	if !errors.Is(err, errBoom) || !events.IsPermanent(err) {
		t.Errorf("Apply error: got %v (permanent=%v), want the handler's permanent error", err, events.IsPermanent(err))
	}
	if got := s.counter(t, "k"); got != 0 {
		t.Errorf("counter: got %d, want 0", got)
	}
	if s.claimed(t, key) {
		t.Error("inbox claim: got one, want none (a redelivery must try again)")
	}
	if got := s.outboxEventIDs(t); len(got) != 0 {
		t.Errorf("outbox: got %v, want empty", got)
	}

	applied, err = inbox.Apply(ctx, s.ob, key, s.incrementHandler(ctx, key.EventID, "k"))
	if err != nil || !applied {
		t.Fatalf("retry with the same key: got (%v, %v), want (true, nil)", applied, err)
	}
	if got := s.counter(t, "k"); got != 1 {
		t.Errorf("counter after retry: got %d, want 1", got)
	}
	if got := s.outboxEventIDs(t); len(got) != 1 {
		t.Errorf("outbox after retry: got %v, want one row", got)
	}
}

func testInvalidOutgoingRollsBack(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	key := inbox.Key{Consumer: "counter", EventID: "in-1"}
	bad := map[string]events.Outgoing{
		"NoSubject":       {ID: "e-1", Type: "t", Source: "s", Data: 1},
		"WildcardSubject": {ID: "e-1", Subject: "test.*.k", Type: "t", Source: "s", Data: 1},
		"TailWildcard":    {ID: "e-1", Subject: "test.>", Type: "t", Source: "s", Data: 1},
		"EmptyToken":      {ID: "e-1", Subject: "test..k", Type: "t", Source: "s", Data: 1},
		"TrailingDot":     {ID: "e-1", Subject: "test.x.", Type: "t", Source: "s", Data: 1},
		"TabInSubject":    {ID: "e-1", Subject: "test.x.a\tb", Type: "t", Source: "s", Data: 1},
		"SpaceInSubject":  {ID: "e-1", Subject: "test.x.a b", Type: "t", Source: "s", Data: 1},
		"NoID":            {Subject: "test.x.k", Type: "t", Source: "s", Data: 1},
		"NoType":          {ID: "e-1", Subject: "test.x.k", Source: "s", Data: 1},
		"NilData":         {ID: "e-1", Subject: "test.x.k", Type: "t", Source: "s"},
	}
	for name, o := range bad {
		applied, err := inbox.Apply(ctx, s.ob, key, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
			_, err := s.increment(ctx, tx, "k")
			return []events.Outgoing{incremented(key.EventID, "k", 1), o}, err
		})
		if applied || err == nil || !events.IsPermanent(err) {
			t.Errorf("%s: got (%v, %v), want (false, a permanent error)", name, applied, err)
		}
	}
	if got := s.counter(t, "k"); got != 0 {
		t.Errorf("counter: got %d, want 0", got)
	}
	if s.claimed(t, key) {
		t.Error("inbox claim: got one, want none")
	}
	if got := s.outboxEventIDs(t); len(got) != 0 {
		t.Errorf("outbox: got %v, want empty", got)
	}
}

func testConcurrentAppliesSerialise(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	// The row exists up front so that FOR UPDATE has something to lock.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO counters (key, value) VALUES ('k', 0)`); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := "in-" + strconv.Itoa(i)
			applied, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "counter", EventID: id}, s.incrementHandler(ctx, id, "k"))
			if err == nil && !applied {
				err = fmt.Errorf("apply %s: got applied=false, want true", id)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Apply: got %v, want nil", err)
		}
	}
	if got := s.counter(t, "k"); got != n {
		t.Errorf("counter: got %d, want %d (no lost update)", got, n)
	}
	if got := s.count(t, `SELECT COUNT(*) FROM inbox`); got != n {
		t.Errorf("inbox rows: got %d, want %d", got, n)
	}
	if got := s.outboxEventIDs(t); len(got) != n {
		t.Errorf("outbox rows: got %d, want %d", len(got), n)
	}
}

func testConcurrentDuplicatesApplyOnce(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO counters (key, value) VALUES ('k', 0)`); err != nil {
		t.Fatal(err)
	}
	// The same event delivered to several replicas at once.
	const n = 10
	key := inbox.Key{Consumer: "counter", EventID: "in-1"}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applies int
	)
	for range n {
		wg.Go(func() {
			applied, err := inbox.Apply(ctx, s.ob, key, s.incrementHandler(ctx, key.EventID, "k"))
			if err != nil {
				t.Errorf("concurrent duplicate Apply: got %v, want nil", err)
			}
			if applied {
				mu.Lock()
				applies++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if applies != 1 {
		t.Errorf("applied: got %d times, want once", applies)
	}
	if got := s.counter(t, "k"); got != 1 {
		t.Errorf("counter: got %d, want 1", got)
	}
	if got := s.outboxEventIDs(t); len(got) != 1 {
		t.Errorf("outbox rows: got %v, want one", got)
	}
}

func testOutboxAddSkipsDuplicate(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	evt := incremented("in-1", "k", 1)
	other := incremented("in-2", "k", 2)
	add := func(evts ...events.Outgoing) {
		t.Helper()
		if err := s.db.InTx(ctx, func(tx *sql.Tx) error { return s.ob.Add(ctx, tx, evts...) }); err != nil {
			t.Fatalf("Add: got %v, want nil", err)
		}
	}
	add(evt, evt)   // twice in one call
	add(evt, other) // again in a later transaction, with a new one
	add()           // nothing at all
	want := []string{evt.ID, other.ID}
	if got := s.outboxEventIDs(t); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("outbox: got %v, want %v", got, want)
	}
}

func testOutboxBacklog(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	n, oldest, err := s.ob.Backlog(ctx)
	if err != nil || n != 0 || !oldest.IsZero() {
		t.Errorf("empty Backlog: got (%d, %s, %v), want (0, zero time, nil)", n, oldest, err)
	}
	for i := range 3 {
		id := "in-" + strconv.Itoa(i)
		if _, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "c", EventID: id}, s.incrementHandler(ctx, id, "k")); err != nil {
			t.Fatal(err)
		}
	}
	n, oldest, err = s.ob.Backlog(ctx)
	if err != nil || n != 3 || oldest.IsZero() {
		t.Errorf("Backlog: got (%d, %s, %v), want (3, a time, nil)", n, oldest, err)
	}
	if s.ob.DB() != s.db {
		t.Error("DB: got another database, want the outbox's own")
	}
}

func testClaimNeedsIDs(t *testing.T, b sqltest.Backend) {
	ctx := context.Background()
	s := mustStore(t, b)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, k := range []inbox.Key{{Consumer: "", EventID: "e"}, {Consumer: "c", EventID: ""}} {
		first, err := inbox.Claim(ctx, tx, s.db, k.Consumer, k.EventID)
		if first || !events.IsPermanent(err) {
			t.Errorf("Claim(%q, %q): got (%v, %v), want (false, a permanent error)", k.Consumer, k.EventID, first, err)
		}
	}
	first, err := inbox.Claim(ctx, tx, s.db, "c", "e")
	if err != nil || !first {
		t.Errorf("first Claim: got (%v, %v), want (true, nil)", first, err)
	}
	first, err = inbox.Claim(ctx, tx, s.db, "c", "e")
	if err != nil || first {
		t.Errorf("second Claim in the same tx: got (%v, %v), want (false, nil)", first, err)
	}
}

// A unit of work that asks for a retry runs again in a new transaction —
// its first run's writes and claim rolled back — and gives up after a few
// runs with the error.
func testErrRetry(t *testing.T, b sqltest.Backend) {
	s := mustStore(t, b)
	ctx := context.Background()
	runs := 0
	applied, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "c", EventID: "e-1"}, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		runs++
		if _, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO counters (key, value) VALUES (?, ?)`), fmt.Sprint("run-", runs), 1); err != nil {
			return nil, err
		}
		if runs == 1 {
			return nil, fmt.Errorf("row created concurrently: %w", inbox.ErrRetry)
		}
		return nil, nil
	})
	if err != nil || !applied || runs != 2 {
		t.Fatalf("got applied %v, err %v after %d runs; want applied after 2", applied, err, runs)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM counters`).Scan(&n); err != nil || n != 1 {
		t.Errorf("counters: %d rows (err %v), want 1: the first run's write rolled back", n, err)
	}

	runs = 0
	_, err = inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "c", EventID: "e-2"}, func(context.Context, *sql.Tx) ([]events.Outgoing, error) {
		runs++
		return nil, fmt.Errorf("always racing: %w", inbox.ErrRetry)
	})
	if !errors.Is(err, inbox.ErrRetry) || runs < 2 || runs > 10 {
		t.Errorf("got %v after %d runs; want ErrRetry after a few runs", err, runs)
	}
}

// One transaction for many units: each unit is claimed and applied once,
// a unit whose claim an earlier unit of the batch took is a duplicate,
// and a failing unit commits none of them.
func testApplyAll(t *testing.T, b sqltest.Backend) {
	s := mustStore(t, b)
	ctx := context.Background()
	units := []inbox.Unit{
		{Key: inbox.Key{Consumer: "c", EventID: "e-1"}, Fn: s.incrementHandler(ctx, "e-1", "a")},
		{Key: inbox.Key{Consumer: "c", EventID: "e-2"}, Fn: s.incrementHandler(ctx, "e-2", "b")},
		{Key: inbox.Key{Consumer: "c", EventID: "e-1"}, Fn: s.incrementHandler(ctx, "e-1", "a")}, // a copy in the same batch
		{Key: inbox.Key{Consumer: "c", EventID: "e-3"}},                                          // a claim only
	}
	applied, err := inbox.ApplyAll(ctx, s.ob, units)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false, true}; !slices.Equal(applied, want) {
		t.Errorf("applied: got %v, want %v", applied, want)
	}
	if a, b := s.counter(t, "a"), s.counter(t, "b"); a != 1 || b != 1 {
		t.Errorf("counters: got a=%d b=%d, want 1 and 1", a, b)
	}
	// Again, with a failing unit last: nothing of the batch commits.
	bad := errors.New("bad unit")
	_, err = inbox.ApplyAll(ctx, s.ob, []inbox.Unit{
		{Key: inbox.Key{Consumer: "c", EventID: "e-4"}, Fn: s.incrementHandler(ctx, "e-4", "a")},
		{Key: inbox.Key{Consumer: "c", EventID: "e-5"}, Fn: func(context.Context, *sql.Tx) ([]events.Outgoing, error) { return nil, bad }},
	})
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), "unit 2 of 2") {
		t.Errorf("failing batch: got %v, want the unit's error, naming it", err)
	}
	if a := s.counter(t, "a"); a != 1 {
		t.Errorf("counter a after the failed batch: got %d, want 1 (rolled back)", a)
	}
	if applied, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "c", EventID: "e-4"}, s.incrementHandler(ctx, "e-4", "a")); err != nil || !applied {
		t.Errorf("e-4 after the failed batch: got (%v, %v), want it unclaimed", applied, err)
	}
}

// Prune deletes the claims older than the horizon, in small transactions,
// and keeps every younger one.
func testPrune(t *testing.T, b sqltest.Backend) {
	s := mustStore(t, b)
	ctx := context.Background()
	now := time.Now()
	put := func(id string, at time.Time) {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO inbox (consumer, event_id, claimed_unix_ms) VALUES (?, ?, ?)`),
			"c", id, at.UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 25 {
		put("old-"+strconv.Itoa(i), now.Add(-48*time.Hour-time.Duration(i)*time.Minute))
	}
	for i := range 5 {
		put("new-"+strconv.Itoa(i), now.Add(-time.Duration(i)*time.Minute))
	}
	n, err := inbox.Prune(ctx, s.db, now.Add(-24*time.Hour), 10)
	if err != nil || n != 25 {
		t.Fatalf("Prune: got (%d, %v), want (25, nil)", n, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT event_id FROM inbox ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var left []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if want := []string{"new-0", "new-1", "new-2", "new-3", "new-4"}; !slices.Equal(left, want) {
		t.Errorf("claims left: got %v, want %v", left, want)
	}
	oldest, err := inbox.Oldest(ctx, s.db)
	if err != nil || oldest.After(now) || now.Sub(oldest) < 4*time.Minute {
		t.Errorf("Oldest: got (%s, %v), want about 4 minutes ago", oldest, err)
	}
	// A pruned claim is forgotten: its message would be applied again.
	if applied, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "c", EventID: "old-3"}, s.incrementHandler(ctx, "old-3", "k")); err != nil || !applied {
		t.Errorf("a pruned claim: got (%v, %v), want it applied as new", applied, err)
	}
}

// The same key with another body is a conflict naming the earlier claim,
// and changes nothing; with the same body it is a duplicate. A claim
// without a hash (an event's), or held without one (taken before hashes
// existed), is compared by key alone.
func testKeyReused(t *testing.T, b sqltest.Backend) {
	s := mustStore(t, b)
	ctx := context.Background()
	apply := func(k inbox.Key, n int) (bool, error) {
		return inbox.Apply(ctx, s.ob, k, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
			_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO counters (key, value) VALUES (?, ?)`), fmt.Sprint(k.EventID, "-", n), n)
			return nil, err
		})
	}
	key := inbox.Key{Consumer: "c", EventID: "cmd.inventory.restock:r-1", Hash: "hash-of-100", Ref: "COMMANDS:7"}
	if applied, err := apply(key, 1); err != nil || !applied {
		t.Fatalf("first claim: got (%v, %v), want (true, nil)", applied, err)
	}
	if applied, err := apply(key, 2); err != nil || applied {
		t.Errorf("same key, same body: got (%v, %v), want a duplicate (false, nil)", applied, err)
	}
	other := key
	other.Hash, other.Ref = "hash-of-1", "COMMANDS:9"
	applied, err := apply(other, 3)
	if applied || events.KindOf(err) != events.KindConflict || !errors.Is(err, inbox.ErrKeyReused) {
		t.Fatalf("same key, another body: got (%v, %v), want a conflict wrapping ErrKeyReused", applied, err)
	}
	for _, want := range []string{`"cmd.inventory.restock:r-1"`, "earlier command (COMMANDS:7)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("conflict %q: want it to name %s", err, want)
		}
	}
	noHash := key
	noHash.Hash = ""
	if applied, err := apply(noHash, 4); err != nil || applied {
		t.Errorf("same key without a hash: got (%v, %v), want a duplicate", applied, err)
	}
	legacy := inbox.Key{Consumer: "c", EventID: "e-legacy"}
	if applied, err := apply(legacy, 5); err != nil || !applied {
		t.Fatalf("claim without a hash: got (%v, %v)", applied, err)
	}
	legacy.Hash = "h"
	if applied, err := apply(legacy, 6); err != nil || applied {
		t.Errorf("a claim held without a hash, claimed again with one: got (%v, %v), want a duplicate", applied, err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM counters`).Scan(&n); err != nil || n != 2 {
		t.Errorf("units applied: got %d (%v), want 2: a conflict or a duplicate changes nothing", n, err)
	}
}
