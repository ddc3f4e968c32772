package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Migrate applies the migrations of one component (a service, the outbox,
// the inbox) that the database has not seen yet. fsys holds one directory per
// engine ("sqlite", "postgres") of files named so that they sort in the order
// they must run ("0001_init.sql", …). Each file runs in its own transaction
// together with the row recording it, so a failed migration leaves nothing
// half-applied. On PostgreSQL an advisory lock keeps replicas starting at
// once from racing.
func Migrate(ctx context.Context, db *DB, component string, fsys fs.FS) error {
	dir := string(db.Dialect.Engine)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrate %s: read %s migrations: %w", component, dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)

	// CREATE TABLE IF NOT EXISTS is not safe against itself on PostgreSQL:
	// two replicas creating the table at once both pass the check and one
	// fails on a catalog unique index. Take the lock first.
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if err := lockMigrations(ctx, tx, db.Dialect); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL,
		version   TEXT NOT NULL,
		PRIMARY KEY (component, version))`)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate %s: create schema_migrations: %w", component, err)
	}
	for _, name := range names {
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return fmt.Errorf("migrate %s: read %s: %w", component, name, err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			if err := lockMigrations(ctx, tx, db.Dialect); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, db.Dialect.Rebind(
				`SELECT COUNT(*) FROM schema_migrations WHERE component = ? AND version = ?`), component, name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, db.Dialect.Rebind(
				`INSERT INTO schema_migrations (component, version) VALUES (?, ?)`), component, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: apply %s: %w", component, name, err)
		}
	}
	return nil
}

// lockMigrations serialises migrations across processes on PostgreSQL until
// tx ends. SQLite needs nothing: its transactions begin IMMEDIATE.
func lockMigrations(ctx context.Context, tx *sql.Tx, d Dialect) error {
	if d.Engine != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('choreo.schema_migrations'))`)
	return err
}
