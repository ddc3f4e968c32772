// Package sqltest gives each test a fresh, empty database on every engine
// choreo supports: a real SQLite file in a temporary directory, and a
// PostgreSQL schema of its own on the server named by the environment.
//
// PostgreSQL tests read CHOREO_TEST_POSTGRES_URL (for example
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable). When it is unset
// or unreachable they skip with a message saying so, unless
// CHOREO_TEST_REQUIRE_POSTGRES=1 (set by CI), which turns the skip into a
// failure: a silently skipped engine is an untested engine.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/sqldb"
)

// Environment variables read by this package.
const (
	EnvPostgresURL     = "CHOREO_TEST_POSTGRES_URL"
	EnvRequirePostgres = "CHOREO_TEST_REQUIRE_POSTGRES"
)

// Backend is one engine under test.
type Backend struct {
	Name string
	// URL returns the URL of a fresh, empty database (a new SQLite file, a
	// new PostgreSQL schema) dropped when the test ends.
	URL func(t testing.TB) string
}

// Open opens a fresh, empty database on b and closes it when the test ends.
func (b Backend) Open(t testing.TB) *sqldb.DB {
	t.Helper()
	return MustOpen(t, b.URL(t))
}

// Backends returns SQLite and PostgreSQL. The PostgreSQL backend skips (or
// fails, in CI) inside the subtest that uses it when no server is set.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", URL: SQLiteURL},
		{Name: "postgres", URL: PostgresURL},
	}
}

// SQLiteURL returns the path of a new SQLite file in a temporary directory.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "test.db")
}

// PostgresURL creates a schema of its own on the server named by
// CHOREO_TEST_POSTGRES_URL and returns a URL whose search_path selects it.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := RequirePostgres(t)
	schema := "t_" + randomHex(6)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("sqltest: open postgres: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("sqltest: create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("sqltest: drop schema %s: %v", schema, err)
		}
	})
	return WithSearchPath(t, base, schema)
}

// WithSearchPath returns base with its search_path set to schema.
func WithSearchPath(t testing.TB, base, schema string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("sqltest: parse %s: %v", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// RequirePostgres returns the server URL from the environment after
// checking it answers, or skips the test (fails it when PostgreSQL is
// required).
func RequirePostgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgresURL)
	miss := func(why string) {
		msg := "postgres: " + why + "; set " + EnvPostgresURL +
			" (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests"
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatal(msg + " (" + EnvRequirePostgres + "=1 forbids skipping)")
		}
		t.Skip(msg)
	}
	if base == "" {
		miss(EnvPostgresURL + " is not set")
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		miss("cannot open " + sqldb.Mask(base) + ": " + err.Error())
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		miss("cannot reach " + sqldb.Mask(base) + ": " + err.Error())
	}
	return base
}

// MustOpen opens url with sqldb.Open and closes it when the test ends.
func MustOpen(t testing.TB, url string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("sqltest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
