package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// TestStore runs the same suite on every engine.
func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			open := func(t *testing.T) *sqldb.DB {
				db := b.Open(t)
				if err := idempotency.Migrate(context.Background(), db); err != nil {
					t.Fatalf("Migrate: %v", err)
				}
				return db
			}
			t.Run("ReplaysTheFirstResponse", func(t *testing.T) { testReplay(t, open(t)) })
			t.Run("OtherRequestUnderKeyIs422", func(t *testing.T) { testOtherRequest(t, open(t)) })
			t.Run("RetryWhileInFlightIs409", func(t *testing.T) { testInFlight(t, open(t)) })
			t.Run("ServerErrorIsNotStored", func(t *testing.T) { testServerError(t, open(t)) })
			t.Run("PanicReleasesTheKey", func(t *testing.T) { testPanic(t, open(t)) })
			t.Run("AbandonedClaimIsTakenOverAfterItsLease", func(t *testing.T) { testLease(t, open(t)) })
			t.Run("ExpiredResponseIsNotReplayed", func(t *testing.T) { testExpiry(t, open(t)) })
			t.Run("KeyBelongsToItsRoute", func(t *testing.T) { testRouteScope(t, open(t)) })
			t.Run("StoreFailures", func(t *testing.T) { testStoreFailures(t, open(t)) })
		})
	}
}

// counter is a handler that answers 202 with a body that changes on every
// call, so that a replay is told from a second run.
type counter struct{ calls atomic.Int32 }

func (c *counter) handle(w http.ResponseWriter) {
	n := c.calls.Add(1)
	w.Header().Set("Location", fmt.Sprintf("/things/%d", n))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "{\"call\":%d}\n", n)
}

// serve sends one request under key with the given fingerprint to route.
func serve(s *idempotency.Store, route, key, fingerprint string, handle func(http.ResponseWriter)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/things", strings.NewReader(fingerprint))
	r.Pattern = route
	w := httptest.NewRecorder()
	s.Serve(w, r, idempotency.Request{Key: key, Fingerprint: []byte(fingerprint)}, handle)
	return w
}

func wantResponse(t *testing.T, got *httptest.ResponseRecorder, status int, location, body string) {
	t.Helper()
	if got.Code != status || got.Header().Get("Location") != location || got.Body.String() != body {
		t.Errorf("got %d Location %q body %q, want %d %q %q", got.Code, got.Header().Get("Location"), got.Body.String(), status, location, body)
	}
}

func testReplay(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	for range 2 {
		// Another Store on the same database: another replica.
		r := serve(idempotency.New(db), "POST /things", "k", "a", c.handle)
		wantResponse(t, r, http.StatusAccepted, "/things/1", "{\"call\":1}\n")
		if ct := r.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("replayed Content-Type %q, want application/json", ct)
		}
	}
	if n := c.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
	// Another key is another request.
	wantResponse(t, serve(s, "POST /things", "k2", "a", c.handle), http.StatusAccepted, "/things/2", "{\"call\":2}\n")
}

func testOtherRequest(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	serve(s, "POST /things", "k", "a", c.handle)
	r := serve(s, "POST /things", "k", "b", c.handle)
	if r.Code != http.StatusUnprocessableEntity || !strings.Contains(r.Body.String(), "another body") || !strings.Contains(r.Body.String(), "/things/1") {
		t.Errorf("got %d %s, want 422 naming the first response's Location", r.Code, r.Body)
	}
	if n := c.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
}

func testInFlight(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	finish := holdKey(s, c)
	r := serve(s, "POST /things", "k", "a", c.handle)
	if r.Code != http.StatusConflict || r.Header().Get("Content-Type") != "application/problem+json" || r.Header().Get("Retry-After") == "" {
		t.Errorf("retry while in flight: got %d %v %s, want a 409 problem with Retry-After", r.Code, r.Header(), r.Body)
	}
	wantResponse(t, finish(), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
}

// holdKey starts a request for key "k" of POST /things that holds the key
// in flight until finish is called; finish lets its handler answer and
// returns the response.
func holdKey(s *idempotency.Store, c *counter) (finish func() *httptest.ResponseRecorder) {
	entered, release := make(chan struct{}), make(chan struct{})
	var (
		wg sync.WaitGroup
		r  *httptest.ResponseRecorder
	)
	wg.Go(func() {
		r = serve(s, "POST /things", "k", "a", func(w http.ResponseWriter) {
			close(entered)
			<-release
			c.handle(w)
		})
	})
	<-entered
	return func() *httptest.ResponseRecorder {
		close(release)
		wg.Wait()
		return r
	}
}

func testServerError(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	r := serve(s, "POST /things", "k", "a", func(w http.ResponseWriter) { http.Error(w, "down", http.StatusServiceUnavailable) })
	if r.Code != http.StatusServiceUnavailable {
		t.Fatalf("first: got %d, want the handler's 503", r.Code)
	}
	// The retry runs, and its answer is the one kept.
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
}

// A handler that panics leaves no claim behind: the retry runs (not a 409
// for the lease), and its answer is the one kept.
func testPanic(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	func() {
		defer func() {
			if p := recover(); p != "handler bug" {
				t.Fatalf("panic: got %v, want the handler's to go on", p)
			}
		}()
		serve(s, "POST /things", "k", "a", func(http.ResponseWriter) { panic("handler bug") })
	}()
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
}

// clock is a settable clock.
type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time          { return time.UnixMilli(c.now.Load()) }
func (c *clock) advance(d time.Duration) { c.now.Add(d.Milliseconds()) }

func testLease(t *testing.T, db *sqldb.DB) {
	clk := &clock{}
	clk.now.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	s, c := idempotency.New(db, idempotency.WithClock(clk.Now), idempotency.WithLease(time.Minute)), &counter{}
	// A request that holds the key and, as far as anyone can tell, died.
	finish := holdKey(s, c)
	clk.advance(59 * time.Second)
	if r := serve(s, "POST /things", "k", "a", c.handle); r.Code != http.StatusConflict {
		t.Errorf("within the lease: got %d, want 409", r.Code)
	}
	if r := serve(s, "POST /things", "k", "b", c.handle); r.Code != http.StatusUnprocessableEntity {
		t.Errorf("another request, within the lease: got %d, want 422", r.Code)
	}
	clk.advance(2 * time.Second)
	if r := serve(s, "POST /things", "k", "b", c.handle); r.Code != http.StatusUnprocessableEntity {
		t.Errorf("another request, past the lease: got %d, want 422: only a retry takes a claim over", r.Code)
	}
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	// The request that lost its claim answers its client, but does not
	// overwrite the response now stored.
	wantResponse(t, finish(), http.StatusAccepted, "/things/2", "{\"call\":2}\n")
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
}

func testExpiry(t *testing.T, db *sqldb.DB) {
	clk := &clock{}
	clk.now.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	s, c := idempotency.New(db, idempotency.WithClock(clk.Now), idempotency.WithRetention(time.Hour)), &counter{}
	serve(s, "POST /things", "k", "a", c.handle)
	clk.advance(59 * time.Minute)
	wantResponse(t, serve(s, "POST /things", "k", "a", c.handle), http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	clk.advance(2 * time.Minute)
	// Expired: the key is new again, whatever the request.
	wantResponse(t, serve(s, "POST /things", "k", "b", c.handle), http.StatusAccepted, "/things/2", "{\"call\":2}\n")
	// The purge (at most once a minute) deletes expired rows.
	serve(s, "POST /things", "old", "a", c.handle)
	clk.advance(2 * time.Hour)
	serve(s, "POST /things", "new", "a", c.handle)
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM idempotent_responses`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d responses kept, want 1: the expired ones purged", n)
	}
}

func testRouteScope(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	serve(s, "POST /things", "k", "a", c.handle)
	wantResponse(t, serve(s, "POST /other", "k", "a", c.handle), http.StatusAccepted, "/things/2", "{\"call\":2}\n")
}

// A response that cannot be stored is sent all the same; a key that
// cannot be claimed is a 503 that runs nothing.
func testStoreFailures(t *testing.T, db *sqldb.DB) {
	s, c := idempotency.New(db), &counter{}
	r := serve(s, "POST /things", "k", "a", func(w http.ResponseWriter) {
		db.Close() // the database goes away while the request runs
		c.handle(w)
	})
	wantResponse(t, r, http.StatusAccepted, "/things/1", "{\"call\":1}\n")
	r = serve(s, "POST /things", "k2", "a", c.handle)
	if r.Code != http.StatusServiceUnavailable || r.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("claim on a closed database: got %d %s, want a 503 problem", r.Code, r.Body)
	}
	if n := c.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
}
