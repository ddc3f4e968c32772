package consumer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// applyFixture is a consumer with a store of counters, whose apply is
// called directly on items, so that the transactions a batch takes are
// known exactly.
type applyFixture struct {
	*CounterStore
	c   *Consumer
	log TxLog
}

func newApplyFixture(t *testing.T, b sqltest.Backend) *applyFixture {
	t.Helper()
	s := NewCounterStore(t, b)
	cfg := Config{Outbox: s.Outbox}
	cfg.setDefaults()
	return &applyFixture{CounterStore: s, c: &Consumer{cfg: cfg, baseCtx: context.Background()}}
}

// item is a message of a batch whose work counts it, after fail (when
// set) has had its say.
func (f *applyFixture) item(name string, fail func(ctx context.Context, tx *sql.Tx) error) *item {
	count := f.Increment(name)
	return &item{
		m:     &Message{ID: name},
		ctx:   context.Background(),
		first: true,
		work: Work{
			Key: inbox.Key{Consumer: "svc", EventID: name},
			Apply: func(ctx context.Context, tx *sql.Tx) ([]events.Outgoing, error) {
				f.log.Add(tx, name)
				if fail != nil {
					if err := fail(ctx, tx); err != nil {
						return nil, err
					}
				}
				return count(ctx, tx)
			},
		},
	}
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
			if got := f.log.Transactions(); !slices.Equal(got, want) {
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
			got := f.Counters(t)
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
				err := f.DB.In(tx).QueryRow(ctx, `SELECT COUNT(*) FROM counters WHERE key = 'placed'`).Scan(&n)
				if err == nil && n == 0 {
					err = events.Early(fmt.Errorf("reserved before placed"))
				}
				return err
			}
			items := []*item{f.item("reserved", afterPlaced), f.item("placed", nil), f.item("other", nil)}
			f.c.apply(items)
			want := []string{"reserved", "placed,other", "reserved"}
			if got := f.log.Transactions(); !slices.Equal(got, want) {
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
	if got := f.log.Transactions(); !slices.Equal(got, want) {
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
	txs := f.log.Transactions()
	// maxSetAside failures set aside, one more failure of the rest, then
	// every message alone.
	if want := maxSetAside + 1 + len(items); len(txs) != want {
		t.Errorf("%d transactions %q, want %d: %d set aside, the rest failing once more, then each message alone", len(txs), txs, want, maxSetAside)
	}
	if got := f.Counters(t); len(got) != 1 || got["m"] != 1 {
		t.Errorf("counters %v, want m = 1 only", got)
	}
}
