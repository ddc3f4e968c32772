package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/sagacheck"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// runningChoreo is a `choreo up` started by a test through run(), the same
// entry point main uses.
type runningChoreo struct {
	natsURL     string
	dataDir     string
	httpURL     string
	providerURL string
	stderr      *lockedBuffer
	stop        func()
}

var (
	natsLine     = regexp.MustCompile(`(?m)^\s+NATS\s+(nats://\S+)`)
	httpLine     = regexp.MustCompile(`(?m)^\s+HTTP\s+(http://\S+)`)
	providerLine = regexp.MustCompile(`(?m)^\s+provider\s+(http://\S+)`)
)

// startUp runs `choreo up` with an embedded NATS server on a random port, a
// random HTTP port and its data in a temporary directory, plus extra
// arguments. The environment is empty so the caller's NATS_URL cannot leak
// in. It returns once the program printed its addresses.
func startUp(t *testing.T, extra ...string) *runningChoreo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// No rate limit: a test polls for hundreds of orders from one address,
	// which is many clients' worth of requests. A test of the limit sets one.
	args := append([]string{"up", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--provider-listen", "127.0.0.1:0", "--log-level", "warn", "--rate-limit", "0"}, extra...)
	var dataDir string
	for i, a := range args[:len(args)-1] {
		if a == "--data" {
			dataDir = args[i+1] // the last one wins, as with the flag package
		}
	}
	outR, outW := io.Pipe()
	var stderr lockedBuffer
	exited := make(chan int, 1)
	go func() {
		code := run(ctx, args, outW, &stderr, func(string) string { return "" })
		outW.Close()
		exited <- code
	}()
	var printed strings.Builder
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Ctrl-C") {
			break
		}
	}
	go io.Copy(io.Discard, outR)
	nm, hm := natsLine.FindStringSubmatch(printed.String()), httpLine.FindStringSubmatch(printed.String())
	if nm == nil || hm == nil {
		cancel()
		t.Fatalf("choreo up did not print its addresses; stdout:\n%s\nstderr:\n%s", printed.String(), stderr.String())
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("choreo up exited with %d; stderr:\n%s", code, stderr.String())
			}
			// Each service ran with its own NATS user's rights only: a
			// refused publish or API call is logged, and is a bug.
			if strings.Contains(strings.ToLower(stderr.String()), "permissions violation") {
				t.Errorf("a service met a NATS permission violation; stderr:\n%s", stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Errorf("choreo up did not stop within a minute of Ctrl-C")
		}
	}
	t.Cleanup(stop)
	c := &runningChoreo{natsURL: nm[1], dataDir: dataDir, httpURL: hm[1], stderr: &stderr, stop: stop}
	watchAPI(t, c.httpURL, args)
	dataDirs.Store(c.natsURL, dataDir)
	t.Cleanup(func() { dataDirs.Delete(c.natsURL) })
	if pm := providerLine.FindStringSubmatch(printed.String()); pm != nil {
		c.providerURL = pm[1]
	}
	return c
}

// dataDirs maps the NATS URL of each running choreo up to its data
// directory, so a tool run by a test can be given CHOREO_DATA as a user of
// that choreo up would have it (and find its operator credentials).
var dataDirs sync.Map

// dataDirOf returns the data directory of the choreo up at natsURL, or "".
func dataDirOf(natsURL string) string {
	if d, ok := dataDirs.Load(natsURL); ok {
		return d.(string)
	}
	return ""
}

// operator connects with the operator's credentials that choreo up
// generated: the user that may publish anything, as a test forging events
// must.
func (c *runningChoreo) operator(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opt, err := natsauth.CredentialsOption(natsauth.KeyFile(embeddedCredsDir(c.dataDir), catalog.RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	return natstest.Connect(t, c.natsURL, opt)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHappyPathSQLite(t *testing.T) {
	c := startUp(t)
	runHappyPath(t, c)
}

func TestHappyPathPostgres(t *testing.T) {
	base := sqltest.RequirePostgres(t)
	// A database of our own, so schemas named after the services do not
	// collide with another run.
	c := startUp(t, "--db", freshPostgresDatabase(t, base))
	runHappyPath(t, c)
}

const (
	e2eOrders  = 200
	e2eStock   = 1000
	e2eTimeout = 3 * time.Minute
)

var e2eSKUs = []string{"SKU-1", "SKU-2", "SKU-3", "SKU-4"}

// runHappyPath restocks, places 200 orders concurrently — half over HTTP,
// half as cmd.orders.place, some of them twice — and checks PRODUCT.md's
// invariants once the system is quiet.
func runHappyPath(t *testing.T, c *runningChoreo) {
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	nc, js := natstest.Connect(t, c.natsURL)

	// Restock: half the SKUs over NATS, half over HTTP; each NATS command
	// sent twice with the same command id, which must count once.
	for i, sku := range e2eSKUs {
		if i%2 == 0 {
			body := fmt.Sprintf(`{"command_id":"restock-%s","sku":%q,"quantity":%d}`, sku, sku, e2eStock)
			for range 2 {
				if err := nc.Publish(catalog.SubjectRestock, []byte(body)); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			for range 2 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.httpURL+"/inventory/"+sku+"/restock", strings.NewReader(fmt.Sprintf(`{"quantity":%d}`, e2eStock)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "restock-"+sku)
				mustStatus(t, req, http.StatusAccepted)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "restocks applied", func() (bool, string) {
		for _, sku := range e2eSKUs {
			s := getStock(t, c, sku)
			if s.Available != e2eStock {
				return false, fmt.Sprintf("%s: %+v", sku, s)
			}
		}
		return true, ""
	})

	// Place the orders concurrently.
	want := map[string]int64{} // quantity ordered per SKU
	ids := make([]string, e2eOrders)
	bodies := make([][]byte, e2eOrders)
	for i := range e2eOrders {
		ids[i] = events.NewID()
		sku := e2eSKUs[i%len(e2eSKUs)]
		qty := int64(1 + i%3)
		want[sku] += qty
		bodies[i], _ = json.Marshal(catalog.PlaceOrder{
			OrderID: ids[i], CustomerID: fmt.Sprintf("cust-%d", i%7), Currency: "EUR",
			Items: []catalog.LineItem{{SKU: sku, Quantity: qty, UnitPrice: 1299}},
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, e2eOrders*2)
	for i := range e2eOrders {
		wg.Go(func() {
			times := 1
			if i%10 == 3 {
				times = 2 // a client retrying
			}
			for range times {
				if i%2 == 0 {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.httpURL+"/orders", bytes.NewReader(bodies[i]))
					req.Header.Set("Content-Type", "application/json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						errs <- fmt.Errorf("POST /orders %s: status %d, want 202", ids[i], resp.StatusCode)
					}
				} else {
					// No Nats-Msg-Id: the two copies are two stream
					// messages, and the order id alone must dedupe them.
					if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, bodies[i]); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Quiescence: every order final, every reservation committed, every
	// notification sent, every outbox empty.
	waitFor(t, ctx, "every order CONFIRMED", func() (bool, string) {
		for _, id := range ids {
			if o := getOrder(t, c, id); o.Status != catalog.StatusConfirmed {
				return false, fmt.Sprintf("order %s is %s %s", id, o.Status, o.Reason)
			}
		}
		return true, ""
	})
	waitFor(t, ctx, "stock settled", func() (bool, string) {
		for _, sku := range e2eSKUs {
			s := getStock(t, c, sku)
			if s.Reserved != 0 || s.Sold != want[sku] {
				return false, fmt.Sprintf("%s: %+v, want sold %d and nothing reserved", sku, s, want[sku])
			}
		}
		return true, ""
	})
	waitFor(t, ctx, "one notification per order", func() (bool, string) {
		n, err := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent.>")
		if err != nil {
			return false, err.Error()
		}
		if len(n) != e2eOrders {
			return false, fmt.Sprintf("%d orders notified", len(n))
		}
		return true, ""
	})
	waitFor(t, ctx, "every outbox empty", func() (bool, string) {
		backlog := outboxBacklog(t, c)
		for _, svc := range catalog.Services {
			if v, ok := backlog[svc]; !ok || v != 0 {
				return false, fmt.Sprintf("backlog %v", backlog)
			}
		}
		return true, ""
	})

	// The invariants, checked once more now that everything is quiet.
	for _, sku := range e2eSKUs {
		s := getStock(t, c, sku)
		if s.Available+s.Reserved+s.Sold != e2eStock {
			t.Errorf("%s: available %d + reserved %d + sold %d = %d, want everything received = %d",
				sku, s.Available, s.Reserved, s.Sold, s.Available+s.Reserved+s.Sold, e2eStock)
		}
		if s.Available < 0 {
			t.Errorf("%s: available %d < 0", sku, s.Available)
		}
	}
	for _, kind := range []string{"orders.placed.>", "orders.confirmed.>", "inventory.reserved.>", "payments.captured.>", "inventory.committed.>"} {
		stream := map[string]string{"orders": catalog.StreamOrders, "inventory": catalog.StreamInventory, "payments": catalog.StreamPayments}[strings.Split(kind, ".")[0]]
		per, err := countSubjects(ctx, js, stream, kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(per) != e2eOrders {
			t.Errorf("%s: %d orders have one, want %d", kind, len(per), e2eOrders)
		}
		for subj, n := range per {
			if n != 1 {
				t.Errorf("%s: %d messages, want exactly 1", subj, n)
			}
		}
	}
	if dl, err := countSubjects(ctx, js, catalog.StreamDLQ, "dlq.>"); err != nil || len(dl) != 0 {
		t.Errorf("dead letters %v (err %v), want none", dl, err)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: gave up; last: %s", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func mustStatus(t *testing.T, req *http.Request, want int) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d: %s", req.Method, req.URL, resp.StatusCode, want, b)
	}
}

// The views of GET /orders/{id} and GET /inventory/{sku}, shared with the
// invariant checker.
type (
	orderView = sagacheck.OrderView
	stockView = sagacheck.StockView
)

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	code, err := sagacheck.GetJSON(context.Background(), http.DefaultClient, url, v)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func getOrder(t *testing.T, c *runningChoreo, id string) orderView {
	t.Helper()
	var o orderView
	if code := getJSON(t, c.httpURL+"/orders/"+id, &o); code != http.StatusOK {
		o.Status = fmt.Sprintf("HTTP %d", code)
	}
	return o
}

func getStock(t *testing.T, c *runningChoreo, sku string) stockView {
	t.Helper()
	var s stockView
	if code := getJSON(t, c.httpURL+"/inventory/"+sku, &s); code != http.StatusOK {
		t.Fatalf("GET /inventory/%s: status %d", sku, code)
	}
	return s
}

// outboxBacklog reads each service's outbox backlog from /metrics.
func outboxBacklog(t *testing.T, c *runningChoreo) map[string]int64 {
	t.Helper()
	backlog, err := sagacheck.MetricsBacklog(context.Background(), http.DefaultClient, c.httpURL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return backlog
}

// system is the choreo up as the shared invariant checker reads it: one
// HTTP address for every service, the outbox backlog from /metrics.
func (c *runningChoreo) system(js jetstream.JetStream) sagacheck.System {
	return sagacheck.System{OrdersURL: c.httpURL, InventoryURL: c.httpURL, PaymentsURL: c.httpURL, ProviderURL: c.providerURL, JS: js,
		Outbox: func(ctx context.Context) (map[string]int64, error) {
			return sagacheck.MetricsBacklog(ctx, http.DefaultClient, c.httpURL+"/metrics")
		}}
}

// countSubjects returns how many messages the stream holds per subject
// matching filter.
var countSubjects = sagacheck.CountSubjects

// freshPostgresDatabase creates a database for one test and drops it after.
func freshPostgresDatabase(t *testing.T, base string) string {
	t.Helper()
	db := sqltest.MustOpen(t, base)
	name := fmt.Sprintf("choreo_e2e_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		admin := sqltest.MustOpen(t, base)
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return replaceDatabase(t, base, name)
}

func replaceDatabase(t *testing.T, base, name string) string {
	t.Helper()
	i := strings.LastIndex(base, "/")
	rest := ""
	if q := strings.IndexByte(base[i:], '?'); q >= 0 {
		rest = base[i+q:]
	}
	return base[:i+1] + name + rest
}

// busyConsumers says which consumers of streams still have messages
// pending or unacknowledged ("" when none).
var busyConsumers = sagacheck.BusyConsumers
