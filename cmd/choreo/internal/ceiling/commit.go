package ceiling

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/choreo-dev/choreo/events/sqldb"
)

// CommitOptions configures CommitRate. Zero values take the defaults.
type CommitOptions struct {
	// Duration is how long to commit (default 3s).
	Duration time.Duration
	// Workers is how many transactions run at once (default 1 on SQLite,
	// whose one connection serialises writers anyway, and 8 on
	// PostgreSQL).
	Workers int
}

// CommitRate measures how many small write transactions per second the
// storage commits. It opens the database open(ctx, "ceiling_commit"),
// creates a scratch table in it, and for opts.Duration runs transactions,
// opts.Workers at a time, that each insert two rows of about 200 bytes
// through a prepared statement: the writes of a consumer's inbox claim and
// outbox row, without the rest. The result counts committed transactions,
// from the first begun to the last committed.
//
// The first failing transaction, or a cancelled ctx, stops every worker and
// ends the probe with an error. The table is dropped and the database closed
// before CommitRate returns, on success and on error alike, with a fresh
// bounded context; a failure to drop it is returned too.
func CommitRate(ctx context.Context, open Opener, opts CommitOptions) (res Result, err error) {
	if opts.Duration < 0 || opts.Workers < 0 {
		return Result{}, fmt.Errorf("%w: negative commit option %+v", ErrInvalidOption, opts)
	}
	if opts.Duration == 0 {
		opts.Duration = 3 * time.Second
	}
	db, err := open(ctx, "ceiling_commit")
	if err != nil {
		return Result{}, fmt.Errorf("ceiling: open ceiling_commit: %w", err)
	}
	defer func() { err = errors.Join(err, closeDB(db, "ceiling_commit")) }()
	if opts.Workers == 0 {
		opts.Workers = 1
		if db.Dialect.Engine == sqldb.Postgres {
			opts.Workers = 8
		}
	}

	token := newToken()
	table := "ceiling_" + token + "_commit"
	ddl := `CREATE TABLE IF NOT EXISTS ` + table + ` (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL UNIQUE, v BLOB NOT NULL)`
	if db.Dialect.Engine == sqldb.Postgres {
		ddl = `CREATE TABLE IF NOT EXISTS ` + table + ` (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BYTEA NOT NULL)`
	}
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		return Result{}, fmt.Errorf("ceiling: create %s: %w", table, err)
	}
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		err = errors.Join(err, dropTables(cctx, db, table))
	}()
	insert, err := db.PrepareContext(ctx, db.Dialect.Rebind(`INSERT INTO `+table+` (k, v) VALUES (?, ?)`))
	if err != nil {
		return Result{}, fmt.Errorf("ceiling: prepare insert: %w", err)
	}
	defer insert.Close()

	// About 200 bytes per row: a 30-byte key and the value.
	value := payload(170, token, "commit")
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		commits int
	)
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for w := range opts.Workers {
		wg.Go(func() {
			n, err := commitLoop(runCtx, db, insert, token+"-"+strconv.Itoa(w)+"-", value, deadline)
			if err != nil {
				stop(err)
			}
			mu.Lock()
			commits += n
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(runCtx); err != nil {
		return Result{}, fmt.Errorf("ceiling: commit: %w", err)
	}
	return result(NameCommit, commits, elapsed), nil
}

// commitLoop commits two-row transactions until deadline and returns how
// many it committed.
func commitLoop(ctx context.Context, db *sqldb.DB, insert *sql.Stmt, keyPrefix string, value []byte, deadline time.Time) (int, error) {
	key := make([]byte, 0, len(keyPrefix)+24)
	n := 0
	for time.Now().Before(deadline) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return n, fmt.Errorf("begin: %w", err)
		}
		stmt := tx.StmtContext(ctx, insert)
		for row := range 2 {
			key = strconv.AppendInt(append(key[:0], keyPrefix...), int64(2*n+row), 10)
			if _, err := stmt.ExecContext(ctx, string(key), value); err != nil {
				_ = tx.Rollback()
				return n, fmt.Errorf("insert: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return n, fmt.Errorf("commit: %w", err)
		}
		n++
	}
	return n, nil
}

// dropTables drops the probe's tables.
func dropTables(ctx context.Context, db *sqldb.DB, tables ...string) error {
	var errs []error
	for _, t := range tables {
		if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS `+t); err != nil {
			errs = append(errs, fmt.Errorf("ceiling: drop %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

func closeDB(db *sqldb.DB, name string) error {
	if err := db.Close(); err != nil {
		return fmt.Errorf("ceiling: close %s: %w", name, err)
	}
	return nil
}
