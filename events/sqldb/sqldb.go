// Package sqldb opens choreo's stores on SQLite or PostgreSQL from one URL
// and applies their embedded migrations. The Dialect is the narrow seam
// between the two engines: only what a second engine actually forces.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Engine names a database engine.
type Engine string

const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Dialect captures the differences between engines that choreo's SQL runs
// into. Statements are written with '?' placeholders and passed through
// Rebind; everything else is plain SQL valid on both engines, or kept in
// per-engine migration files.
type Dialect struct {
	Engine Engine
}

// Rebind rewrites '?' placeholders into the engine's style ($1, $2, … on
// PostgreSQL). Statements must not contain literal question marks.
func (d Dialect) Rebind(query string) string {
	if d.Engine != Postgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// ForUpdate is the row-locking suffix for a SELECT that precedes an update
// in the same transaction. SQLite has no row locks: its transactions start
// with BEGIN IMMEDIATE (see Open), which already serialises writers.
func (d Dialect) ForUpdate() string {
	if d.Engine == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// DB is an open store: the database handle and the dialect to speak to it.
type DB struct {
	*sql.DB
	Dialect Dialect
	// URL is the location it was opened from, with any password masked;
	// safe to log.
	URL string
	// stmts caches prepared statements by their '?' query text; see In.
	stmts     sync.Map
	preparers sync.WaitGroup
	// On SQLite, one transaction at a time holds the only connection:
	// txStmts keeps the statements bound to it, so that a batch running
	// the same statement for each of its messages binds it once.
	txMu    sync.Mutex
	txOwner *sql.Tx
	txStmts map[string]*sql.Stmt
}

// Option configures Open.
type Option func(*options)

type options struct {
	durable bool
}

// WithDurable selects the durability profile. The default (false) survives
// any crash of the process: SQLite in WAL mode with synchronous=NORMAL
// (an OS crash or power loss may lose the last commits, never corrupt the
// file), PostgreSQL with the server's own settings. Durable (true) also
// survives an OS crash or power loss on one machine: SQLite
// synchronous=FULL (an fsync on every commit) and PostgreSQL
// synchronous_commit=on for the session, whatever the server's default.
func WithDurable(durable bool) Option {
	return func(o *options) { o.durable = durable }
}

// Open opens a store from a URL: a "postgres://" or "postgresql://" URL
// opens PostgreSQL through pgx; anything else is a SQLite file path
// (optionally prefixed "sqlite:" or "file:"), opened in WAL mode with a busy
// timeout, its directory created if needed.
func Open(ctx context.Context, rawURL string, opts ...Option) (*DB, error) {
	if rawURL == "" {
		return nil, errors.New("sqldb: empty database url")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var (
		db  *sql.DB
		d   Dialect
		err error
	)
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		d = Dialect{Engine: Postgres}
		connURL := rawURL
		if o.durable {
			if connURL, err = withQueryParam(rawURL, "synchronous_commit", "on"); err != nil {
				return nil, fmt.Errorf("sqldb: postgres url %s: %w", Mask(rawURL), err)
			}
		}
		db, err = sql.Open("pgx", connURL)
		if err != nil {
			return nil, fmt.Errorf("sqldb: open postgres %s: %w", Mask(rawURL), err)
		}
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
	} else {
		d = Dialect{Engine: SQLite}
		db, err = openSQLite(rawURL, o.durable)
		if err != nil {
			return nil, err
		}
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqldb: connect %s: %w", Mask(rawURL), err)
	}
	return &DB{DB: db, Dialect: d, URL: Mask(rawURL)}, nil
}

func openSQLite(rawURL string, durable bool) (*sql.DB, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return nil, errors.New("sqldb: empty sqlite path")
	}
	if err := mkdirFor(path); err != nil {
		return nil, fmt.Errorf("sqldb: sqlite %s: %w", path, err)
	}
	// WAL lets readers proceed while a writer commits; synchronous=NORMAL is
	// durable across process crashes in WAL mode (only an OS crash can lose
	// the last commits), FULL syncs the WAL on every commit so that an OS
	// crash cannot either; BEGIN IMMEDIATE takes the write lock up front, so
	// two transactions never deadlock upgrading a read lock.
	sync := "NORMAL"
	if durable {
		sync = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqldb: open sqlite %s: %w", path, err)
	}
	// SQLite has one writer at a time. One connection makes that explicit:
	// writers queue in Go instead of spinning on SQLITE_BUSY, and a
	// transaction can never wait on a lock held by another connection of
	// the same process.
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// withQueryParam returns rawURL with the query parameter key set to value.
func withQueryParam(rawURL, key, value string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Mask hides the password of a URL so it can be logged.
func Mask(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// InTx runs fn inside a transaction, committing when it returns nil and
// rolling back otherwise.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// CountGroups runs a query of the form "SELECT key, COUNT(*) … GROUP BY
// key" and returns the counts by key: the shape of every status report.
func CountGroups[K ~string](ctx context.Context, db *DB, query string, args ...any) (map[K]int, error) {
	rows, err := db.QueryContext(ctx, db.Dialect.Rebind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[K]int{}
	for rows.Next() {
		var (
			key string
			n   int
		)
		if err := rows.Scan(&key, &n); err != nil {
			return nil, err
		}
		out[K(key)] = n
	}
	return out, rows.Err()
}

// In returns a handle that runs statements inside tx, or on the database
// itself when tx is nil, each prepared once and reused: parsing and
// planning the same SQL on every call was the largest single cost of a
// unit of work on SQLite. Statements use '?' placeholders (see Rebind).
func (db *DB) In(tx *sql.Tx) Stmts { return Stmts{db: db, tx: tx} }

// stmtCtx is the context a statement runs with. Inside a SQLite
// transaction it keeps ctx's values and drops its cancellation: the driver
// starts a goroutine per statement to interrupt it when a cancellable
// context ends, which cost more than the statements themselves, and a
// statement on a connection the transaction already holds never waits for
// anything but the disk. The transaction itself still ends with its
// context.
func (s Stmts) stmtCtx(ctx context.Context) context.Context {
	if s.tx != nil && s.db.Dialect.Engine == SQLite {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// Stmts runs cached prepared statements; see DB.In.
type Stmts struct {
	db *DB
	tx *sql.Tx
}

// preparing marks a statement being prepared in the background.
type preparing struct{}

// stmt returns the statement for query prepared on the database and bound
// to the transaction if there is one, or nil when it is not prepared yet.
//
// A statement is prepared on the database, outside any transaction:
// inside one, on SQLite's single connection, preparing would wait for the
// very connection the transaction holds. So a statement first met inside a
// transaction runs unprepared that time, and is prepared in the
// background as soon as a connection is free. database/sql prepares it
// again only on a connection that has not seen it yet.
func (s Stmts) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	p, ok := s.db.stmts.Load(query)
	switch {
	case !ok && s.tx == nil:
		prepared, err := s.db.PrepareContext(ctx, s.db.Dialect.Rebind(query))
		if err != nil {
			return nil, err
		}
		if p, ok = s.db.stmts.LoadOrStore(query, prepared); ok {
			if _, pending := p.(preparing); !pending {
				prepared.Close() // another goroutine prepared it first
				break
			}
			s.db.stmts.Store(query, prepared)
		}
		p = prepared
	case !ok:
		if _, loaded := s.db.stmts.LoadOrStore(query, preparing{}); !loaded {
			s.db.prepareLater(query)
		}
		return nil, nil
	}
	st, ok := p.(*sql.Stmt)
	if !ok {
		return nil, nil // still being prepared
	}
	if s.tx != nil {
		return s.db.bound(ctx, s.tx, query, st), nil
	}
	return st, nil
}

// bound returns st bound to tx; it is closed with the transaction, and the
// statement it came from stays.
func (db *DB) bound(ctx context.Context, tx *sql.Tx, query string, st *sql.Stmt) *sql.Stmt {
	if db.Dialect.Engine != SQLite {
		return tx.StmtContext(ctx, st)
	}
	db.txMu.Lock()
	defer db.txMu.Unlock()
	if db.txOwner != tx {
		// A new transaction: the last one's statements closed with it.
		db.txOwner = tx
		if db.txStmts == nil {
			db.txStmts = map[string]*sql.Stmt{}
		}
		clear(db.txStmts)
	}
	b, ok := db.txStmts[query]
	if !ok {
		b = tx.StmtContext(ctx, st)
		db.txStmts[query] = b
	}
	return b
}

// prepareLater prepares query in the background; Close waits for it.
func (db *DB) prepareLater(query string) {
	db.preparers.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		prepared, err := db.PrepareContext(ctx, db.Dialect.Rebind(query))
		if err != nil {
			// Closed, or a statement the database refuses: leave it
			// unprepared, as it ran before (its error reaches the caller
			// there).
			db.stmts.Delete(query)
			return
		}
		db.stmts.Store(query, prepared)
	})
}

// Exec runs a statement that returns no rows.
func (s Stmts) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = s.stmtCtx(ctx)
	st, err := s.stmt(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st != nil:
		return st.ExecContext(ctx, args...)
	case s.tx != nil:
		return s.tx.ExecContext(ctx, s.db.Dialect.Rebind(query), args...)
	}
	return s.db.ExecContext(ctx, s.db.Dialect.Rebind(query), args...)
}

// Query runs a statement that returns rows.
func (s Stmts) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = s.stmtCtx(ctx)
	st, err := s.stmt(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st != nil:
		return st.QueryContext(ctx, args...)
	case s.tx != nil:
		return s.tx.QueryContext(ctx, s.db.Dialect.Rebind(query), args...)
	}
	return s.db.QueryContext(ctx, s.db.Dialect.Rebind(query), args...)
}

// QueryRow runs a statement that returns at most one row. A statement that
// cannot be prepared is run unprepared, so that its error reaches Scan.
func (s Stmts) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = s.stmtCtx(ctx)
	if st, err := s.stmt(ctx, query); err == nil && st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	if s.tx != nil {
		return s.tx.QueryRowContext(ctx, s.db.Dialect.Rebind(query), args...)
	}
	return s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(query), args...)
}

// Prepared returns how many statements are prepared and cached.
func (db *DB) Prepared() int {
	n := 0
	db.stmts.Range(func(_, v any) bool {
		if _, ok := v.(*sql.Stmt); ok {
			n++
		}
		return true
	})
	return n
}

// Close closes the database and its cached statements, once the
// statements being prepared in the background have given up.
func (db *DB) Close() error {
	err := db.DB.Close()
	db.preparers.Wait()
	db.stmts.Range(func(k, v any) bool {
		if st, ok := v.(*sql.Stmt); ok {
			st.Close()
		}
		db.stmts.Delete(k)
		return true
	})
	return err
}
