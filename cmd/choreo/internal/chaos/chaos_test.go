package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/sagacheck"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/sqltest"
	"github.com/choreo-dev/choreo/events/streams"
)

// ackWait is the consumers' ack wait (events/consumer's default): a
// process paused longer than this has its unacknowledged messages
// redelivered to another instance, or to itself once it resumes.
const ackWait = 30 * time.Second

// config is the size of a run, from the environment; the defaults are the
// CI size.
type config struct {
	orders, kills, natsRestarts, pauses, outages int
	rate                                         float64 // orders a second
	seed                                         uint64
	engines                                      []string
}

func configFromEnv(t *testing.T) config {
	t.Helper()
	number := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number ≥ 0", name, v)
		}
		return n
	}
	c := config{
		orders:       number("CHOREO_CHAOS_ORDERS", 300),
		kills:        number("CHOREO_CHAOS_KILLS", 10),
		natsRestarts: number("CHOREO_CHAOS_NATS_RESTARTS", 1),
		pauses:       number("CHOREO_CHAOS_PAUSES", 1),
		outages:      number("CHOREO_CHAOS_OUTAGES", 1),
		rate:         float64(number("CHOREO_CHAOS_RATE", 10)),
		seed:         uint64(time.Now().UnixNano()),
	}
	if c.rate == 0 {
		t.Fatal("CHOREO_CHAOS_RATE=0: orders must flow")
	}
	if v := os.Getenv("CHOREO_CHAOS_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHOREO_CHAOS_SEED=%q: %v", v, err)
		}
		c.seed = seed
	}
	switch e := os.Getenv("CHOREO_CHAOS_ENGINE"); e {
	case "", "both":
		c.engines = []string{"postgres", "sqlite"}
	case "postgres", "sqlite":
		c.engines = []string{e}
	default:
		t.Fatalf("CHOREO_CHAOS_ENGINE=%q: want postgres, sqlite or both", e)
	}
	return c
}

// TestChaos runs the saga through every fault the product claims to
// survive, at random instants from a printed seed, then checks every
// invariant of PRODUCT.md. CHOREO_CHAOS_SEED=<seed> replays a run's plan
// (the faults' effects depend on timing, so not its every detail).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the services as processes for minutes; skipped with -short")
	}
	cfg := configFromEnv(t)
	t.Logf("seed %d (CHOREO_CHAOS_SEED=%d replays its plan): %d orders at %g/s, %d kills, %d NATS restarts, %d provider outages",
		cfg.seed, cfg.seed, cfg.orders, cfg.rate, cfg.kills, cfg.natsRestarts, cfg.outages)
	choreo, natsServer := buildBinaries(t)
	for _, engine := range cfg.engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			replicas, storeURL := 1, sqliteStores(t.TempDir())
			if engine == "postgres" {
				replicas, storeURL = 2, postgresStores(t, sqltest.RequirePostgres(t))
			}
			cfg := cfg
			runChaos(t, cfg, startCluster(t, choreo, natsServer, replicas, storeURL))
		})
	}
}

// sqliteStores gives each service a SQLite file of its own.
func sqliteStores(dir string) func(service string) string {
	return func(service string) string { return filepath.Join(dir, service+".db") }
}

// postgresStores gives each service a schema of its own, under a prefix
// fresh for this run so that runs do not meet, and drops them after.
func postgresStores(t *testing.T, base string) func(service string) string {
	t.Helper()
	prefix := fmt.Sprintf("chaos_%d", time.Now().UnixNano())
	db := sqltest.MustOpen(t, base)
	for _, svc := range catalog.Services {
		if _, err := db.Exec("CREATE SCHEMA " + prefix + "_" + svc); err != nil {
			t.Fatalf("create schema: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, svc := range catalog.Services {
			if _, err := db.Exec("DROP SCHEMA IF EXISTS " + prefix + "_" + svc + " CASCADE"); err != nil {
				t.Logf("drop schema %s_%s: %v", prefix, svc, err)
			}
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return func(service string) string {
		v := *u
		q := v.Query()
		q.Set("search_path", prefix+"_"+service)
		v.RawQuery = q.Encode()
		return v.String()
	}
}

// cluster is the system under test: a standalone NATS server, the
// provider simulator, and every service's replicas as processes.
type cluster struct {
	nats     *process
	natsURL  string
	keys     string // each NATS user's nkey, <user>.nk
	provider *process
	services map[string][]*process
	stores   map[string]*sqldb.DB // each service's store, read by the checker
}

// orderTimeout is short so that orders stalled by a fault end within the
// run, cancelled with reason timeout and every compensation.
const orderTimeout = 10 * time.Second

func startCluster(t *testing.T, choreo, natsServer string, replicas int, storeURL func(string) string) *cluster {
	t.Helper()
	dir := t.TempDir()
	ctx := t.Context()
	c := &cluster{services: map[string][]*process{}, stores: map[string]*sqldb.DB{}}
	c.nats, c.natsURL, c.keys = natsServerProcess(t, choreo, natsServer, dir)
	c.provider = &process{name: "provider", bin: choreo, logs: filepath.Join(dir, "provider.log"),
		args: []string{"provider", "--listen", "127.0.0.1:" + strconv.Itoa(freePort(t)), "--log-level", "warn"}, ready: announcedProvider}
	t.Cleanup(func() {
		for _, ps := range c.services {
			for _, p := range ps {
				p.kill()
			}
		}
		c.provider.kill()
		c.nats.kill()
		if t.Failed() {
			for _, p := range append(c.processes(), c.nats, c.provider) {
				t.Logf("last lines of %s's log:\n%s", p.name, tail(p.logs, 20))
			}
		}
	})
	for _, p := range []*process{c.nats, c.provider} {
		if err := p.start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A service's user may not create a stream: the operator sets them up,
	// as serve's defaults want them.
	nc, js := c.connect(t, catalog.RoleOperator)
	if err := streams.Ensure(ctx, js, catalog.StreamSpecs(catalog.DefaultRetention), streams.Options{}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	providerURL, _ := c.provider.state()
	for _, svc := range catalog.Services {
		for i := range replicas {
			p := &process{name: fmt.Sprintf("%s-%d", svc, i+1), bin: choreo, logs: filepath.Join(dir, fmt.Sprintf("%s-%d.log", svc, i+1)),
				args: []string{"serve", svc, "--db", storeURL(svc), "--nats-url", c.natsURL, "--nats-creds", natsauth.KeyFile(c.keys, svc), "--http", "127.0.0.1:0",
					"--provider-url", providerURL, "--order-timeout", orderTimeout.String(), "--rate-limit", "0", "--log-level", "warn"},
				ready: announcedHTTP}
			if err := p.start(ctx); err != nil {
				t.Fatal(err)
			}
			c.services[svc] = append(c.services[svc], p)
		}
		db, err := sqldb.Open(ctx, storeURL(svc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c.stores[svc] = db
	}
	return c
}

// connect connects to NATS as one of choreo's users, reconnecting for
// ever across the server's restarts.
func (c *cluster) connect(t *testing.T, user string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	creds, err := natsauth.CredentialsOption(natsauth.KeyFile(c.keys, user))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.natsURL, creds, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to NATS as %s: %v", user, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// staleReplyLogged begins the log line of a service whose reply the server
// refused after a reconnect (staleReply in package main).
const staleReplyLogged = `"level":"WARN","msg":"nats: a reply to a request received before the reconnect was refused`

// permissionViolations lists the processes whose log shows a NATS
// permission violation: a service doing what its user may not do is a bug.
func (c *cluster) permissionViolations() []string {
	var found []string
	for _, p := range c.processes() {
		b, err := os.ReadFile(p.logs)
		if err != nil {
			found = append(found, fmt.Sprintf("%s: %v", p.name, err))
			continue
		}
		for line := range strings.Lines(string(b)) {
			// A reply the server refused just after a reconnect answers a
			// request of the previous connection (a process paused across a
			// NATS restart): the service says so at warn level, and nothing
			// is lost. Anything else is a bug.
			if strings.Contains(strings.ToLower(line), "permissions violation") && !strings.Contains(line, staleReplyLogged) {
				found = append(found, fmt.Sprintf("%s met a NATS permissions violation (log %s): %s", p.name, p.logs, strings.TrimSpace(line)))
				break
			}
		}
	}
	return found
}

// serving returns the HTTP address of a random replica of svc that is up
// and not paused, waiting for one.
func (c *cluster) serving(ctx context.Context, rng func(int) int, svc string) (string, error) {
	for {
		var up []string
		for _, p := range c.services[svc] {
			if addr, ok := p.state(); ok {
				up = append(up, addr)
			}
		}
		if len(up) > 0 {
			return up[rng(len(up))], nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no %s replica serving: %w", svc, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *cluster) processes() []*process {
	var all []*process
	for _, svc := range catalog.Services {
		all = append(all, c.services[svc]...)
	}
	return all
}

// system is the cluster as the invariant checker reads it: through the
// first replica of each service, the outbox from the stores themselves.
func (c *cluster) system(js jetstream.JetStream) sagacheck.System {
	addr := func(svc string) string { a, _ := c.services[svc][0].state(); return a }
	providerURL, _ := c.provider.state()
	return sagacheck.System{OrdersURL: addr(catalog.Orders), InventoryURL: addr(catalog.Inventory), PaymentsURL: addr(catalog.Payments),
		ProviderURL: providerURL, JS: js, Outbox: func(ctx context.Context) (map[string]int64, error) {
			backlog := map[string]int64{}
			for svc, db := range c.stores {
				n, _, err := outbox.New(db).Backlog(ctx)
				if err != nil {
					return nil, fmt.Errorf("outbox of %s: %w", svc, err)
				}
				backlog[svc] = int64(n)
			}
			return backlog, nil
		}}
}

// tally is what a run did and saw, printed at the end.
type tally struct {
	mu                                    sync.Mutex
	placedHTTP, placedNATS                int
	cancelsHTTP, cancelsNATS, cancelsOK   int
	restocksHTTP, restocksNATS            int
	retries                               int // commands sent again after an error or no answer
	kills, restarts, natsRestarts, pauses int
	outages                               int
	redeliveries                          map[string]float64 // per process incarnation, its last scrape
	violations                            []string           // seen while the run was under way
	outcomes                              map[string]int
	flow, heal                            time.Duration
	checkViolations                       []string
}

func (ta *tally) add(f func(*tally)) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	f(ta)
}

// runChaos drives the cluster and checks it.
func runChaos(t *testing.T, cfg config, c *cluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	// Commands come from the client's user, as a storefront's would; the
	// checker reads as the operator, as choreo's tools do.
	clientConn, js := c.connect(t, catalog.RoleClient)
	defer clientConn.Close()
	operatorConn, operatorJS := c.connect(t, catalog.RoleOperator)
	defer operatorConn.Close()
	// The plan — the orders, the restocks, the faults' instants — is drawn
	// by this goroutine alone, so that a seed gives the same plan again;
	// which replica a request or a fault hits is drawn from a second
	// source as the run goes.
	plan := rand.New(rand.NewPCG(cfg.seed, 0))
	picks := rand.New(rand.NewPCG(cfg.seed, 1))
	var picksMu sync.Mutex
	intn := func(n int) int { picksMu.Lock(); defer picksMu.Unlock(); return picks.IntN(n) }
	ta := &tally{redeliveries: map[string]float64{}}
	d := &driver{c: c, js: js, intn: intn, ta: ta, client: &http.Client{Timeout: 5 * time.Second}}

	// Scarce stock, so that some orders run out of it, and restocks as
	// orders flow.
	skus := []string{"SKU-A", "SKU-B", "SKU-C", "SKU-D"}
	received := map[string]int64{}
	var receivedMu sync.Mutex
	restock := func(n int, sku string, qty int64) {
		if err := d.restock(ctx, fmt.Sprintf("chaos-restock-%d", n), sku, qty, n%2 == 0); err != nil {
			t.Error(err)
			return
		}
		receivedMu.Lock()
		received[sku] += qty
		receivedMu.Unlock()
	}
	for i, sku := range skus {
		restock(i, sku, int64(cfg.orders/4+1))
	}

	flow := time.Duration(float64(cfg.orders) / cfg.rate * float64(time.Second))
	faults := d.planFaults(plan, cfg, flow)
	start := time.Now()
	monitorCtx, stopMonitor := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); d.monitor(monitorCtx, skus) }()
	var faultsDone sync.WaitGroup
	for _, f := range faults {
		faultsDone.Go(func() {
			select {
			case <-time.After(time.Until(start.Add(f.at))):
			case <-ctx.Done():
				return
			}
			f.run(ctx, t)
		})
	}

	orders := make([]sagacheck.Order, cfg.orders)
	var ordersDone sync.WaitGroup
	for i := range orders {
		o := sagacheck.Order{ID: events.NewID(), Customer: fmt.Sprintf("cust-%d", plan.IntN(50)), SKU: skus[plan.IntN(len(skus))],
			Qty: int64(1 + plan.IntN(3)), UnitPrice: 1000}
		if plan.IntN(10) == 0 {
			o.Customer = fmt.Sprintf("decline-%d", i)
		}
		cancelAfter := time.Duration(-1)
		if plan.IntN(6) == 0 {
			o.CancelAsked = true
			cancelAfter = time.Duration(plan.IntN(1500)) * time.Millisecond
		}
		orders[i] = o
		overHTTP := i%2 == 0
		ordersDone.Go(func() {
			if err := d.place(ctx, o, overHTTP); err != nil {
				t.Error(err)
				return
			}
			if cancelAfter < 0 {
				return
			}
			time.Sleep(cancelAfter)
			accepted, err := d.cancel(ctx, o.ID, overHTTP)
			if err != nil {
				t.Error(err)
			}
			orders[i].CancelAccepted = accepted
		})
		if i%25 == 12 {
			restock(len(skus)+i, skus[plan.IntN(len(skus))], int64(10+plan.IntN(20)))
		}
		time.Sleep(time.Until(start.Add(time.Duration(float64(i+1) / cfg.rate * float64(time.Second)))))
	}
	ordersDone.Wait()
	faultsDone.Wait()
	ta.flow = time.Since(start)

	// Heal: every process up, the provider normal; then quiet, and the
	// invariants.
	healStart := time.Now()
	for _, p := range append(c.processes(), c.provider) {
		if !p.running() {
			if err := p.startRetrying(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.providerMode(ctx, "normal"); err != nil {
		t.Fatal(err)
	}
	settleCtx, cancelSettle := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelSettle()
	report, err := c.system(operatorJS).Settle(settleCtx, orders, received)
	ta.heal = time.Since(healStart)
	stopMonitor()
	<-monitorDone
	d.scrapeRedeliveries(ctx) // the survivors' last counts
	if err != nil {
		t.Errorf("check: %v", err)
	}
	ta.outcomes, ta.checkViolations = report.Outcomes, append(report.Violations, c.permissionViolations()...)
	t.Log("\n" + ta.summary(cfg, len(orders)))
	for _, v := range append(ta.violations, ta.checkViolations...) {
		t.Error(v)
	}
	if cfg.kills > 0 && ta.kills == 0 || cfg.natsRestarts > 0 && ta.natsRestarts == 0 || cfg.pauses > 0 && ta.pauses == 0 || cfg.outages > 0 && ta.outages == 0 {
		t.Errorf("planned faults did not all happen: %d kills, %d NATS restarts, %d pauses, %d outages", ta.kills, ta.natsRestarts, ta.pauses, ta.outages)
	}
}

// summary is the table printed at the end of a run.
func (ta *tally) summary(cfg config, orders int) string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	redelivered := 0.0
	for _, n := range ta.redeliveries {
		redelivered += n
	}
	outcomes := make([]string, 0, len(ta.outcomes))
	for k, n := range ta.outcomes {
		outcomes = append(outcomes, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(outcomes)
	fmt.Fprintf(w, "seed\t%d\n", cfg.seed)
	fmt.Fprintf(w, "orders\t%d (%d over HTTP, %d over NATS)\n", orders, ta.placedHTTP, ta.placedNATS)
	fmt.Fprintf(w, "outcomes\t%s\n", strings.Join(outcomes, ", "))
	fmt.Fprintf(w, "cancels\t%d over HTTP (%d accepted), %d over NATS\n", ta.cancelsHTTP, ta.cancelsOK, ta.cancelsNATS)
	fmt.Fprintf(w, "restocks\t%d over HTTP, %d over NATS\n", ta.restocksHTTP, ta.restocksNATS)
	fmt.Fprintf(w, "commands retried\t%d\n", ta.retries)
	fmt.Fprintf(w, "kill -9\t%d (restarted %d)\n", ta.kills, ta.restarts)
	fmt.Fprintf(w, "NATS restarts\t%d\n", ta.natsRestarts)
	fmt.Fprintf(w, "pauses past ack wait\t%d\n", ta.pauses)
	fmt.Fprintf(w, "provider outages\t%d\n", ta.outages)
	fmt.Fprintf(w, "redeliveries\t%.0f (choreo_message_redeliveries_total, each process's last scrape)\n", redelivered)
	fmt.Fprintf(w, "flow / heal to quiet\t%s / %s\n", ta.flow.Round(time.Second), ta.heal.Round(time.Second))
	fmt.Fprintf(w, "violations\t%d\n", len(ta.violations)+len(ta.checkViolations))
	w.Flush()
	return b.String()
}

// driver sends the commands and the faults.
type driver struct {
	c      *cluster
	js     jetstream.JetStream
	intn   func(int) int
	ta     *tally
	client *http.Client
}

// until runs attempt every 200 ms until it is done or ctx ends.
func until(ctx context.Context, what string, attempt func() (done bool, err error)) error {
	for {
		done, err := attempt()
		if done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up: %v (last: %v)", what, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// retry sends a command until it is accepted, counting the attempts after
// the first: an error or no answer leaves a command's fate unknown, and
// every command is idempotent, so it is sent again.
func (d *driver) retry(ctx context.Context, what string, attempt func() (done bool, err error)) error {
	return until(ctx, what, func() (bool, error) {
		done, err := attempt()
		if !done {
			d.ta.add(func(ta *tally) { ta.retries++ })
		}
		return done, err
	})
}

// publish publishes a command until JetStream acknowledges it; its id
// makes a copy a duplicate the stream drops.
func (d *driver) publish(ctx context.Context, subject, id string, body []byte) error {
	return d.retry(ctx, "publish "+subject, func() (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := d.js.Publish(pctx, subject, body, jetstream.WithMsgID(id))
		return err == nil, err
	})
}

// post sends a request to a serving replica of svc until it answers with
// one of final; 5xx, 429 and no answer are tried again.
func (d *driver) post(ctx context.Context, svc, path string, body []byte, final ...int) (int, error) {
	var code int
	err := d.retry(ctx, "POST "+path, func() (bool, error) {
		base, err := d.c.serving(ctx, d.intn, svc)
		if err != nil {
			return true, err
		}
		resp, err := d.client.Post(base+path, "application/json", bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		if slices.Contains(final, code) {
			return true, nil
		}
		if code >= 500 || code == http.StatusTooManyRequests {
			return false, fmt.Errorf("status %d: %s", code, b)
		}
		return true, fmt.Errorf("POST %s: status %d: %s", path, code, b)
	})
	return code, err
}

func (d *driver) place(ctx context.Context, o sagacheck.Order, overHTTP bool) error {
	body, _ := json.Marshal(catalog.PlaceOrder{OrderID: o.ID, CustomerID: o.Customer, Currency: "EUR",
		Items: []catalog.LineItem{{SKU: o.SKU, Quantity: o.Qty, UnitPrice: o.UnitPrice}}})
	if overHTTP {
		d.ta.add(func(ta *tally) { ta.placedHTTP++ })
		_, err := d.post(ctx, catalog.Orders, "/orders", body, http.StatusAccepted)
		return err
	}
	d.ta.add(func(ta *tally) { ta.placedNATS++ })
	return d.publish(ctx, catalog.SubjectPlaceOrder, "place-"+o.ID, body)
}

// cancel asks to cancel an order once it exists (a cancel of an unknown
// order is a dead letter), and reports whether an HTTP cancel was
// accepted (200: the order is cancelled).
func (d *driver) cancel(ctx context.Context, id string, overHTTP bool) (bool, error) {
	err := until(ctx, "order "+id+" known", func() (bool, error) {
		base, err := d.c.serving(ctx, d.intn, catalog.Orders)
		if err != nil {
			return true, err
		}
		var o sagacheck.OrderView
		code, err := sagacheck.GetJSON(ctx, d.client, base+"/orders/"+id, &o)
		return err == nil && code == http.StatusOK, err
	})
	if err != nil {
		return false, err
	}
	if overHTTP {
		d.ta.add(func(ta *tally) { ta.cancelsHTTP++ })
		code, err := d.post(ctx, catalog.Orders, "/orders/"+id+"/cancel", nil, http.StatusOK, http.StatusConflict)
		if code == http.StatusOK {
			d.ta.add(func(ta *tally) { ta.cancelsOK++ })
		}
		return code == http.StatusOK, err
	}
	d.ta.add(func(ta *tally) { ta.cancelsNATS++ })
	return false, d.publish(ctx, catalog.SubjectCancelOrder, "cancel-"+id, []byte(`{"command_id":"cancel-`+id+`","order_id":"`+id+`"}`))
}

func (d *driver) restock(ctx context.Context, commandID, sku string, qty int64, overHTTP bool) error {
	if overHTTP {
		d.ta.add(func(ta *tally) { ta.restocksHTTP++ })
		body := fmt.Sprintf(`{"command_id":%q,"quantity":%d}`, commandID, qty)
		_, err := d.post(ctx, catalog.Inventory, "/inventory/"+sku+"/restock", []byte(body), http.StatusAccepted)
		return err
	}
	d.ta.add(func(ta *tally) { ta.restocksNATS++ })
	body := fmt.Sprintf(`{"command_id":%q,"sku":%q,"quantity":%d}`, commandID, sku, qty)
	return d.publish(ctx, catalog.SubjectRestock, commandID, []byte(body))
}

func (d *driver) providerMode(ctx context.Context, mode string) error {
	base, _ := d.c.provider.state()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/admin/mode", strings.NewReader(`{"mode":"`+mode+`"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("provider mode %s: %w", mode, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("provider mode %s: status %d", mode, resp.StatusCode)
	}
	return nil
}

// fault is one planned fault: what, and when after the start.
type fault struct {
	at  time.Duration
	run func(ctx context.Context, t *testing.T)
}

// planFaults draws the faults' instants over the flow from the seed. Which
// process a kill or a pause hits is drawn when it happens, among those
// running then.
func (d *driver) planFaults(plan *rand.Rand, cfg config, flow time.Duration) []fault {
	at := func() time.Duration {
		return flow/20 + time.Duration(plan.IntN(int(flow*17/20/time.Millisecond)+1))*time.Millisecond
	}
	var faults []fault
	for range cfg.kills {
		down := time.Duration(plan.IntN(1500)) * time.Millisecond
		faults = append(faults, fault{at(), func(ctx context.Context, t *testing.T) { d.killOne(ctx, t, down) }})
	}
	for range cfg.natsRestarts {
		down := time.Duration(500+plan.IntN(1500)) * time.Millisecond
		faults = append(faults, fault{at(), func(ctx context.Context, t *testing.T) { d.restartNATS(ctx, t, down) }})
	}
	for range cfg.pauses {
		faults = append(faults, fault{at(), func(ctx context.Context, t *testing.T) { d.pauseOne(ctx, t, ackWait+5*time.Second) }})
	}
	for range cfg.outages {
		down := time.Duration(2000+plan.IntN(4000)) * time.Millisecond
		faults = append(faults, fault{at(), func(ctx context.Context, t *testing.T) { d.outage(ctx, t, down) }})
	}
	return faults
}

// pick claims a random service process that is up, not paused and free
// of other faults, waiting for one.
func (d *driver) pick(ctx context.Context) (*process, error) {
	var picked *process
	err := until(ctx, "a process to hit", func() (bool, error) {
		var free []*process
		for _, p := range d.c.processes() {
			if _, ok := p.state(); ok {
				free = append(free, p)
			}
		}
		if len(free) == 0 {
			return false, nil
		}
		picked = free[d.intn(len(free))]
		return picked.claim(), nil
	})
	return picked, err
}

func (d *driver) killOne(ctx context.Context, t *testing.T, down time.Duration) {
	p, err := d.pick(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	defer p.release()
	d.scrape(ctx, p)
	p.kill()
	d.ta.add(func(ta *tally) { ta.kills++ })
	t.Logf("%s kill -9 %s, down for %s", time.Now().Format("15:04:05.000"), p.name, down)
	time.Sleep(down)
	if err := p.startRetrying(ctx); err != nil {
		t.Error(err)
		return
	}
	d.ta.add(func(ta *tally) { ta.restarts++ })
}

func (d *driver) restartNATS(ctx context.Context, t *testing.T, down time.Duration) {
	if err := d.c.nats.claimWhenFree(ctx); err != nil {
		t.Error(err)
		return
	}
	defer d.c.nats.release()
	d.c.nats.kill()
	d.ta.add(func(ta *tally) { ta.natsRestarts++ })
	t.Logf("%s kill -9 nats-server, down for %s", time.Now().Format("15:04:05.000"), down)
	time.Sleep(down)
	if err := d.c.nats.startRetrying(ctx); err != nil {
		t.Error(err)
	}
}

func (d *driver) pauseOne(ctx context.Context, t *testing.T, pause time.Duration) {
	p, err := d.pick(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	defer p.release()
	if err := p.signal(syscall.SIGSTOP); err != nil {
		t.Error(err)
		return
	}
	d.ta.add(func(ta *tally) { ta.pauses++ })
	t.Logf("%s SIGSTOP %s for %s", time.Now().Format("15:04:05.000"), p.name, pause)
	select {
	case <-time.After(pause):
	case <-ctx.Done():
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		t.Error(err)
	}
	t.Logf("%s SIGCONT %s", time.Now().Format("15:04:05.000"), p.name)
}

func (d *driver) outage(ctx context.Context, t *testing.T, down time.Duration) {
	// One outage at a time, so that the end of one does not cut another
	// short.
	if err := d.c.provider.claimWhenFree(ctx); err != nil {
		t.Error(err)
		return
	}
	defer d.c.provider.release()
	if err := d.providerMode(ctx, "down"); err != nil {
		t.Error(err)
		return
	}
	d.ta.add(func(ta *tally) { ta.outages++ })
	t.Logf("%s payment provider down for %s", time.Now().Format("15:04:05.000"), down)
	time.Sleep(down)
	if err := d.providerMode(ctx, "normal"); err != nil {
		t.Error(err)
	}
}

// monitor watches the run: stock never negative, and each process's
// redelivery count.
func (d *driver) monitor(ctx context.Context, skus []string) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, sku := range skus {
			base, err := d.c.serving(ctx, d.intn, catalog.Inventory)
			if err != nil {
				return
			}
			var s sagacheck.StockView
			if code, err := sagacheck.GetJSON(ctx, d.client, base+"/inventory/"+sku, &s); err == nil && code == http.StatusOK &&
				(s.Available < 0 || s.Reserved < 0 || s.Sold < 0) {
				d.ta.add(func(ta *tally) {
					ta.violations = append(ta.violations, fmt.Sprintf("negative stock during the run: %+v", s))
				})
			}
		}
		d.scrapeRedeliveries(ctx)
	}
}

func (d *driver) scrapeRedeliveries(ctx context.Context) {
	for _, p := range d.c.processes() {
		d.scrape(ctx, p)
	}
}

var redeliveryLine = regexp.MustCompile(`(?m)^choreo_message_redeliveries_total(?:\{[^}]*\})? (\S+)$`)

// scrape records the process's redelivery count, kept per incarnation
// since a restart starts it again at zero.
func (d *driver) scrape(ctx context.Context, p *process) {
	addr, ok := p.state()
	if !ok {
		return
	}
	p.mu.Lock()
	key := fmt.Sprintf("%s#%d", p.name, p.incarnation)
	p.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	total := 0.0
	for _, m := range redeliveryLine.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		total += v
	}
	d.ta.add(func(ta *tally) { ta.redeliveries[key] = max(ta.redeliveries[key], total) })
}

// tail returns the last n lines of a file, for a post-mortem.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
