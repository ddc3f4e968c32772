package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/streams"
)

const deployNATS = "../../deploy/nats"

// The files under deploy/nats are what choreo nats-config writes today:
// permissions cannot drift from the catalog unnoticed.
func TestDeployNATSConfigIsGenerated(t *testing.T) {
	files, err := natsConfigFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(deployNATS, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("deploy/nats/%s is not what choreo nats-config writes (%v): run go run ./cmd/choreo nats-config", name, err)
		}
	}
}

// natsKeysEnv makes keys with choreo nats-config --keys and puts their
// public keys in the environment, as the server's deployment does.
func natsKeysEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, _, code := runTool(t, "nats-config", "--out", t.TempDir(), "--keys", dir); code != 0 {
		t.Fatal("nats-config --keys failed")
	}
	f, err := os.Open(filepath.Join(dir, "nkeys.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			t.Setenv(k, v)
		}
	}
	return dir
}

// The shipped configurations parse with nats-server's own parser and grant
// each user exactly the permissions of choreo up's embedded server.
func TestDeployNATSConfigParses(t *testing.T) {
	natsKeysEnv(t)
	t.Setenv("NATS_SERVER_NAME", "nats-1")
	for _, name := range []string{"standalone.conf", "cluster.conf"} {
		t.Run(name, func(t *testing.T) {
			opts, err := server.ProcessConfigFile(filepath.Join(deployNATS, name))
			if err != nil {
				t.Fatal(err)
			}
			if !opts.JetStream || opts.NoAuthUser != "" {
				t.Errorf("jetstream %v, no_auth_user %q: want JetStream and no anonymous access", opts.JetStream, opts.NoAuthUser)
			}
			if name == "cluster.conf" && (opts.Cluster.Name != "choreo" || len(opts.Routes) != 3 || opts.ServerName != "nats-1") {
				t.Errorf("cluster %q, %d routes, server name %q", opts.Cluster.Name, len(opts.Routes), opts.ServerName)
			}
			roles := catalog.NATSRoles()
			if len(opts.Nkeys) != len(roles) {
				t.Fatalf("%d nkey users, want %d", len(opts.Nkeys), len(roles))
			}
			for _, r := range roles {
				key := os.Getenv(natsKeyVar(r.Name))
				found := false
				for _, u := range opts.Nkeys {
					if u.Nkey == key {
						found = true
						if !reflect.DeepEqual(u.Permissions, r.Permissions()) {
							t.Errorf("%s: permissions %+v, want %+v", r.Name, u.Permissions, r.Permissions())
						}
					}
				}
				if !found {
					t.Errorf("no user %s with key %s", r.Name, key)
				}
			}
		})
	}
}

// choreo up against a server running the shipped configuration, each
// service with its own credentials from a directory (--nats-creds-dir),
// runs the whole saga.
func TestUpAgainstTheDeployNATSConfig(t *testing.T) {
	keys := natsKeysEnv(t)
	// As the commented line of standalone.conf does: the test's client
	// is anonymous.
	ns := startDeployNATS(t, os.Getenv(natsKeyVar(catalog.RoleClient)))
	c := startUp(t, "--nats-url", ns.ClientURL(), "--nats-creds-dir", keys)
	runHappyPath(t, c)
}

// Each service's NATS user may use exactly the durable consumers its
// handlers' routes make (catalog.ConsumerOf), no fewer — or the service
// could not start — and no more; and it may publish the dead letters its
// consumer writes.
func TestServiceRolesMatchTheirConsumers(t *testing.T) {
	for _, m := range modules {
		cfg := consumerOf(t, m)
		var want []natsauth.Consumer
		for _, src := range cfg.Sources {
			want = append(want, natsauth.Consumer{Stream: src.Stream, Durable: src.Durable})
		}
		role := catalog.ServiceRole(m.name)
		if !slices.Equal(role.Consumers, want) {
			t.Errorf("%s: role's consumers %v, the service's %v", m.name, role.Consumers, want)
		}
		if !slices.Contains(role.Publish, cfg.DLQSubject+".>") {
			t.Errorf("%s: may not publish its dead letters %s.>: %v", m.name, cfg.DLQSubject, role.Publish)
		}
	}
}

// A service's user may not change a stream, so a service started against
// streams the operator set up asks for nothing: ensureStreams leaves a
// stream that already has its configuration alone, and only a stream that
// differs needs the operator.
func TestServiceUserStartsOnStreamsTheOperatorSetUp(t *testing.T) {
	keys := natsKeysEnv(t)
	ns := startDeployNATS(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(role string) (jetstream.JetStream, func() []error) {
		var mu sync.Mutex
		var errs []error
		opt, err := natsauth.CredentialsOption(natsauth.KeyFile(keys, role))
		if err != nil {
			t.Fatal(err)
		}
		_, js := natstest.Connect(t, ns.ClientURL(), opt, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		}))
		return js, func() []error { mu.Lock(); defer mu.Unlock(); return slices.Clone(errs) }
	}
	specs, sopts := catalog.StreamSpecs(catalog.DefaultRetention), streams.Options{}
	op, _ := connect(catalog.RoleOperator)
	if err := ensureStreams(ctx, op, specs, sopts); err != nil {
		t.Fatalf("operator: %v", err)
	}
	svc, violations := connect(catalog.Payments)
	if err := ensureStreams(ctx, svc, specs, sopts); err != nil {
		t.Fatalf("payments on streams set up: %v", err)
	}
	if v := violations(); len(v) > 0 {
		t.Errorf("payments asked for what it may not: %v", v)
	}
	// A stream to change is the operator's business: refused.
	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	defer tcancel()
	if err := ensureStreams(tctx, svc, specs, streams.Options{DuplicateWindow: 2 * time.Minute}); err == nil {
		t.Error("payments changed the streams' duplicate window")
	}

	// Each service alone (choreo serve), with its own credentials only,
	// runs the saga.
	data, providerURL := t.TempDir(), startProvider(t)
	urls := map[string]string{}
	for _, m := range modules {
		urls[m.name] = startServe(t, m.name, map[string]string{
			"NATS_URL": ns.ClientURL(), "NATS_CREDS": natsauth.KeyFile(keys, m.name),
			"CHOREO_DB_URL": filepath.Join(data, m.name+".db"), "CHOREO_HTTP": "127.0.0.1:0",
			"CHOREO_LOG_LEVEL": "warn", "CHOREO_PROVIDER_URL": providerURL,
		})
	}
	restock(t, ctx, op, "SKU-SV", 3)
	id := events.NewID()
	if _, err := op.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(id, "SKU-SV", 1)); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, ctx, &runningChoreo{httpURL: urls[catalog.Orders]}, id)
}

// startDeployNATS runs a server on deploy/nats/standalone.conf (its keys
// in the environment, see natsKeysEnv) on a random port, anonymous
// clients taken as noAuthUser when it is set.
func startDeployNATS(t *testing.T, noAuthUser string) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(filepath.Join(deployNATS, "standalone.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, t.TempDir(), true, true
	opts.NoAuthUser = noAuthUser
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("server not ready")
	}
	return ns
}
