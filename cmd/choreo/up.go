package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/telemetry"
	"github.com/choreo-dev/choreo/payments/provider/simulator"
)

type upConfig struct {
	service    *serviceFlags
	provider   *simulator.Config
	dataDir    string
	httpAddr   string
	natsURL    string
	natsListen string
	// providerListen is where the built-in payment provider simulator
	// listens: a fixed default, so the tour's provider address is the
	// same on every start.
	providerListen string
	credsDir       string
	dbURL          string
	logLevel       string
}

func parseUp(args []string, stderr io.Writer, getenv func(string) string) (upConfig, error) {
	var c upConfig
	fs := flag.NewFlagSet("choreo up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dataDir, "data", envOr(getenv, "CHOREO_DATA", "./data"), "directory for SQLite files and the embedded NATS store (env CHOREO_DATA)")
	fs.StringVar(&c.httpAddr, "http", envOr(getenv, "CHOREO_HTTP", "127.0.0.1:8080"), "HTTP listen address for the APIs, /metrics, /healthz, /readyz (env CHOREO_HTTP)")
	fs.StringVar(&c.natsURL, "nats-url", getenv("NATS_URL"), "use this NATS server instead of starting the embedded one (env NATS_URL)")
	fs.StringVar(&c.natsListen, "nats-listen", envOr(getenv, "CHOREO_NATS_LISTEN", "127.0.0.1:4222"), "listen address of the embedded NATS server (env CHOREO_NATS_LISTEN)")
	fs.StringVar(&c.providerListen, "provider-listen", envOr(getenv, "CHOREO_PROVIDER_LISTEN", defaultProviderListen), "listen address of the payment provider simulator, when --provider-url is unset; a random port if it is taken (env CHOREO_PROVIDER_LISTEN)")
	fs.StringVar(&c.credsDir, "nats-creds-dir", getenv("CHOREO_NATS_CREDS_DIR"), "with --nats-url: a directory holding each service's NATS credentials, <service>.nk (an nkey seed) or <service>.creds (a JWT), and operator.nk or operator.creds to set up the streams (env CHOREO_NATS_CREDS_DIR); the embedded server generates its own under --data/nats/creds")
	fs.StringVar(&c.dbURL, "db", getenv("CHOREO_DB_URL"), "a postgres:// URL to keep every service in PostgreSQL, one schema each, instead of SQLite files (env CHOREO_DB_URL)")
	fs.StringVar(&c.logLevel, "log-level", envOr(getenv, "CHOREO_LOG_LEVEL", "info"), "debug, info, warn or error (env CHOREO_LOG_LEVEL)")
	var err error
	if c.service, err = addServiceFlags(fs, getenv, "use this payment provider instead of starting the simulator"); err != nil {
		return c, err
	}
	c.provider = providerFlags(fs, getenv)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: choreo up [flags]\n\nStarts the four services in one process, with an embedded NATS JetStream server\nunless --nats-url names one. Ctrl-C drains in-flight work and stops.\n\nExample:\n  choreo up --nats-url nats://127.0.0.1:4222 --http 127.0.0.1:8080\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errHelp
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["nats-listen"] && !given["nats-url"] {
		// NATS_URL is exported for the tools (the README says so); asking
		// for the embedded server on an address says which server is
		// meant, and a flag beats the environment.
		c.natsURL = ""
	}
	if c.credsDir != "" && c.natsURL == "" {
		return c, fmt.Errorf("%w: --nats-creds-dir goes with --nats-url; the embedded server keeps its credentials in %s", errUsage, embeddedCredsDir(c.dataDir))
	}
	if c.service.replicas > 1 && c.natsURL == "" {
		return c, fmt.Errorf("%w: --stream-replicas %d needs a JetStream cluster (--nats-url); the embedded server is one node", errUsage, c.service.replicas)
	}
	if c.dbURL != "" && !strings.HasPrefix(c.dbURL, "postgres://") && !strings.HasPrefix(c.dbURL, "postgresql://") {
		return c, fmt.Errorf("%w: --db must be a postgres:// URL (SQLite files go under --data)", errUsage)
	}
	return c, nil
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseUp(args, stderr, getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.logLevel)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	opts, err := cfg.service.options()
	if err != nil {
		return err
	}
	providerNote := "(external)"
	if opts.providerURL == "" {
		cfg.provider.Logger = log.With("service", "provider")
		sim, taken, err := listenSimulator(ctx, cfg.providerListen, *cfg.provider)
		if err != nil {
			return err
		}
		defer sim.Stop()
		opts.providerURL = sim.URL
		providerNote = "(simulator; switch outages with POST " + sim.URL + "/admin/mode)"
		if taken {
			providerNote = "(simulator, on a random port: " + cfg.providerListen + " is taken, choose another with --provider-listen; switch outages with POST " + sim.URL + "/admin/mode)"
		}
	}

	natsURL := cfg.natsURL
	var embedded *server.Server
	var creds natsCreds
	if natsURL == "" {
		// The embedded server runs with a NATS user per service, the
		// operator's and the client's (see catalog.NATSRoles); their
		// credentials are generated at first start and reused after.
		dir := embeddedCredsDir(cfg.dataDir)
		roles := catalog.NATSRoles()
		keys, err := natsauth.LoadOrCreateKeys(dir, roles)
		if err != nil {
			return err
		}
		users, err := natsauth.Users(roles, keys)
		if err != nil {
			return err
		}
		embedded, natsURL, err = startEmbeddedNATS(cfg.natsListen, filepath.Join(cfg.dataDir, "nats"), opts.durable,
			natsAuth{users: users, anonymous: keys[catalog.RoleClient].Public})
		if err != nil {
			return err
		}
		defer func() {
			embedded.Shutdown()
			embedded.WaitForShutdown()
		}()
		creds = natsCreds{serviceFile: func(s string) string { return natsauth.KeyFile(dir, s) }, setup: natsauth.KeyFile(dir, catalog.RoleOperator)}
	} else if cfg.credsDir != "" {
		if creds, err = credsFromDir(cfg.credsDir); err != nil {
			return err
		}
	}

	dbURL := func(service string) string { return filepath.Join(cfg.dataDir, service+".db") }
	if cfg.dbURL != "" {
		names := make([]string, len(modules))
		for i, m := range modules {
			names[i] = m.name
		}
		if dbURL, err = postgresSchemas(ctx, cfg.dbURL, names...); err != nil {
			return err
		}
	}
	sys, err := startSystem(ctx, systemConfig{
		services: modules,
		dbURL:    dbURL,
		natsURL:  natsURL,
		creds:    creds,
		httpAddr: cfg.httpAddr,
		replicas: cfg.service.replicas,
		opts:     opts,
		log:      log,
		getenv:   getenv,
	})
	if err != nil {
		return err
	}
	store := "SQLite files in " + cfg.dataDir
	if cfg.dbURL != "" {
		store = "PostgreSQL " + sqldb.Mask(cfg.dbURL) + " (one schema per service)"
	}
	natsNote := "(embedded JetStream, store in " + filepath.Join(cfg.dataDir, "nats") + ")\n  creds    " + embeddedCredsDir(cfg.dataDir) +
		" (a NATS user per service; operator.nk is the tools'; anonymous clients may send commands and read)"
	profile := "default: survives a crash of the process"
	if opts.durable {
		profile = "durable: survives an OS crash or power loss too"
	}
	if embedded == nil {
		profile += "; the external NATS server keeps its own fsync setting"
	}
	if embedded == nil {
		natsNote = "(external)"
	}
	fmt.Fprintf(stdout, `choreo is up
  NATS     %s %s
  HTTP     http://%s
  metrics  http://%s/metrics
  provider %s %s
  data     %s
  profile  %s%s
Try:  go tool nats pub cmd.inventory.restock '{"command_id":"r-1","sku":"SKU-1","quantity":100}' --server %s
Ctrl-C drains in-flight work and stops.
`, natsURL, natsNote, sys.httpAddr, sys.httpAddr, opts.providerURL, providerNote, store, profile, sys.pprofLine(), natsURL)

	<-ctx.Done()
	fmt.Fprintln(stdout, "choreo: draining…")
	sys.stop()
	fmt.Fprintln(stdout, "choreo: stopped")
	return nil
}

// listenSimulator starts the payment provider simulator on listen, or on
// a random port of the same host when listen is taken (another choreo up,
// a choreo provider): taken says so, for choreo up to print.
func listenSimulator(ctx context.Context, listen string, cfg simulator.Config) (sim *simulator.Listener, taken bool, err error) {
	sim, err = simulator.ListenAndServe(ctx, listen, cfg)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return sim, false, err
	}
	host, _, splitErr := net.SplitHostPort(listen)
	if splitErr != nil {
		return nil, false, err
	}
	sim, err = simulator.ListenAndServe(ctx, net.JoinHostPort(host, "0"), cfg)
	return sim, true, err
}

// natsAuth are the users of the embedded server: anonymous is the public
// key of the user an unauthenticated client becomes ("": none).
type natsAuth struct {
	users     []*server.NkeyUser
	anonymous string
}

// embeddedCredsDir is where the embedded server's credentials live under
// the data directory.
func embeddedCredsDir(dataDir string) string { return filepath.Join(dataDir, "nats", "creds") }

// credsFromDir returns the credentials of every service in dir:
// <name>.nk or <name>.creds, the operator's optional (it sets up the
// streams when present).
func credsFromDir(dir string) (natsCreds, error) {
	find := func(name string) string {
		for _, ext := range []string{".nk", ".creds"} {
			p := filepath.Join(dir, name+ext)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return ""
	}
	files := map[string]string{}
	for _, m := range modules {
		if files[m.name] = find(m.name); files[m.name] == "" {
			return natsCreds{}, fmt.Errorf("%w: --nats-creds-dir %s has no %s.nk or %s.creds", errUsage, dir, m.name, m.name)
		}
	}
	return natsCreds{serviceFile: func(s string) string { return files[s] }, setup: find(catalog.RoleOperator)}, nil
}

// startEmbeddedNATS starts a JetStream server listening on listen. A taken
// port is the common failure here (a standalone NATS already on 4222), so
// it gets a one-line message that names both ways out.
func startEmbeddedNATS(listen, storeDir string, durable bool, auth natsAuth) (*server.Server, string, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --nats-listen %q: %v", errUsage, listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --nats-listen %q: port is not a number", errUsage, listen)
	}
	if port != 0 {
		// The server would only log a bind failure; probe first so the
		// user gets a clear error instead of a hang.
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, "", fmt.Errorf("%s is already in use (another NATS server?): use it with --nats-url nats://%s, or start the embedded server elsewhere with --nats-listen %s:%d", listen, listen, host, port+1)
			}
			return nil, "", fmt.Errorf("embedded NATS cannot listen on %s: %w", listen, err)
		}
		ln.Close()
	} else {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "choreo",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
		// Durable: fsync every write before acknowledging it (the
		// server's sync_interval: always), so an acknowledged event
		// survives an OS crash or power loss. The default syncs every two
		// minutes, which survives any crash of the process only.
		SyncAlways: durable,
		// A user per service, the operator's, and anonymous clients as
		// the client user: they may send commands and read the streams,
		// never publish an event.
		Nkeys:      auth.users,
		NoAuthUser: auth.anonymous,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, "", fmt.Errorf("embedded NATS did not start on %s; use --nats-listen for another address or --nats-url for an existing server", listen)
	}
	addr := ns.Addr().(*net.TCPAddr)
	return ns, "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port)), nil
}

// postgresSchemas creates one schema per service in the database at base
// and returns the URL of each (its search_path set to the schema), so the
// services keep separate stores in one PostgreSQL database: in the shared
// public schema two services' outbox and inbox tables would be one.
func postgresSchemas(ctx context.Context, base string, services ...string) (func(string) string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("%w: --db: %v", errUsage, err)
	}
	db, err := sqldb.Open(ctx, base)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for _, name := range services {
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+name); err != nil {
			return nil, fmt.Errorf("create schema %s in %s: %w", name, sqldb.Mask(base), err)
		}
	}
	return func(service string) string {
		q := u.Query()
		q.Set("search_path", service)
		v := *u
		v.RawQuery = q.Encode()
		return v.String()
	}, nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	// Every record names the trace and the message it is about (see
	// telemetry.NewLogHandler), with durations as readable strings.
	return slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: telemetry.ReadableDurations}))), nil
}
