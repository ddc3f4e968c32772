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
}

// Open opens a store from a URL: a "postgres://" or "postgresql://" URL
// opens PostgreSQL through pgx; anything else is a SQLite file path
// (optionally prefixed "sqlite:" or "file:"), opened in WAL mode with a busy
// timeout, its directory created if needed.
func Open(ctx context.Context, rawURL string) (*DB, error) {
	if rawURL == "" {
		return nil, errors.New("sqldb: empty database url")
	}
	var (
		db  *sql.DB
		d   Dialect
		err error
	)
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		d = Dialect{Engine: Postgres}
		db, err = sql.Open("pgx", rawURL)
		if err != nil {
			return nil, fmt.Errorf("sqldb: open postgres %s: %w", Mask(rawURL), err)
		}
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
	} else {
		d = Dialect{Engine: SQLite}
		db, err = openSQLite(rawURL)
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

func openSQLite(rawURL string) (*sql.DB, error) {
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
	// the last commits); BEGIN IMMEDIATE takes the write lock up front, so
	// two transactions never deadlock upgrading a read lock.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
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
