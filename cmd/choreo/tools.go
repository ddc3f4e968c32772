package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// toolFlags is what every operator tool (trace, replay, dlq, status,
// events) accepts.
type toolFlags struct {
	fs      *flag.FlagSet
	natsURL string
	json    bool
}

// newToolFlags returns a flag set for `choreo <name>` whose -h prints the
// synopsis, an example and the flags. Add the tool's own flags to t.fs.
func newToolFlags(name, synopsis, example string, stderr io.Writer, getenv func(string) string) *toolFlags {
	t := &toolFlags{fs: flag.NewFlagSet("choreo "+name, flag.ContinueOnError)}
	t.fs.SetOutput(stderr)
	t.fs.StringVar(&t.natsURL, "nats-url", envOr(getenv, "NATS_URL", "nats://127.0.0.1:4222"), "NATS server (env NATS_URL)")
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
				return nil, errUsage
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

// connect connects to the NATS server for a short-lived tool: no endless
// reconnecting, and one clear line when nothing answers.
func (t *toolFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(t.natsURL, nats.Name("choreo-tool"), nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil, nil, fmt.Errorf("no NATS server at %s (%v): start one with choreo up, or point --nats-url / NATS_URL at yours", t.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
