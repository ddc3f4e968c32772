package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// startProvider runs `choreo provider` on a random port and returns its URL.
func startProvider(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	exited := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"provider", "--listen", "127.0.0.1:0", "--log-level", "warn"}, outW, io.Discard, func(string) string { return "" })
		outW.Close()
		exited <- code
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	go io.Copy(io.Discard, outR)
	m := regexp.MustCompile(`on (http://\S+)`).FindStringSubmatch(line)
	if err != nil || m == nil {
		cancel()
		t.Fatalf("choreo provider printed %q (%v)", line, err)
	}
	t.Cleanup(func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("choreo provider exited with %d", code)
		}
	})
	return m[1]
}

// startServe runs `choreo serve <service>` configured from the environment
// only, as a deployment would, and returns its HTTP URL.
func startServe(t *testing.T, service string, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	var stderr lockedBuffer
	exited := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"serve", service}, outW, &stderr, func(k string) string { return env[k] })
		outW.Close()
		exited <- code
	}()
	var printed strings.Builder
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "HTTP") {
			break
		}
	}
	go io.Copy(io.Discard, outR)
	m := httpLine.FindStringSubmatch(printed.String())
	if m == nil {
		cancel()
		t.Fatalf("choreo serve %s did not print its address; stdout:\n%s\nstderr:\n%s", service, printed.String(), stderr.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("choreo serve %s exited with %d; stderr:\n%s", service, code, stderr.String())
			}
			// It ran with its own NATS user's rights only.
			if strings.Contains(strings.ToLower(stderr.String()), "permissions violation") {
				t.Errorf("choreo serve %s met a NATS permission violation; stderr:\n%s", service, stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Errorf("choreo serve %s did not stop", service)
		}
	})
	watchAPI(t, m[1], nil)
	return m[1]
}

// Each service runs as its own process against a shared NATS server, and
// inventory and payments run as two replicas each, sharing their stores.
func TestServeEachServiceAloneWithReplicas(t *testing.T) {
	srv := natstest.Start(t)
	data := t.TempDir()
	providerURL := startProvider(t)
	urls := map[string][]string{}
	for _, svc := range []string{"orders", "inventory", "inventory", "payments", "payments", "notifications"} {
		env := map[string]string{
			"NATS_URL":            srv.URL,
			"CHOREO_DB_URL":       filepath.Join(data, svc+".db"),
			"CHOREO_HTTP":         "127.0.0.1:0",
			"CHOREO_LOG_LEVEL":    "warn",
			"CHOREO_PROVIDER_URL": providerURL,
		}
		urls[svc] = append(urls[svc], startServe(t, svc, env))
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, srv.URL)
	restock(t, ctx, js, "SKU-S", 100)

	// The orders service's HTTP API places; any inventory replica answers.
	c := &runningChoreo{httpURL: urls["orders"][0]}
	inv := &runningChoreo{httpURL: urls["inventory"][1]}
	const n = 30
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		ids[i] = events.NewID()
		wg.Go(func() {
			if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(ids[i], "SKU-S", 2)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitConfirmed(t, ctx, c, ids...)
	waitFor(t, ctx, "stock settled", func() (bool, string) {
		s := getStock(t, inv, "SKU-S")
		return s.Sold == 2*n && s.Reserved == 0 && s.Available == 100-2*n, fmt.Sprintf("%+v", s)
	})
	waitFor(t, ctx, "one capture and one notification per order", func() (bool, string) {
		caps, err := countSubjects(ctx, js, catalog.StreamPayments, "payments.captured.>")
		if err != nil {
			return false, err.Error()
		}
		sent, err := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent.>")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range []map[string]uint64{caps, sent} {
			for subj, k := range m {
				if k != 1 {
					t.Fatalf("%s: %d messages, want 1", subj, k)
				}
			}
		}
		return len(caps) == n && len(sent) == n, fmt.Sprintf("%d captured, %d notified", len(caps), len(sent))
	})
}

func TestUsageErrorsExitWithTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"teleport"},
		{"up", "--bogus"},
		{"up", "extra-arg"},
		{"up", "--db", "mysql://x"},
		{"up", "--log-level", "loud"},
		{"up", "--order-timeout", "0s"},
		{"serve", "orders", "--order-timeout", "-1s"},
		{"serve"},
		{"serve", "billing"},
		{"serve", "orders", "--bogus"},
		{"up", "--stream-replicas", "3"}, // the embedded server is one node
		{"serve", "orders", "--stream-replicas", "0"},
		{"serve", "orders", "--stream-replicas", "6"},
		{"streams"},
		{"streams", "bogus"},
		{"streams", "plan", "extra-arg"},
		{"streams", "apply", "--stream-replicas", "0"},
	} {
		var stdout, stderr strings.Builder
		code := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
		if code != 2 {
			t.Errorf("choreo %v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if strings.Contains(stderr.String(), "goroutine") {
			t.Errorf("choreo %v: stack trace on stderr", args)
		}
	}
}

// A taken NATS port is a one-line error that names both ways out.
func TestUpOnATakenNATSPortNamesBothFlags(t *testing.T) {
	srv := natstest.Start(t)
	listen := strings.TrimPrefix(srv.URL, "nats://")
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"up", "--data", t.TempDir(), "--nats-listen", listen, "--http", "127.0.0.1:0", "--provider-listen", "127.0.0.1:0"},
		&stdout, &stderr, func(string) string { return "" })
	if code == 0 {
		t.Fatal("choreo up on a taken port exited 0")
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "--nats-url") || !strings.Contains(msg, "--nats-listen") || !strings.Contains(msg, listen) {
		t.Errorf("stderr %q: want one line naming %s, --nats-url and --nats-listen", msg, listen)
	}
}

// NATS_URL is exported for the tools; choreo up --nats-listen still means
// the embedded server on that address, and without the flag NATS_URL
// names the server to use.
func TestUpNATSListenBeatsNATSURLFromTheEnvironment(t *testing.T) {
	env := func(k string) string {
		if k == "NATS_URL" {
			return "nats://127.0.0.1:4222"
		}
		return ""
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-listen", "127.0.0.1:4223"}, ""},
		{nil, "nats://127.0.0.1:4222"},
		{[]string{"--nats-listen", "127.0.0.1:4223", "--nats-url", "nats://10.0.0.1:4222"}, "nats://10.0.0.1:4222"},
	} {
		c, err := parseUp(tc.args, io.Discard, env)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.natsURL != tc.want {
			t.Errorf("up %v with NATS_URL set: NATS server %q, want %q (empty: the embedded one)", tc.args, c.natsURL, tc.want)
		}
	}
}

// Two services served from one PostgreSQL URL without a search_path keep
// separate stores: each in the schema named after it, as up --db has them,
// none in public, where their outbox and inbox tables would be one.
func TestServeOnPostgresUsesTheServicesOwnSchema(t *testing.T) {
	base := freshPostgresDatabase(t, sqltest.RequirePostgres(t))
	srv := natstest.Start(t)
	for _, svc := range []string{"orders", "inventory"} {
		startServe(t, svc, map[string]string{
			"NATS_URL":         srv.URL,
			"CHOREO_DB_URL":    base,
			"CHOREO_HTTP":      "127.0.0.1:0",
			"CHOREO_LOG_LEVEL": "warn",
		})
	}
	db := sqltest.MustOpen(t, base)
	rows, err := db.Query(`SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox' ORDER BY table_schema`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var schemas []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		schemas = append(schemas, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(schemas, []string{"inventory", "orders"}) {
		t.Errorf("outbox tables in schemas %v, want [inventory orders] (one per service, none in public)", schemas)
	}
}

// A service started with weaker stream settings than the streams have (the
// defaults: a shorter duplicate window, a message limit) leaves them as
// they are: a replica started without the cluster's flags does not weaken
// what the first set up.
func TestServeNeverWeakensAStream(t *testing.T) {
	srv := natstest.Start(t)
	store := filepath.Join(t.TempDir(), "s.db") // replicas share it
	env := func(extra map[string]string) map[string]string {
		e := map[string]string{"NATS_URL": srv.URL, "CHOREO_DB_URL": store, "CHOREO_HTTP": "127.0.0.1:0", "CHOREO_LOG_LEVEL": "warn"}
		maps.Copy(e, extra)
		return e
	}
	startServe(t, "orders", env(map[string]string{"CHOREO_DUPLICATE_WINDOW": "5m", "CHOREO_STREAM_MAX_MSGS": "0"}))
	startServe(t, "orders", env(nil))
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, srv.URL)
	s, err := js.Stream(ctx, catalog.StreamOrders)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Duplicates != 5*time.Minute || cfg.MaxMsgs != -1 {
		t.Errorf("%s after a service with the defaults: window %s, max messages %d, want 5m and no limit (unchanged)", catalog.StreamOrders, cfg.Duplicates, cfg.MaxMsgs)
	}
}

// payments is ready only while its payment provider is reachable: with
// nothing where the provider should be (port 0 never accepts), /readyz is
// a 503 naming the provider and how to set it; with one, ok.
func TestServePaymentsReadyOnlyWithItsProvider(t *testing.T) {
	srv := natstest.Start(t)
	for _, tc := range []struct {
		name, provider string
		status         int
	}{
		{"no provider", "http://127.0.0.1:0", http.StatusServiceUnavailable},
		{"provider", startProvider(t), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := startServe(t, "payments", map[string]string{
				"NATS_URL": srv.URL, "CHOREO_DB_URL": filepath.Join(t.TempDir(), "payments.db"),
				"CHOREO_HTTP": "127.0.0.1:0", "CHOREO_LOG_LEVEL": "warn", "CHOREO_PROVIDER_URL": tc.provider,
			})
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("/readyz: %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status != http.StatusOK && (!strings.Contains(string(body), "payment provider") || !strings.Contains(string(body), "CHOREO_PROVIDER_URL")) {
				t.Errorf("/readyz body %s: want it to name the payment provider and how to set it", body)
			}
		})
	}
}

// Asking for help is not a mistake: every command's -h exits 0, as
// choreo -h does, and says how to use it.
func TestHelpExitsWithZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"},
		{"up", "-h"},
		{"serve", "-h"},
		{"serve", "payments", "--help"},
		{"provider", "-h"},
		{"nats-config", "-h"},
		{"trace", "-h"},
		{"replay", "-h"},
		{"dlq", "ls", "-h"},
		{"status", "-h"},
		{"events", "-h"},
		{"bench", "-h"},
		{"streams", "-h"},
		{"streams", "plan", "-h"},
		{"streams", "apply", "--help"},
	} {
		var stdout, stderr strings.Builder
		code := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
		if code != 0 || !strings.Contains(stdout.String()+stderr.String(), "Usage") && !strings.Contains(stdout.String(), "choreo") {
			t.Errorf("choreo %v: exit %d, want 0 and the usage (stdout %q, stderr %q)", args, code, stdout.String(), stderr.String())
		}
	}
}

// The payment simulator of choreo up listens where --provider-listen says
// (by default a fixed port, so the tour's provider address does not
// change between starts), and on a random port when that one is taken.
func TestUpProviderListen(t *testing.T) {
	t.Run("free", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := startUp(t, "--provider-listen", addr)
		if want := "http://" + addr; c.providerURL != want {
			t.Errorf("provider: got %q, want %q", c.providerURL, want)
		}
	})
	t.Run("taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c := startUp(t, "--provider-listen", ln.Addr().String())
		if c.providerURL == "" || c.providerURL == "http://"+ln.Addr().String() {
			t.Errorf("provider with %s taken: got %q, want another port", ln.Addr(), c.providerURL)
		}
	})
}

// choreo serve <service> -h lists under Flags only what that service uses:
// the flags of one other service (orders' deadline, payments' provider,
// notifications' SMTP) come after, as settings it accepts and ignores.
func TestServeHelpListsTheServicesOwnFlags(t *testing.T) {
	for _, m := range modules {
		t.Run(m.name, func(t *testing.T) {
			var stderr strings.Builder
			if code := run(context.Background(), []string{"serve", m.name, "-h"}, io.Discard, &stderr, func(string) string { return "" }); code != 0 {
				t.Fatalf("choreo serve %s -h: exit %d", m.name, code)
			}
			own, others, ok := strings.Cut(stderr.String(), "Settings of the other services")
			if !ok {
				t.Fatalf("choreo serve %s -h does not set the other services' settings apart:\n%s", m.name, stderr.String())
			}
			for name, service := range serviceOnlyFlags {
				flagLine := "\n  -" + name + " "
				if service == m.name && (!strings.Contains(own, flagLine) || strings.Contains(others, flagLine)) {
					t.Errorf("choreo serve %s -h: --%s is its own flag, want it under Flags", m.name, name)
				}
				if service != m.name && (strings.Contains(own, flagLine) || !strings.Contains(others, flagLine)) {
					t.Errorf("choreo serve %s -h: --%s is %s's, want it among the other services' settings", m.name, name, service)
				}
			}
			if !strings.Contains(own, "\n  -nats-url ") || !strings.Contains(own, "\n  -stream-max-age ") {
				t.Errorf("choreo serve %s -h: the flags every service has are missing:\n%s", m.name, own)
			}
		})
	}
}

// The mistake of running one service alone next to a running choreo up
// with a store of its own (`choreo serve payments --db <postgres URL>`
// beside up's SQLite files): the two payments instances would share its
// durable consumers, each handling part of every saga, and no store would
// hold a whole one. The later instance refuses to start, saying what to do;
// given the store up's payments uses, it starts.
func TestServeRefusesAStoreItsRunningSiblingsDoNotShare(t *testing.T) {
	c := startUp(t)
	env := func(db string) map[string]string {
		return map[string]string{
			"NATS_URL":         c.natsURL,
			"NATS_CREDS":       natsauth.KeyFile(embeddedCredsDir(c.dataDir), "payments"),
			"CHOREO_DB_URL":    db,
			"CHOREO_HTTP":      "127.0.0.1:0",
			"CHOREO_LOG_LEVEL": "warn",
		}
	}
	for _, b := range sqltest.Backends() {
		t.Run("another store on "+b.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
			defer cancel()
			var stderr lockedBuffer
			vars := env(b.URL(t))
			// Started after all, it is stopped at once: the test fails
			// on its exit code rather than waiting for the timeout.
			stdout := stopWhenUp{cancel}
			code := run(ctx, []string{"serve", "payments"}, stdout, &stderr, func(k string) string { return vars[k] })
			if code != 1 {
				t.Fatalf("choreo serve payments on another store than up's: exit %d, want 1; stderr:\n%s", code, stderr.String())
			}
			for _, want := range []string{"refusing to start", filepath.Join(c.dataDir, "payments.db"), "--db (CHOREO_DB_URL)", "stop that one"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
				}
			}
		})
	}
	t.Run("the same store", func(t *testing.T) {
		startServe(t, "payments", env(filepath.Join(c.dataDir, "payments.db")))
	})
}

// stopWhenUp is the stdout of a choreo serve that must not start: it
// cancels the serve once it prints that it is up.
type stopWhenUp struct{ cancel context.CancelFunc }

func (w stopWhenUp) Write(p []byte) (int, error) {
	if strings.Contains(string(p), " is up") {
		w.cancel()
	}
	return len(p), nil
}

// Two instances started in the same instant can both miss the other at
// their start-up check; each asks again once registered, and reports not
// ready, saying why, while a sibling uses another store. Here the sibling
// ignores the start-up question (as one not registered yet would) and
// answers the next: /readyz turns 503 naming both stores and what to do.
// The wait is bounded well below siblingsRecheck: the question asked right
// after registering must find it, not the periodic one.
func TestServeNotReadyWhileASiblingUsesAnotherStore(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := natstest.Connect(t, srv.URL)
	var asked atomic.Int32
	twin, err := json.Marshal(micro.Info{Type: micro.InfoResponseType, ServiceIdentity: micro.ServiceIdentity{
		Name: microName("orders"), ID: "twin", Metadata: map[string]string{metaStore: "elsewhere", metaStoreURL: "elsewhere.db"}}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.Subscribe(catalog.SiblingsSubject("orders"), func(m *nats.Msg) {
		if asked.Add(1) > 1 {
			_ = m.Respond(twin)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	base := startServe(t, "orders", map[string]string{
		"NATS_URL": srv.URL, "CHOREO_DB_URL": filepath.Join(t.TempDir(), "orders.db"),
		"CHOREO_HTTP": "127.0.0.1:0", "CHOREO_LOG_LEVEL": "warn",
	})
	ctx, cancel := context.WithTimeout(context.Background(), siblingsRecheck/2)
	defer cancel()
	waitFor(t, ctx, "/readyz to report the sibling on another store", func() (bool, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "elsewhere.db") &&
			strings.Contains(string(body), "same --db (CHOREO_DB_URL), or stop one"), fmt.Sprintf("%d %s", resp.StatusCode, body)
	})
}
