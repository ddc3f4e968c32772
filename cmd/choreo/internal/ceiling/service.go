package ceiling

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/sqldb"
)

// service is one of the minimal saga's four services: a database holding an
// inbox, a state table and an outbox; the workers that apply the messages
// of its consumers; and the relay that publishes its outbox.
type service struct {
	run    *sagaRun
	name   string // "a" … "d"
	db     *sqldb.DB
	tables []string // inbox, state, outbox: dropped at cleanup
	wake   chan struct{}

	claim       *sql.Stmt // INSERT inbox … ON CONFLICT DO NOTHING
	upsert      *sql.Stmt // INSERT state … ON CONFLICT DO UPDATE n = n + 1
	upsertN     *sql.Stmt // the same, RETURNING n
	bump        *sql.Stmt // UPDATE state SET n = n + 1
	enqueue     *sql.Stmt // INSERT outbox
	load        *sql.Stmt // SELECT the oldest outbox rows
	deleteRange *sql.Stmt // DELETE outbox rows BETWEEN two ids
	count       *sql.Stmt // SELECT COUNT(*) FROM outbox
}

const (
	// relayBatch is the most outbox rows the relay publishes per round
	// trip, as choreo's relay does by default.
	relayBatch = 256
	// pullBuffer is how many messages a consumer's subscription buffers
	// ahead of its worker (at least two batches): the next batch is
	// already in the process when the worker commits the last.
	pullBuffer = 256
)

// openService opens the service's database through open, creates its
// tables and prepares its statements. On error, what it opened is closed
// and what it created dropped.
func openService(ctx context.Context, run *sagaRun, open Opener, name string) (_ *service, err error) {
	dbName := "ceiling_" + name
	db, err := open(ctx, dbName)
	if err != nil {
		return nil, fmt.Errorf("ceiling: open %s: %w", dbName, err)
	}
	prefix := "ceiling_" + run.token + "_" + name + "_"
	s := &service{
		run:    run,
		name:   name,
		db:     db,
		tables: []string{prefix + "inbox", prefix + "state", prefix + "outbox"},
		wake:   make(chan struct{}, 1),
	}
	defer func() {
		if err != nil {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			err = errors.Join(err, s.close(cctx))
		}
	}()
	inbox, state, outbox := s.tables[0], s.tables[1], s.tables[2]
	// The shapes of choreo's tables, with none of their extra columns.
	ddl := []string{
		`CREATE TABLE IF NOT EXISTS ` + inbox + ` (consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id)) WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS ` + state + ` (key TEXT PRIMARY KEY, n INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + outbox + ` (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, payload BLOB NOT NULL)`,
	}
	if db.Dialect.Engine == sqldb.Postgres {
		ddl = []string{
			`CREATE TABLE IF NOT EXISTS ` + inbox + ` (consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id))`,
			`CREATE TABLE IF NOT EXISTS ` + state + ` (key TEXT PRIMARY KEY, n BIGINT NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS ` + outbox + ` (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, payload BYTEA NOT NULL)`,
		}
	}
	for _, q := range ddl {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("ceiling: service %s: create table: %w", name, err)
		}
	}
	upsert := `INSERT INTO ` + state + ` (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = ` + state + `.n + 1`
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.claim, `INSERT INTO ` + inbox + ` (consumer, event_id) VALUES (?, ?) ON CONFLICT (consumer, event_id) DO NOTHING`},
		{&s.upsert, upsert},
		{&s.upsertN, upsert + ` RETURNING n`},
		{&s.bump, `UPDATE ` + state + ` SET n = n + 1 WHERE key = ?`},
		{&s.enqueue, `INSERT INTO ` + outbox + ` (event_id, subject, payload) VALUES (?, ?, ?)`},
		{&s.load, `SELECT id, event_id, subject, payload FROM ` + outbox + ` ORDER BY id LIMIT ?`},
		{&s.deleteRange, `DELETE FROM ` + outbox + ` WHERE id BETWEEN ? AND ?`},
		{&s.count, `SELECT COUNT(*) FROM ` + outbox},
	} {
		if *p.stmt, err = db.PrepareContext(ctx, db.Dialect.Rebind(p.sql)); err != nil {
			return nil, fmt.Errorf("ceiling: service %s: prepare %q: %w", name, p.sql, err)
		}
	}
	return s, nil
}

// close drops the service's tables and closes its database. The workers and
// the relay must have stopped.
func (s *service) close(ctx context.Context) error {
	for _, st := range []*sql.Stmt{s.claim, s.upsert, s.upsertN, s.bump, s.enqueue, s.load, s.deleteRange, s.count} {
		if st != nil {
			_ = st.Close()
		}
	}
	return errors.Join(dropTables(ctx, s.db, s.tables...), closeDB(s.db, "ceiling_"+s.name))
}

// outboxLen returns how many rows wait in the outbox.
func (s *service) outboxLen(ctx context.Context) (int, error) {
	var n int
	if err := s.count.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, fmt.Errorf("ceiling: service %s: count outbox: %w", s.name, err)
	}
	return n, nil
}

// notify wakes the relay after a commit that added outbox rows. It never
// blocks: a wake-up already pending covers this one too.
func (s *service) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// event is something a service writes to its outbox for one saga: the
// subject is subject+key, the event id token-key-name.
type event struct {
	subject string // "ceiling.<token>.a.placed."
	name    string // "a.placed"
}

func (e event) eventID(token, key string) string { return token + "-" + key + "-" + e.name }

// route says what a consumer does with the messages of one subject.
type route struct {
	prefix string  // "ceiling.<token>.a.placed."; the rest of the subject is the saga's key
	emit   []event // written to the outbox in the message's transaction
	// then is written by a second transaction of its own, after the first
	// has committed: when the state count reaches thenAt, or always when
	// thenAt is 0 and then is set.
	then   []event
	thenAt int64
}

// worker applies the messages of one durable consumer.
type worker struct {
	svc     *service
	durable string
	routes  []route
	batch   int
	cons    jetstream.Consumer
	cc      jetstream.ConsumeContext
	msgs    chan jetstream.Msg

	items  []item  // reused across batches
	follow []*item // the items whose second transaction is due
	taken  []jetstream.Msg
}

type item struct {
	msg     jetstream.Msg
	route   *route
	key     string
	eventID string
}

// start subscribes to the consumer. Its messages go to w.msgs, where the
// worker loop collects what is already there into one batch.
func (w *worker) start(ctx context.Context) error {
	cc, err := w.cons.Consume(func(m jetstream.Msg) {
		select {
		case w.msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(max(pullBuffer, 2*w.batch)))
	if err != nil {
		return fmt.Errorf("ceiling: consume %s: %w", w.durable, err)
	}
	w.cc = cc
	return nil
}

// stop ends the subscription and waits until its handler has returned for
// the last time, at most until ctx is done. ctx passed to start must be
// done already, so the handler cannot block.
func (w *worker) stop(ctx context.Context) {
	if w.cc == nil {
		return
	}
	w.cc.Stop()
	select {
	case <-w.cc.Closed():
	case <-ctx.Done():
	}
}

// loop takes up to w.batch messages that are already available — it never
// waits to fill a batch — and applies them, until ctx is done. A batch that
// cannot be applied fails the run.
func (w *worker) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-w.msgs:
			w.taken = append(w.taken[:0], m)
		}
	collect:
		for len(w.taken) < w.batch {
			select {
			case m := <-w.msgs:
				w.taken = append(w.taken, m)
			default:
				break collect
			}
		}
		if err := w.apply(ctx, w.taken); err != nil {
			if ctx.Err() == nil {
				w.svc.run.fail(fmt.Errorf("ceiling: service %s: consumer %s: %w", w.svc.name, w.durable, err))
			}
			return
		}
	}
}

// apply handles one batch: one transaction claims every message in the
// inbox and, for the first delivery of each, upserts its state and writes
// its events to the outbox; the messages whose route asks for it then get a
// second transaction (state update and outbox rows). Only then are the
// messages acked and the relay woken. A transaction that fails is retried a
// few times before apply gives up.
func (w *worker) apply(ctx context.Context, msgs []jetstream.Msg) error {
	w.items = w.items[:0]
	for _, m := range msgs {
		it, err := w.parse(m)
		if err != nil {
			return err
		}
		w.items = append(w.items, it)
	}
	if len(w.items) > 1 {
		// The same order in every transaction of every worker: two
		// transactions on PostgreSQL then take their row locks in the same
		// order and cannot deadlock.
		slices.SortFunc(w.items, func(a, b item) int { return cmp.Compare(a.key, b.key) })
	}
	var wrote bool
	err := retry(ctx, func() error {
		w.follow = w.follow[:0]
		var err error
		wrote, err = w.first(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if len(w.follow) > 0 {
		if err := retry(ctx, func() error { return w.second(ctx) }); err != nil {
			return err
		}
		wrote = true
	}
	for _, it := range w.items {
		// An ack that is lost is harmless: the server redelivers the
		// message after the ack wait, and the inbox turns it into a no-op.
		_ = it.msg.Ack()
	}
	if wrote {
		w.svc.notify()
	}
	return nil
}

func (w *worker) parse(m jetstream.Msg) (item, error) {
	subject := m.Subject()
	for i := range w.routes {
		r := &w.routes[i]
		if strings.HasPrefix(subject, r.prefix) {
			return item{msg: m, route: r, key: subject[len(r.prefix):], eventID: m.Headers().Get(jetstream.MsgIDHeader)}, nil
		}
	}
	return item{}, fmt.Errorf("unexpected subject %s", subject)
}

// first runs the batch's transaction and reports whether it wrote outbox
// rows. It records in w.follow the items due a second transaction.
func (w *worker) first(ctx context.Context) (wrote bool, err error) {
	s := w.svc
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	claim := tx.StmtContext(ctx, s.claim)
	var upsert, upsertN, enqueue *sql.Stmt
	for i := range w.items {
		it := &w.items[i]
		res, err := claim.ExecContext(ctx, w.durable, it.eventID)
		if err != nil {
			return false, fmt.Errorf("claim %s: %w", it.eventID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, fmt.Errorf("claim %s: %w", it.eventID, err)
		} else if n == 0 {
			continue // a duplicate: it changes nothing
		}
		r := it.route
		if r.thenAt > 0 {
			if upsertN == nil {
				upsertN = tx.StmtContext(ctx, s.upsertN)
			}
			var n int64
			if err := upsertN.QueryRowContext(ctx, it.key).Scan(&n); err != nil {
				return false, fmt.Errorf("upsert %s: %w", it.key, err)
			}
			if n == r.thenAt {
				w.follow = append(w.follow, it)
			}
		} else {
			if upsert == nil {
				upsert = tx.StmtContext(ctx, s.upsert)
			}
			if _, err := upsert.ExecContext(ctx, it.key); err != nil {
				return false, fmt.Errorf("upsert %s: %w", it.key, err)
			}
			if len(r.then) > 0 {
				w.follow = append(w.follow, it)
			}
		}
		for _, e := range r.emit {
			if enqueue == nil {
				enqueue = tx.StmtContext(ctx, s.enqueue)
			}
			if err := w.write(ctx, enqueue, e, it.key); err != nil {
				return false, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return enqueue != nil, nil
}

// second runs the second transaction of the items in w.follow: choreo's
// "record the provider's answer", a state update and outbox rows.
func (w *worker) second(ctx context.Context) (err error) {
	s := w.svc
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	bump := tx.StmtContext(ctx, s.bump)
	enqueue := tx.StmtContext(ctx, s.enqueue)
	for _, it := range w.follow {
		if _, err := bump.ExecContext(ctx, it.key); err != nil {
			return fmt.Errorf("update %s: %w", it.key, err)
		}
		for _, e := range it.route.then {
			if err := w.write(ctx, enqueue, e, it.key); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (w *worker) write(ctx context.Context, enqueue *sql.Stmt, e event, key string) error {
	id := e.eventID(w.svc.run.token, key)
	if _, err := enqueue.ExecContext(ctx, id, e.subject+key, payload(sagaPayloadBytes, id, key)); err != nil {
		return fmt.Errorf("outbox %s: %w", id, err)
	}
	return nil
}

// retry runs fn until it succeeds, at most three times, pausing a little
// longer after each failure. It gives up at once when ctx is done.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil || attempt == 3 || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
}

// outRow is an outbox row on its way to the stream.
type outRow struct {
	id      int64
	eventID string
	subject string
	payload []byte
}

// relay publishes the outbox whenever a worker wakes it, until ctx is
// done. Each round loads up to relayBatch rows in id order, publishes them
// asynchronously with their event id as Nats-Msg-Id, waits for every ack
// and deletes the rows; rounds repeat while they come back full, and rows
// committed later come with a wake-up of their own. A failure fails the run.
func (s *service) relay(ctx context.Context) {
	var (
		rows  = make([]outRow, 0, relayBatch)
		acks  = make([]jetstream.PubAckFuture, 0, relayBatch)
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for {
			var err error
			rows, err = s.publishRound(ctx, rows[:0], acks[:0], timer)
			if err != nil {
				if ctx.Err() == nil {
					s.run.fail(fmt.Errorf("ceiling: service %s: relay: %w", s.name, err))
				}
				return
			}
			if len(rows) < relayBatch {
				break
			}
		}
	}
}

func (s *service) publishRound(ctx context.Context, rows []outRow, acks []jetstream.PubAckFuture, timer *time.Timer) ([]outRow, error) {
	rows, err := s.loadRows(ctx, rows)
	if err != nil || len(rows) == 0 {
		return rows, err
	}
	for _, r := range rows {
		msg := &nats.Msg{
			Subject: r.subject,
			Data:    r.payload,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{r.eventID}},
		}
		f, err := s.run.js.PublishMsgAsync(msg)
		if err != nil {
			return rows, fmt.Errorf("publish %s: %w", r.eventID, err)
		}
		acks = append(acks, f)
	}
	for i, f := range acks {
		if err := awaitAck(ctx, f, timer); err != nil {
			return rows, fmt.Errorf("publish %s: %w", rows[i].eventID, err)
		}
	}
	return rows, s.deleteRows(ctx, rows)
}

// loadRows reads the oldest outbox rows. It closes the result set before it
// returns: SQLite has one connection, which the deletes need next.
func (s *service) loadRows(ctx context.Context, rows []outRow) ([]outRow, error) {
	rs, err := s.load.QueryContext(ctx, relayBatch)
	if err != nil {
		return rows, fmt.Errorf("load outbox: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var r outRow
		if err := rs.Scan(&r.id, &r.eventID, &r.subject, &r.payload); err != nil {
			return rows, fmt.Errorf("load outbox: %w", err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return rows, fmt.Errorf("load outbox: %w", err)
	}
	return rows, nil
}

// deleteRows deletes published rows, one id range per run of consecutive
// ids. A gap is a row that was not loaded — on PostgreSQL, a transaction
// that took its id earlier and committed later — and must survive, so a
// range never spans one. On SQLite, whose writers are serialised, ids are
// committed in order and the rows are a single range.
func (s *service) deleteRows(ctx context.Context, rows []outRow) error {
	type span struct{ first, last int64 }
	spans := make([]span, 0, 1)
	for _, r := range rows {
		if n := len(spans); n > 0 && spans[n-1].last+1 == r.id {
			spans[n-1].last = r.id
			continue
		}
		spans = append(spans, span{r.id, r.id})
	}
	if len(spans) == 1 {
		if _, err := s.deleteRange.ExecContext(ctx, spans[0].first, spans[0].last); err != nil {
			return fmt.Errorf("delete published rows: %w", err)
		}
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete published rows: begin: %w", err)
	}
	del := tx.StmtContext(ctx, s.deleteRange)
	for _, sp := range spans {
		if _, err := del.ExecContext(ctx, sp.first, sp.last); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("delete published rows: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete published rows: commit: %w", err)
	}
	return nil
}
