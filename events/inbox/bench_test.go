package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// BenchmarkApply compares inbox.Apply (claim, a state upsert, one outgoing
// event, commit) with the raw limit of the same store: a transaction that
// inserts one state row and one outbox-sized row and commits. It reports
// both rates and their ratio (apply/raw) per engine; ns/op is Apply's.
// PostgreSQL runs when CHOREO_TEST_POSTGRES_URL is set and reachable.
//
// The b.N transactions of each kind run in a few alternating rounds, so
// both see the same background load on a shared machine.
//
//	go test -run '^$' -bench Apply -benchtime 2000x ./events/inbox
func BenchmarkApply(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) { benchmarkApply(b, be) })
	}
}

func benchmarkApply(b *testing.B, be sqltest.Backend) {
	b.StopTimer()
	ctx := context.Background()
	s := mustStore(b, be)
	db := s.db
	// The raw outbox-like row goes into a table of the outbox's own shape
	// (same id sequence, same unique event id).
	if _, err := db.ExecContext(ctx, rawOutboxDDL(db)); err != nil {
		b.Fatal(err)
	}
	// The raw row carries the same bytes Apply's outbox row does.
	env, err := benchOutgoing("raw", 0).Envelope()
	if err != nil {
		b.Fatal(err)
	}
	payload, err := events.Encode(env)
	if err != nil {
		b.Fatal(err)
	}
	upsert := db.Dialect.Rebind(`INSERT INTO counters (key, value) VALUES (?, 1)
		ON CONFLICT (key) DO UPDATE SET value = counters.value + 1`)
	rawInsert := db.Dialect.Rebind(`INSERT INTO raw_outbox (event_id, subject, headers, payload, created_unix_ms)
		VALUES (?, ?, ?, ?, ?)`)
	headers := `{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`

	var raw, apply time.Duration
	const rounds = 4
	for round := range rounds {
		from, to := b.N*round/rounds, b.N*(round+1)/rounds
		start := time.Now()
		for i := from; i < to; i++ {
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, upsert, "raw-"+strconv.Itoa(i%100)); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, rawInsert, "raw-"+strconv.Itoa(i), "bench.raw."+strconv.Itoa(i),
					headers, payload, time.Now().UnixMilli())
				return err
			})
			if err != nil {
				b.Fatalf("raw tx %d: %v", i, err)
			}
		}
		raw += time.Since(start)

		b.StartTimer()
		start = time.Now()
		for i := from; i < to; i++ {
			id := "in-" + strconv.Itoa(i)
			applied, err := inbox.Apply(ctx, s.ob, inbox.Key{Consumer: "bench", EventID: id}, func(_ context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
				if _, err := tx.ExecContext(ctx, upsert, "k-"+strconv.Itoa(i%100)); err != nil {
					return nil, err
				}
				return []events.Outgoing{benchOutgoing("apply", i)}, nil
			})
			if err != nil || !applied {
				b.Fatalf("Apply %d: got (%v, %v), want (true, nil)", i, applied, err)
			}
		}
		apply += time.Since(start)
		b.StopTimer()
	}

	rawRate := float64(b.N) / raw.Seconds()
	applyRate := float64(b.N) / apply.Seconds()
	b.ReportMetric(rawRate, "raw_tx/s")
	b.ReportMetric(applyRate, "apply_tx/s")
	b.ReportMetric(applyRate/rawRate, "ratio")
}

// rawOutboxDDL is the outbox table of the engine's migration, renamed.
func rawOutboxDDL(db *sqldb.DB) string {
	if db.Dialect.Engine == sqldb.Postgres {
		return `CREATE TABLE raw_outbox (
			id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL,
			headers TEXT NOT NULL, payload BYTEA NOT NULL, created_unix_ms BIGINT NOT NULL)`
	}
	return `CREATE TABLE raw_outbox (
		id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL,
		headers TEXT NOT NULL, payload BLOB NOT NULL, created_unix_ms INTEGER NOT NULL)`
}

func benchOutgoing(prefix string, i int) events.Outgoing {
	return events.Outgoing{
		ID:      events.DerivedID(prefix+"-"+strconv.Itoa(i), "reserved"),
		Subject: "inventory.reserved.order-" + strconv.Itoa(i),
		Type:    "choreo.inventory.reserved.v1",
		Source:  "choreo/inventory",
		Data: map[string]any{
			"order_id": "order-" + strconv.Itoa(i),
			"items":    []map[string]any{{"sku": "SKU-1", "quantity": 2}},
		},
	}
}

// BenchmarkApplyAll is the consumer's batch: n units of work (claim, a
// state upsert, one outgoing event each) in one transaction, against the
// same units applied one transaction each. It reports both rates in units
// per second and their ratio; ns/op is the batched run's, per unit.
//
//	go test -run '^$' -bench ApplyAll -benchtime 4096x -benchmem ./events/inbox
func BenchmarkApplyAll(b *testing.B) {
	for _, be := range sqltest.Backends() {
		for _, n := range []int{16, 64} {
			b.Run(fmt.Sprintf("%s/batch%d", be.Name, n), func(b *testing.B) { benchmarkApplyAll(b, be, n) })
		}
	}
}

func benchmarkApplyAll(b *testing.B, be sqltest.Backend, n int) {
	b.StopTimer()
	ctx := context.Background()
	s := mustStore(b, be)
	unit := func(prefix string, i int) inbox.Unit {
		return inbox.Unit{
			Key: inbox.Key{Consumer: "bench", EventID: prefix + strconv.Itoa(i)},
			Fn: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
				if _, err := s.db.In(tx).Exec(ctx, `INSERT INTO counters (key, value) VALUES (?, 1)
					ON CONFLICT (key) DO UPDATE SET value = counters.value + 1`, "k-"+strconv.Itoa(i%100)); err != nil {
					return nil, err
				}
				return []events.Outgoing{benchOutgoing(prefix, i)}, nil
			},
		}
	}
	start := time.Now()
	for i := range b.N {
		if _, err := inbox.ApplyAll(ctx, s.ob, []inbox.Unit{unit("one-", i)}); err != nil {
			b.Fatal(err)
		}
	}
	single := time.Since(start)

	b.ReportAllocs()
	b.StartTimer()
	start = time.Now()
	units := make([]inbox.Unit, 0, n)
	for i := range b.N {
		units = append(units, unit("batch-", i))
		if len(units) == n || i == b.N-1 {
			if _, err := inbox.ApplyAll(ctx, s.ob, units); err != nil {
				b.Fatal(err)
			}
			units = units[:0]
		}
	}
	batched := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/single.Seconds(), "single_units/s")
	b.ReportMetric(float64(b.N)/batched.Seconds(), "batched_units/s")
	b.ReportMetric(single.Seconds()/batched.Seconds(), "speedup")
}
