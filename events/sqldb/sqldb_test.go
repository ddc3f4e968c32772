package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

func TestRebind(t *testing.T) {
	pg := sqldb.Dialect{Engine: sqldb.Postgres}
	lite := sqldb.Dialect{Engine: sqldb.SQLite}
	tests := []struct{ in, wantPG string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = ?", "SELECT * FROM t WHERE a = $1"},
		{"INSERT INTO t (a, b, c) VALUES (?, ?, ?)", "INSERT INTO t (a, b, c) VALUES ($1, $2, $3)"},
		{"?,?,?,?,?,?,?,?,?,?,?", "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := pg.Rebind(tt.in); got != tt.wantPG {
			t.Errorf("postgres Rebind(%q): got %q, want %q", tt.in, got, tt.wantPG)
		}
		if got := lite.Rebind(tt.in); got != tt.in {
			t.Errorf("sqlite Rebind(%q): got %q, want it unchanged", tt.in, got)
		}
	}
}

func TestForUpdate(t *testing.T) {
	if got := (sqldb.Dialect{Engine: sqldb.Postgres}).ForUpdate(); got != " FOR UPDATE" {
		t.Errorf("postgres ForUpdate: got %q, want %q", got, " FOR UPDATE")
	}
	if got := (sqldb.Dialect{Engine: sqldb.SQLite}).ForUpdate(); got != "" {
		t.Errorf("sqlite ForUpdate: got %q, want \"\" (BEGIN IMMEDIATE serialises writers)", got)
	}
}

func TestMask(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/app?sslmode=disable", "postgres://app:xxxxx@db:5432/app?sslmode=disable"},
		{"postgres://app@db/app", "postgres://app@db/app"},
		{"./data/orders.db", "./data/orders.db"},
	}
	for _, tt := range tests {
		if got := sqldb.Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tt := range []struct{ name, url, file string }{
		{"PlainPathCreatesDirectory", filepath.Join(dir, "a", "b", "orders.db"), filepath.Join(dir, "a", "b", "orders.db")},
		{"SQLitePrefix", "sqlite:" + filepath.Join(dir, "p.db"), filepath.Join(dir, "p.db")},
		{"FilePrefixWithQuery", "file:" + filepath.Join(dir, "q.db") + "?cache=shared", filepath.Join(dir, "q.db")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sqldb.Open(ctx, tt.url)
			if err != nil {
				t.Fatalf("Open(%q): got %v, want nil", tt.url, err)
			}
			defer db.Close()
			if db.Dialect.Engine != sqldb.SQLite {
				t.Errorf("engine: got %q, want %q", db.Dialect.Engine, sqldb.SQLite)
			}
			if _, err := db.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
				t.Fatalf("create table: %v", err)
			}
			if _, err := os.Stat(tt.file); err != nil {
				t.Errorf("database file: got %v, want %s to exist", err, tt.file)
			}
			var mode string
			if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
				t.Fatal(err)
			}
			if mode != "wal" {
				t.Errorf("journal mode: got %q, want %q", mode, "wal")
			}
		})
	}
	t.Run("Empty", func(t *testing.T) {
		for _, u := range []string{"", "sqlite:", "file:?x=1"} {
			if db, err := sqldb.Open(ctx, u); err == nil {
				db.Close()
				t.Errorf("Open(%q): got nil error, want one", u)
			}
		}
	})
}

func TestOpenPostgres(t *testing.T) {
	u := sqltest.PostgresURL(t)
	db := sqltest.MustOpen(t, u)
	if db.Dialect.Engine != sqldb.Postgres {
		t.Errorf("engine: got %q, want %q", db.Dialect.Engine, sqldb.Postgres)
	}
	if _, err := db.ExecContext(context.Background(), `SELECT 1`); err != nil {
		t.Errorf("SELECT 1: got %v, want nil", err)
	}
}

func TestOpenPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // do not wait on a connect timeout
	db, err := sqldb.Open(ctx, "postgres://nobody:pw@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err == nil {
		db.Close()
		t.Fatal("Open of an unreachable server: got nil error, want one")
	}
	if strings.Contains(err.Error(), "pw") {
		t.Errorf("error: got %q, want the password masked", err)
	}
}

// migrations returns a migration set for both engines: each file appends
// its own name to a log table, so the log shows which files ran and in
// which order.
func migrations(names ...string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for _, engine := range []string{"sqlite", "postgres"} {
		fsys[engine+"/0001_log.sql"] = &fstest.MapFile{Data: []byte(
			`CREATE TABLE migration_log (name TEXT NOT NULL, pos INTEGER NOT NULL);
			 INSERT INTO migration_log (name, pos) VALUES ('0001_log.sql', 1);`)}
		for _, n := range names {
			fsys[engine+"/"+n] = &fstest.MapFile{Data: []byte(
				`INSERT INTO migration_log (name, pos) SELECT '` + n + `', COUNT(*) + 1 FROM migration_log;`)}
		}
		fsys[engine+"/README.md"] = &fstest.MapFile{Data: []byte("not a migration")}
	}
	return fsys
}

func migrationLog(t testing.TB, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT name FROM migration_log ORDER BY pos`)
	if err != nil {
		t.Fatalf("read migration log: %v", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func TestMigrate(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("AppliesInOrderOnce", func(t *testing.T) {
				ctx := context.Background()
				db := b.Open(t)
				fsys := migrations("0010_c.sql", "0002_b.sql", "0003_a.sql")
				if err := sqldb.Migrate(ctx, db, "test", fsys); err != nil {
					t.Fatalf("Migrate: got %v, want nil", err)
				}
				want := []string{"0001_log.sql", "0002_b.sql", "0003_a.sql", "0010_c.sql"}
				if got := migrationLog(t, db); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("applied: got %v, want %v", got, want)
				}
				// A second run (a restart) applies nothing: 0001 would fail on
				// CREATE TABLE, the others would log themselves again.
				if err := sqldb.Migrate(ctx, db, "test", fsys); err != nil {
					t.Fatalf("second Migrate: got %v, want nil", err)
				}
				if got := migrationLog(t, db); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("after a second Migrate: got %v, want %v", got, want)
				}
				// A release that adds a file applies only that one.
				fsys = migrations("0010_c.sql", "0002_b.sql", "0003_a.sql", "0011_d.sql")
				if err := sqldb.Migrate(ctx, db, "test", fsys); err != nil {
					t.Fatalf("Migrate with a new file: got %v, want nil", err)
				}
				want = append(want, "0011_d.sql")
				if got := migrationLog(t, db); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("after adding a file: got %v, want %v", got, want)
				}
			})
			t.Run("ComponentsAreTrackedSeparately", func(t *testing.T) {
				ctx := context.Background()
				db := b.Open(t)
				if err := sqldb.Migrate(ctx, db, "a", migrations()); err != nil {
					t.Fatalf("Migrate a: got %v, want nil", err)
				}
				other := fstest.MapFS{
					"sqlite/0001_log.sql":   {Data: []byte(`INSERT INTO migration_log (name, pos) VALUES ('b', 2)`)},
					"postgres/0001_log.sql": {Data: []byte(`INSERT INTO migration_log (name, pos) VALUES ('b', 2)`)},
				}
				if err := sqldb.Migrate(ctx, db, "b", other); err != nil {
					t.Fatalf("Migrate b: got %v, want nil", err)
				}
				if got, want := strings.Join(migrationLog(t, db), ","), "0001_log.sql,b"; got != want {
					t.Errorf("applied: got %v, want %v (same file name, two components)", got, want)
				}
			})
			t.Run("FailedFileLeavesNothingBehind", func(t *testing.T) {
				ctx := context.Background()
				db := b.Open(t)
				fsys := migrations()
				for _, engine := range []string{"sqlite", "postgres"} {
					fsys[engine+"/0002_bad.sql"] = &fstest.MapFile{Data: []byte(
						`CREATE TABLE half (x INTEGER);
						 INSERT INTO no_such_table VALUES (1);`)}
				}
				err := sqldb.Migrate(ctx, db, "test", fsys)
				if err == nil {
					t.Fatal("Migrate with a broken file: got nil error, want one")
				}
				if !strings.Contains(err.Error(), "0002_bad.sql") {
					t.Errorf("error: got %q, want it to name 0002_bad.sql", err)
				}
				var n int
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE component = 'test'`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Errorf("recorded migrations: got %d, want 1 (only 0001)", n)
				}
				if _, err := db.ExecContext(ctx, `SELECT COUNT(*) FROM half`); err == nil {
					t.Error("table created by the failed file: got it present, want it rolled back")
				}
				// Fixing the file lets the next start apply it.
				for _, engine := range []string{"sqlite", "postgres"} {
					fsys[engine+"/0002_bad.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE half (x INTEGER);`)}
				}
				if err := sqldb.Migrate(ctx, db, "test", fsys); err != nil {
					t.Fatalf("Migrate after the fix: got %v, want nil", err)
				}
			})
			t.Run("ReplicasStartingAtOnceApplyOnce", func(t *testing.T) {
				ctx := context.Background()
				u := b.URL(t)
				fsys := migrations("0002_b.sql", "0003_c.sql")
				const replicas = 4
				dbs := make([]*sqldb.DB, replicas)
				for i := range dbs {
					dbs[i] = sqltest.MustOpen(t, u)
				}
				errs := make(chan error, replicas)
				for _, db := range dbs {
					go func() { errs <- sqldb.Migrate(ctx, db, "test", fsys) }()
				}
				for range replicas {
					if err := <-errs; err != nil {
						t.Errorf("concurrent Migrate: got %v, want nil", err)
					}
				}
				want := "0001_log.sql,0002_b.sql,0003_c.sql"
				if got := strings.Join(migrationLog(t, dbs[0]), ","); got != want {
					t.Errorf("applied: got %v, want %v (each file once)", got, want)
				}
			})
			t.Run("MissingEngineDirectory", func(t *testing.T) {
				db := b.Open(t)
				err := sqldb.Migrate(context.Background(), db, "test", fstest.MapFS{"other/0001.sql": {Data: []byte("SELECT 1")}})
				if err == nil {
					t.Error("Migrate without a directory for the engine: got nil error, want one")
				}
			})
		})
	}
}

func TestInTx(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t)
			if _, err := db.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
				t.Fatal(err)
			}
			insert := func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO t (x) VALUES (?)`), 1)
				return err
			}
			if err := db.InTx(ctx, insert); err != nil {
				t.Fatalf("InTx: got %v, want nil", err)
			}
			errBoom := errors.New("boom")
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				if err := insert(tx); err != nil {
					return err
				}
				return errBoom
			})
			if !errors.Is(err, errBoom) {
				t.Errorf("InTx with a failing fn: got %v, want %v", err, errBoom)
			}
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("rows: got %d, want 1 (the failed transaction rolled back)", n)
			}
		})
	}
}

// Statements run through In are prepared once and reused, also when they
// are first met inside a transaction — which, on SQLite's single
// connection, must not wait for the connection the transaction holds.
func TestStmts(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t)
			if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			const insert = `INSERT INTO kv (k, v) VALUES (?, ?)`
			const get = `SELECT v FROM kv WHERE k = ?`
			for i := range 3 {
				err := db.InTx(ctx, func(tx *sql.Tx) error {
					if _, err := db.In(tx).Exec(ctx, insert, "k"+string(rune('a'+i)), i); err != nil {
						return err
					}
					var v int
					return db.In(tx).QueryRow(ctx, get, "k"+string(rune('a'+i))).Scan(&v)
				})
				if err != nil {
					t.Fatalf("transaction %d: %v", i, err)
				}
			}
			// Prepared in the background once the connection was free.
			deadline := time.Now().Add(10 * time.Second)
			for db.Prepared() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := db.Prepared(); got != 2 {
				t.Fatalf("prepared statements: got %d, want 2", got)
			}
			var v int
			if err := db.In(nil).QueryRow(ctx, get, "kc").Scan(&v); err != nil || v != 2 {
				t.Errorf("QueryRow outside a transaction: got (%d, %v), want (2, nil)", v, err)
			}
			rows, err := db.In(nil).Query(ctx, `SELECT k FROM kv ORDER BY k`)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if n != 3 {
				t.Errorf("Query: got %d rows, want 3", n)
			}
			if got := db.Prepared(); got != 3 {
				t.Errorf("prepared statements: got %d, want 3 (outside a transaction they are prepared at once)", got)
			}
			// SQL the database refuses reports its error where it is used.
			if err := db.In(nil).QueryRow(ctx, `SELECT nope FROM kv`).Scan(&v); err == nil {
				t.Error("QueryRow of a bad statement: got nil error, want one")
			}
			if err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := db.In(tx).Exec(ctx, `INSERT INTO nope VALUES (?)`, 1)
				return err
			}); err == nil {
				t.Error("Exec of a bad statement in a transaction: got nil error, want one")
			}
		})
	}
}

// The durable profile asks each engine to sync every commit.
func TestOpenDurable(t *testing.T) {
	ctx := context.Background()
	lite := sqltest.SQLiteURL(t)
	for _, c := range []struct {
		durable bool
		want    int
	}{{false, 1}, {true, 2}} { // NORMAL, FULL
		db, err := sqldb.Open(ctx, lite, sqldb.WithDurable(c.durable))
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&got); err != nil || got != c.want {
			t.Errorf("sqlite durable=%v: synchronous = %d (%v), want %d", c.durable, got, err, c.want)
		}
		db.Close()
	}
	url := sqltest.PostgresURL(t)
	db, err := sqldb.Open(ctx, url, sqldb.WithDurable(true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got string
	if err := db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&got); err != nil || got != "on" {
		t.Errorf("postgres durable: synchronous_commit = %q (%v), want on", got, err)
	}
}
