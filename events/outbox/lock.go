package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/choreo-dev/choreo/events/sqldb"
)

// One relay per store publishes at a time. Every replica of a service runs
// a relay on the same outbox table; were they all to publish, each row
// would go to the broker once per replica, correctness resting on the
// stream's duplicate window and the broker carrying N times the load. So
// the relays elect one: the relay that holds the store's relay lock is
// active and publishes (its wake-ups and its sweep find every row, another
// process's too); the others are standbys that publish nothing and try to
// take the lock at every sweep interval.
//
// The lock is one the store's engine releases by itself when its holder
// dies, so that a relay killed with rows pending (kill -9, a lost node)
// hands over without anyone cleaning up after it:
//
//   - PostgreSQL: a session-level advisory lock (pg_try_advisory_lock)
//     taken on a connection the relay keeps for it alone. PostgreSQL
//     releases it when that session ends: at once when the process dies
//     and the kernel closes its socket, or once the server notices a
//     silent peer is gone (TCP keepalive) after a network partition.
//     The key is the outbox table's oid (advisory locks are per database,
//     and the oid names one table there, whatever schema it lives in),
//     under a class of its own so it cannot meet another lock's key.
//   - SQLite (one machine by nature): an exclusive flock on
//     "<database file>.relay.lock", which the kernel releases when the
//     process dies. An in-memory database has one process: no lock.
//
// The active relay checks it still holds the lock before each batch it
// publishes (on PostgreSQL, a round trip on the lock's connection: the
// session alive means the lock is still held; one per drain — each wake-up
// after a commit, each sweep — and one per further batch of a backlog). If the lock's connection broke, it stops publishing and becomes a
// standby. The window in which two relays may publish is therefore at most
// the batches the old holder had in flight (up to maxInFlight rows) when
// its session was ended and the lock released, a standby having taken it at
// once; the duplicate window drops what is sent twice then, so the window
// costs load, never correctness. Behind a connection pooler the session must be the relay's
// own: PgBouncer in transaction mode would share it, and break the lock.
//
// The alternatives considered: rows claimed with SELECT … FOR UPDATE SKIP
// LOCKED would let every relay publish a disjoint share, but hold a
// transaction open across the broker's round trips, split the ordering of
// one service's events between processes, and have no SQLite equivalent;
// a lease row (holder and expiry, renewed by the holder) works on both
// engines but hands over only when the lease expires, needs clocks to
// agree, and lets a paused holder publish past its lease. The engine's
// own session or process lifetime is the fastest, clock-free signal of
// death there is.
type relayLock interface {
	// hold reports whether this relay holds the lock: it checks a lock
	// already held is still held, or tries to take it.
	hold(ctx context.Context) (bool, error)
	// release gives the lock up, if held; it may be taken again later.
	release()
}

// newRelayLock returns the relay lock of db's outbox table; on PostgreSQL
// a holder silent for longer than idle loses it (see pgLock).
func newRelayLock(db *sqldb.DB, idle time.Duration) relayLock {
	if db.Dialect.Engine == sqldb.Postgres {
		return &pgLock{db: db, idle: idle}
	}
	return &fileLock{db: db}
}

// pausedHolderTimeout is how long the active relay's lock session may stay
// silent before PostgreSQL ends it. A running relay checks the lock at
// every sweep and before every batch, but between two checks it may wait
// for a batch's acks (ackTimeout) and then back off (up to backoffMax)
// while the broker is down: the timeout outlasts that silence and ten
// sweeps more, so that only a relay that is really stopped loses the lock,
// never one waiting out a broker outage.
func pausedHolderTimeout(sweep, ackTimeout, backoffMax time.Duration) time.Duration {
	return ackTimeout + backoffMax + max(10*sweep, 3*time.Second)
}

// pgLock is the relay lock on PostgreSQL: a session-level advisory lock on
// a connection of its own.
//
// A relay that is alive but stopped — SIGSTOP, a frozen VM, a long
// stall — would keep its session, and the lock, for as long as it cannot
// publish, and its service's events would wait with it. So the lock's
// session carries idle_session_timeout (PostgreSQL 14 and later, see
// pausedHolderTimeout): longer than a running relay ever stays silent, even
// waiting out a broker outage; one paused past it has its session ended
// by the server, a standby takes the lock at its next sweep, and the
// paused relay, once it wakes, finds its session gone before its next
// batch and stands by. What it had in flight may go out twice; the
// stream's duplicate window drops the copies. An older server refuses the
// setting, and a paused holder keeps the lock until it wakes.
type pgLock struct {
	db   *sqldb.DB
	idle time.Duration
	conn *sql.Conn // nil until first needed, and after it broke
	held bool
}

// pgRelayLockKey is the two keys of the advisory lock: a class of its own,
// and the outbox table's oid.
const pgRelayLockKey = `hashtext('choreo.outbox.relay'), 'outbox'::regclass::oid::int`

func (l *pgLock) hold(ctx context.Context) (bool, error) {
	if l.held {
		if err := l.conn.PingContext(ctx); err == nil {
			return true, nil
		}
		// The session is gone, and the lock with it: another relay may
		// have it already.
		l.release()
	}
	if l.conn == nil {
		conn, err := l.db.Conn(ctx)
		if err != nil {
			return false, fmt.Errorf("outbox: relay lock: connect: %w", err)
		}
		l.conn = conn
		// Refused by PostgreSQL before 14 (no such setting): see pgLock.
		_, _ = conn.ExecContext(ctx, `SELECT set_config('idle_session_timeout', $1, false)`, strconv.FormatInt(l.idle.Milliseconds(), 10))
	}
	if err := l.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(`+pgRelayLockKey+`)`).Scan(&l.held); err != nil {
		l.release()
		return false, fmt.Errorf("outbox: relay lock: %w", err)
	}
	return l.held, nil
}

// release ends the lock's session rather than unlocking and handing the
// connection back to the pool: a session still holding the lock must never
// serve other queries, and closing it releases the lock whatever state the
// connection is in.
func (l *pgLock) release() {
	if l.conn == nil {
		return
	}
	_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = l.conn.Close()
	l.conn, l.held = nil, false
}

// fileLock is the relay lock on SQLite: an exclusive flock on a file next
// to the database's.
type fileLock struct {
	db     *sqldb.DB
	file   *os.File // the open lock file, nil until first needed
	memory bool     // an in-memory database: no other process can see it
	held   bool
}

func (l *fileLock) hold(ctx context.Context) (bool, error) {
	if l.held || l.memory {
		// Only closing the file, or the process dying, releases a flock.
		return true, nil
	}
	if l.file == nil {
		var seq int
		var name, path string
		if err := l.db.QueryRowContext(ctx, `SELECT seq, name, file FROM pragma_database_list WHERE name = 'main'`).Scan(&seq, &name, &path); err != nil {
			return false, fmt.Errorf("outbox: relay lock: database file: %w", err)
		}
		if path == "" {
			l.memory = true
			return true, nil
		}
		f, err := os.OpenFile(path+".relay.lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return false, fmt.Errorf("outbox: relay lock: %w", err)
		}
		l.file = f
	}
	held, err := tryLockFile(l.file)
	if err != nil {
		return false, fmt.Errorf("outbox: relay lock %s: %w", l.file.Name(), err)
	}
	l.held = held
	return held, nil
}

func (l *fileLock) release() {
	if l.file != nil {
		_ = l.file.Close()
	}
	l.file, l.held = nil, false
}
