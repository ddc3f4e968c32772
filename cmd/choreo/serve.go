package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/choreo-dev/choreo/events/sqldb"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	names := make([]string, len(modules))
	for i, m := range modules {
		names[i] = m.name
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(stderr, "Usage: choreo serve <service> [flags]\n\nRuns one service alone against any NATS server; run several at once for replicas.\nservice is one of %s; choreo serve <service> -h lists its flags.\n", strings.Join(names, ", "))
		return errHelp
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: choreo serve <service>, where service is one of %s", errUsage, strings.Join(names, ", "))
	}
	m, ok := findModule(args[0])
	if !ok {
		return fmt.Errorf("%w: unknown service %q; choose one of %s", errUsage, args[0], strings.Join(names, ", "))
	}
	var natsURL, natsCredsFile, dbURL, httpAddr, logLevel string
	fs := flag.NewFlagSet("choreo serve "+m.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&natsURL, "nats-url", envOr(getenv, "NATS_URL", "nats://127.0.0.1:4222"), "NATS server (env NATS_URL)")
	fs.StringVar(&natsCredsFile, "nats-creds", getenv("NATS_CREDS"), "the service's NATS credentials: an nkey seed file (<service>.nk, from choreo up's data/nats/creds or choreo nats-config) or a JWT .creds file (env NATS_CREDS)")
	fs.StringVar(&dbURL, "db", envOr(getenv, "CHOREO_DB_URL", filepath.Join("data", m.name+".db")), "SQLite file path or postgres:// URL (env CHOREO_DB_URL)")
	fs.StringVar(&httpAddr, "http", envOr(getenv, "CHOREO_HTTP", "127.0.0.1:8080"), "HTTP listen address (env CHOREO_HTTP)")
	fs.StringVar(&logLevel, "log-level", envOr(getenv, "CHOREO_LOG_LEVEL", "info"), "debug, info, warn or error (env CHOREO_LOG_LEVEL)")
	svcFlags, err := addServiceFlags(fs, getenv, "the payment provider's API (default http://"+defaultProviderListen+", where choreo provider listens)")
	if err != nil {
		return err
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: choreo serve %s [flags]\n\nRuns the %s service alone against any NATS server. Run several at once for replicas.\n\nExample:\n  NATS_URL=nats://127.0.0.1:4222 CHOREO_DB_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable choreo serve %s --http :8081\n\nFlags:\n", m.name, m.name, m.name)
		ownFlag := func(name string) bool { s, ok := serviceOnlyFlags[name]; return !ok || s == m.name }
		printFlags(stderr, fs, ownFlag)
		fmt.Fprintf(stderr, "\nSettings of the other services, accepted and unused by %s, so that one environment can configure them all:\n", m.name)
		printFlags(stderr, fs, func(name string) bool { return !ownFlag(name) })
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log, err := newLogger(stderr, logLevel)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	opts, err := svcFlags.options()
	if err != nil {
		return err
	}
	if opts.providerURL == "" {
		opts.providerURL = "http://" + defaultProviderListen
	}
	storeURL := func(string) string { return dbURL }
	if isPostgresURL(dbURL) && !hasSearchPath(dbURL) {
		// The service's own schema, as up --db has it, so that services
		// served from one database keep separate stores; a URL that sets
		// search_path chooses for itself.
		if storeURL, err = postgresSchemas(ctx, dbURL, m.name); err != nil {
			return err
		}
	}
	sys, err := startSystem(ctx, systemConfig{
		services: []module{m},
		dbURL:    storeURL,
		natsURL:  natsURL,
		creds:    natsCreds{serviceFile: func(string) string { return natsCredsFile }},
		httpAddr: httpAddr,
		replicas: svcFlags.replicas,
		opts:     opts,
		log:      log,
		getenv:   getenv,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "choreo %s is up\n  NATS  %s\n  DB    %s\n  HTTP  http://%s\n", m.name, natsURL, sqldb.Mask(storeURL(m.name)), sys.httpAddr)
	<-ctx.Done()
	sys.stop()
	return nil
}

// hasSearchPath reports whether a PostgreSQL URL sets its search_path.
func hasSearchPath(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Query().Has("search_path")
}

// serviceOnlyFlags names the service flags that only one service uses;
// every other service flag applies to all four.
var serviceOnlyFlags = map[string]string{
	"order-timeout": "orders",
	"provider-url":  "payments",
	"smtp-addr":     "notifications",
	"smtp-from":     "notifications",
}

// printFlags prints the defaults of fs's flags that keep selects, in
// flag.PrintDefaults' format.
func printFlags(w io.Writer, fs *flag.FlagSet, keep func(name string) bool) {
	subset := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	subset.SetOutput(w)
	fs.VisitAll(func(f *flag.Flag) {
		if keep(f.Name) {
			subset.Var(f.Value, f.Name, f.Usage)
		}
	})
	subset.PrintDefaults()
}
