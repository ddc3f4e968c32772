package consumer

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// CounterStore is a database with the outbox, the inbox and a table of
// counters: the smallest service a consumer can apply work to. Declared
// in a test file, it exists in test builds only, for this package's
// tests and its external ones alike.
type CounterStore struct {
	DB     *sqldb.DB
	Outbox *outbox.Outbox
}

// NewCounterStore opens a fresh store on b.
func NewCounterStore(t testing.TB, b sqltest.Backend) *CounterStore {
	t.Helper()
	ctx := context.Background()
	db := b.Open(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE counters (key TEXT PRIMARY KEY, value BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return &CounterStore{DB: db, Outbox: outbox.New(db)}
}

// Increment is a unit of work that adds one to the counter of key.
func (s *CounterStore) Increment(key string) func(context.Context, *sql.Tx) ([]events.Outgoing, error) {
	return func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
		_, err := s.DB.In(tx).Exec(ctx, `INSERT INTO counters (key, value) VALUES (?, 1)
			ON CONFLICT (key) DO UPDATE SET value = counters.value + 1`, key)
		return nil, err
	}
}

// Counters returns every counter by key.
func (s *CounterStore) Counters(t testing.TB) map[string]int64 {
	t.Helper()
	rows, err := s.DB.QueryContext(context.Background(), `SELECT key, value FROM counters`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			k string
			v int64
		)
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TxLog records, per transaction, what ran in it (committed or not), in
// the order it ran: to see batches and the transactions they took.
type TxLog struct {
	mu    sync.Mutex
	order []*sql.Tx
	byTx  map[*sql.Tx][]string
}

// Add records that what ran in tx.
func (l *TxLog) Add(tx *sql.Tx, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byTx == nil {
		l.byTx = map[*sql.Tx][]string{}
	}
	if _, seen := l.byTx[tx]; !seen {
		l.order = append(l.order, tx)
	}
	l.byTx[tx] = append(l.byTx[tx], what)
}

// Transactions lists what ran in each transaction, oldest first, as
// "a,b,c".
func (l *TxLog) Transactions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.order))
	for i, tx := range l.order {
		out[i] = strings.Join(l.byTx[tx], ",")
	}
	return out
}

// Largest is the most that ran in one transaction.
func (l *TxLog) Largest() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ran := range l.byTx {
		n = max(n, len(ran))
	}
	return n
}
