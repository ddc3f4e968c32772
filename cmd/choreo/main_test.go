package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// choreo up and serve they start must stop everything it started —
// consumers, relays, HTTP servers, NATS connections and database pools.
//
// Every request of the tests' HTTP clients (http.DefaultClient, which
// http.Get and http.Post use) to a choreo they started is checked against
// the /openapi.json it serves (see apiCheck).
func TestMain(m *testing.M) {
	http.DefaultClient.Transport = apiCheck
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// built is the real binary, built once for the tests that run it as a
// separate process.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildChoreo builds the real binary once per test run and returns its
// path.
func buildChoreo(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "choreo-test-bin-")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "choreo")
		out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}
