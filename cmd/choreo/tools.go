package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
)

// toolFlags is what every operator tool (trace, replay, dlq, status,
// events) accepts.
type toolFlags struct {
	fs      *flag.FlagSet
	natsURL string
	// creds is the credentials file given (--nats-creds, NATS_CREDS);
	// defaultCreds the operator's of a local choreo up, used when none is
	// given and it exists.
	creds        string
	defaultCreds string
	json         bool
	// refused is the last permissions violation the server reported on
	// the tool's connection (see explain).
	refused atomic.Pointer[error]
	// onRefused, when set, is called once the server refuses something
	// on the tool's connection: a tool waiting for an answer that will
	// not come can stop waiting.
	onRefused func()
}

// newToolFlags returns a flag set for `choreo <name>` whose -h prints the
// synopsis, an example and the flags. Add the tool's own flags to t.fs.
func newToolFlags(name, synopsis, example string, stderr io.Writer, getenv func(string) string) *toolFlags {
	t := &toolFlags{fs: flag.NewFlagSet("choreo "+name, flag.ContinueOnError)}
	t.fs.SetOutput(stderr)
	t.fs.StringVar(&t.natsURL, "nats-url", envOr(getenv, "NATS_URL", "nats://127.0.0.1:4222"), "NATS server (env NATS_URL)")
	t.defaultCreds = natsauth.KeyFile(embeddedCredsDir(envOr(getenv, "CHOREO_DATA", "./data")), catalog.RoleOperator)
	t.fs.StringVar(&t.creds, "nats-creds", getenv("NATS_CREDS"), "NATS credentials: an nkey seed file or a JWT .creds file (env NATS_CREDS; default "+t.defaultCreds+", the operator's of a local choreo up, when it exists)")
	t.fs.BoolVar(&t.json, "json", false, "one JSON object per line, for scripts")
	t.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: choreo %s\n\nExample:\n  %s\n\nFlags:\n", synopsis, example)
		t.fs.PrintDefaults()
	}
	return t
}

// parse parses args; -h and bad flags become usage errors (exit 2). Flags
// may come before or after positional arguments.
func (t *toolFlags) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := t.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if t.fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, t.fs.Arg(0))
		args = t.fs.Args()[1:]
	}
}

// explain adds to err what the server refused on the tool's connection,
// if it refused anything: a publish the tool's user may not make fails
// only with a timeout otherwise.
func (t *toolFlags) explain(err error) error {
	p := t.refused.Load()
	if err == nil || p == nil {
		return err
	}
	return fmt.Errorf("%w: the server refused: %v (only a service and the operator may publish its events: point --nats-creds / NATS_CREDS at the operator's credentials)", err, *p)
}

// connect connects to the NATS server for a short-lived tool: no endless
// reconnecting, and one clear line when nothing answers.
func (t *toolFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("choreo-tool"), nats.Timeout(5 * time.Second), nats.MaxReconnects(0),
		// The server answers a refused publish with an asynchronous
		// error, and the publish itself only times out: keep the error
		// for explain instead of printing it.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				t.refused.Store(&err)
				if t.onRefused != nil {
					t.onRefused()
				}
			}
		})}
	creds, defaulted := t.creds, false
	if creds == "" {
		// A local choreo up writes the operator's credentials here: with
		// them the tools may do everything (dlq retry republishes an
		// event, which only its service or the operator may publish).
		if _, err := os.Stat(t.defaultCreds); err == nil {
			creds, defaulted = t.defaultCreds, true
		}
	}
	connect := func(creds string) (*nats.Conn, error) {
		if creds == "" {
			return nats.Connect(t.natsURL, opts...)
		}
		opt, err := natsauth.CredentialsOption(creds)
		if err != nil {
			return nil, err
		}
		return nats.Connect(t.natsURL, append(opts, opt)...)
	}
	nc, err := connect(creds)
	if err != nil && defaulted && errors.Is(err, nats.ErrAuthorization) {
		// The local credentials are not this server's: try as anyone.
		nc, err = connect("")
	}
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) {
			return nil, nil, fmt.Errorf("NATS at %s refused the credentials %s (%v): point --nats-creds / NATS_CREDS at yours", t.natsURL, orNone(creds), err)
		}
		return nil, nil, fmt.Errorf("no NATS server at %s (%v): start one with choreo up, or point --nats-url / NATS_URL at yours", t.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
