package consumer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// attempts records, per transaction, the units whose work ran in it
// (committed or not), in the order they ran.
type attempts struct {
	mu    sync.Mutex
	order []*sql.Tx
	units map[*sql.Tx][]string
}

func (a *attempts) add(tx *sql.Tx, unit string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.units == nil {
		a.units = map[*sql.Tx][]string{}
	}
	if _, seen := a.units[tx]; !seen {
		a.order = append(a.order, tx)
	}
	a.units[tx] = append(a.units[tx], unit)
}

// transactions lists the units of each transaction, oldest first, as
// "a,b,c".
func (a *attempts) transactions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, len(a.order))
	for i, tx := range a.order {
		out[i] = strings.Join(a.units[tx], ",")
	}
	return out
}

// applyFixture is a consumer with a store of counters, whose apply is
// called directly on items, so that the transactions a batch takes are
// known exactly.
type applyFixture struct {
	c   *Consumer
	db  *sqldb.DB
	log attempts
}

func newApplyFixture(t *testing.T, b sqltest.Backend) *applyFixture {
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
	cfg := Config{Outbox: outbox.New(db)}
	cfg.setDefaults()
	return &applyFixture{c: &Consumer{cfg: cfg, baseCtx: context.Background()}, db: db}
}

// item is a message of a batch whose work counts it, after fail (when
// set) has had its say.
func (f *applyFixture) item(name string, fail func(ctx context.Context, tx *sql.Tx) error) *item {
	return &item{
		m:     &Message{ID: name},
		ctx:   context.Background(),
		first: true,
		work: Work{
			Key: inbox.Key{Consumer: "svc", EventID: name},
			Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
				f.log.add(tx, name)
				if fail != nil {
					if err := fail(ctx, tx); err != nil {
						return nil, err
					}
				}
				_, err := f.db.In(tx).Exec(ctx, `INSERT INTO counters (key, value) VALUES (?, 1)
					ON CONFLICT (key) DO UPDATE SET value = counters.value + 1`, name)
				return nil, err
			},
		},
	}
}

func (f *applyFixture) counters(t *testing.T) map[string]int64 {
	t.Helper()
	rows, err := f.db.QueryContext(context.Background(), `SELECT key, value FROM counters`)
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

var errPoison = events.Permanent(errors.New("poison"))

func poison(context.Context, *sql.Tx) error { return errPoison }

// A batch with poison messages sets each aside and applies the others
// together again: one transaction per failure and one for the rest, not
// one per message; each poison message then fails in a transaction of
// its own, and nothing it did survives.
func TestApplySetsAsideTheMessageThatFailed(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newApplyFixture(t, b)
			items := []*item{
				f.item("m0", nil), f.item("m1", nil), f.item("p2", poison),
				f.item("m3", nil), f.item("p4", poison), f.item("m5", nil),
			}
			f.c.apply(items)

			want := []string{
				"m0,m1,p2",    // the batch, up to the first failure
				"m0,m1,m3,p4", // again without p2, up to the second
				"m0,m1,m3,m5", // without either: committed
				"p2", "p4",    // each alone, in the order they failed
			}
			if got := f.log.transactions(); !slices.Equal(got, want) {
				t.Errorf("transactions:\n got %q\nwant %q", got, want)
			}
			for _, it := range items {
				poisoned := strings.HasPrefix(it.m.ID, "p")
				switch {
				case poisoned && !errors.Is(it.err, errPoison):
					t.Errorf("%s: err %v, want the poison", it.m.ID, it.err)
				case !poisoned && (it.err != nil || !it.applied):
					t.Errorf("%s: err %v, applied %v; want applied", it.m.ID, it.err, it.applied)
				}
			}
			got := f.counters(t)
			if len(got) != 4 {
				t.Errorf("counters: %v, want m0, m1, m3 and m5 only", got)
			}
			for _, k := range []string{"m0", "m1", "m3", "m5"} {
				if got[k] != 1 {
					t.Errorf("counter %s = %d, want 1", k, got[k])
				}
			}
		})
	}
}

// A message that comes before another of its own batch that it follows
// (an Early error until that one is applied) is applied in the batch's
// second transaction, after the others: no redelivery.
func TestApplyRetriesAnEarlyMessageAfterItsBatch(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newApplyFixture(t, b)
			afterPlaced := func(ctx context.Context, tx *sql.Tx) error {
				var n int
				err := f.db.In(tx).QueryRow(ctx, `SELECT COUNT(*) FROM counters WHERE key = 'placed'`).Scan(&n)
				if err == nil && n == 0 {
					err = events.Early(fmt.Errorf("reserved before placed"))
				}
				return err
			}
			items := []*item{f.item("reserved", afterPlaced), f.item("placed", nil), f.item("other", nil)}
			f.c.apply(items)
			want := []string{"reserved", "placed,other", "reserved"}
			if got := f.log.transactions(); !slices.Equal(got, want) {
				t.Errorf("transactions:\n got %q\nwant %q", got, want)
			}
			for _, it := range items {
				if it.err != nil || !it.applied {
					t.Errorf("%s: err %v, applied %v; want applied", it.m.ID, it.err, it.applied)
				}
			}
		})
	}
}

// A message whose work panics is set aside like one that fails: the
// panic is its permanent error, not its batch's.
func TestApplySetsAsideAPanickingMessage(t *testing.T) {
	f := newApplyFixture(t, sqltest.Backends()[0])
	panics := func(context.Context, *sql.Tx) error { panic("bad message") }
	items := []*item{f.item("m0", nil), f.item("p1", panics), f.item("m2", nil)}
	f.c.apply(items)
	want := []string{"m0,p1", "m0,m2", "p1"}
	if got := f.log.transactions(); !slices.Equal(got, want) {
		t.Errorf("transactions:\n got %q\nwant %q", got, want)
	}
	if err := items[1].err; !events.IsPermanent(err) || !strings.Contains(err.Error(), "bad message") {
		t.Errorf("p1: err %v, want the panic as a permanent error", err)
	}
	for _, it := range []*item{items[0], items[2]} {
		if it.err != nil || !it.applied {
			t.Errorf("%s: err %v, applied %v; want applied", it.m.ID, it.err, it.applied)
		}
	}
}

// Past maxSetAside failures the rest of the batch is applied one message
// per transaction: a batch of poison cannot cost a transaction per
// message twice over.
func TestApplyGivesUpSettingAside(t *testing.T) {
	f := newApplyFixture(t, sqltest.Backends()[0])
	var items []*item
	for i := range maxSetAside + 2 {
		items = append(items, f.item(fmt.Sprintf("p%d", i), poison))
	}
	items = append(items, f.item("m", nil))
	f.c.apply(items)
	txs := f.log.transactions()
	// maxSetAside failures set aside, one more failure of the rest, then
	// every message alone.
	if want := maxSetAside + 1 + len(items); len(txs) != want {
		t.Errorf("%d transactions %q, want %d: %d set aside, the rest failing once more, then each message alone", len(txs), txs, want, maxSetAside)
	}
	if got := f.counters(t); len(got) != 1 || got["m"] != 1 {
		t.Errorf("counters %v, want m = 1 only", got)
	}
}
