package sqltest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

func TestBackends(t *testing.T) {
	var names []string
	for _, b := range sqltest.Backends() {
		names = append(names, b.Name)
	}
	if got, want := strings.Join(names, ","), "sqlite,postgres"; got != want {
		t.Errorf("backends: got %s, want %s", got, want)
	}
}

func TestSQLiteURLIsFreshFile(t *testing.T) {
	a, b := sqltest.SQLiteURL(t), sqltest.SQLiteURL(t)
	if a == b {
		t.Errorf("two SQLite URLs: got %q twice, want distinct files", a)
	}
	if _, err := os.Stat(filepath.Dir(a)); err != nil {
		t.Errorf("directory of %s: got %v, want it to exist", a, err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("file %s: got %v, want it not to exist yet", a, err)
	}
}

func TestPostgresSchemasAreIsolated(t *testing.T) {
	ctx := context.Background()
	b := sqltest.Backends()[1]
	one, two := b.Open(t), b.Open(t)
	if one.Dialect.Engine != sqldb.Postgres {
		t.Fatalf("engine: got %s, want postgres", one.Dialect.Engine)
	}
	if _, err := one.ExecContext(ctx, `CREATE TABLE only_in_one (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := two.ExecContext(ctx, `SELECT COUNT(*) FROM only_in_one`); err == nil {
		t.Error("table of one test database: got visible in another, want isolated")
	}
	if _, err := two.ExecContext(ctx, `CREATE TABLE only_in_one (x INTEGER)`); err != nil {
		t.Errorf("same table name in another test database: got %v, want nil", err)
	}
}

func TestPostgresSkipsWhenUnset(t *testing.T) {
	t.Setenv(sqltest.EnvPostgresURL, "")
	t.Setenv(sqltest.EnvRequirePostgres, "")
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		sqltest.RequirePostgres(t)
	})
	if !skipped {
		t.Errorf("without %s: got the test run, want it skipped", sqltest.EnvPostgresURL)
	}
}

func TestWithSearchPath(t *testing.T) {
	got := sqltest.WithSearchPath(t, "postgres://u@h:5432/db?sslmode=disable", "t_abc")
	if !strings.Contains(got, "search_path=t_abc") || !strings.Contains(got, "sslmode=disable") {
		t.Errorf("WithSearchPath: got %q, want search_path=t_abc added and sslmode kept", got)
	}
}

// TestPostgresConfigured says whether this run tests PostgreSQL, and if
// not why: go tool task test runs it verbosely after the suite and prints
// its "postgres:" line, since go test shows no skip reason of a package
// that passed.
func TestPostgresConfigured(t *testing.T) {
	url := sqltest.RequirePostgres(t)
	t.Logf("postgres: the PostgreSQL tests ran against %s", sqldb.Mask(url))
}
