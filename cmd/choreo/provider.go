package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/choreo-dev/choreo/payments/provider/simulator"
)

// defaultProviderListen is where `choreo provider` listens, and so where
// `choreo serve payments` looks for it by default.
const defaultProviderListen = "127.0.0.1:8090"

func providerFlags(fs *flag.FlagSet, getenv func(string) string) *simulator.Config {
	cfg := &simulator.Config{}
	fs.Int64Var(&cfg.DeclineOverAmount, "decline-over", 1_000_000, "decline captures above this many minor units (0: no limit)")
	fs.DurationVar(&cfg.Latency, "latency", 0, "latency added to every call")
	fs.IntVar(&cfg.KeepKeys, "keep-keys", 20_000, "idempotency keys the simulator remembers, the oldest forgotten first, so that its memory stays flat (0: all)")
	cfg.AdminToken = getenv("CHOREO_PROVIDER_ADMIN_TOKEN")
	fs.Var((*secret)(&cfg.AdminToken), "admin-token", "require Authorization: Bearer <token> on the simulator's /admin API (env CHOREO_PROVIDER_ADMIN_TOKEN); empty: open")
	return cfg
}

// runProvider runs the payment provider simulator alone.
func runProvider(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("choreo provider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr(getenv, "CHOREO_PROVIDER_LISTEN", defaultProviderListen), "listen address (env CHOREO_PROVIDER_LISTEN)")
	logLevel := fs.String("log-level", envOr(getenv, "CHOREO_LOG_LEVEL", "info"), "debug, info, warn or error")
	cfg := providerFlags(fs, getenv)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: choreo provider [flags]

Runs the payment provider simulator: captures, cancels (refund or void) with
idempotency keys, decline rules (customer ids beginning with "decline",
amounts over --decline-over) and outage modes switched at run time.

Example:
  choreo provider --listen 127.0.0.1:8090
  curl -XPOST localhost:8090/admin/mode -H 'Content-Type: application/json' -d '{"mode":"down"}'       # normal, down, slow, error, flaky
  curl -XPOST localhost:8090/admin/mode -H 'Content-Type: application/json' -d '{"mode":"flaky","rate":0.3}'

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Logger = log.With("service", "provider")
	l, err := simulator.ListenAndServe(ctx, *listen, *cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "payment provider simulator on %s (admin: POST %s/admin/mode)\n", l.URL, l.URL)
	<-ctx.Done()
	return l.Stop()
}

// secret is a string flag whose value -h never prints, though it may come
// from the environment.
type secret string

func (s *secret) String() string     { return "" }
func (s *secret) Set(v string) error { *s = secret(v); return nil }
