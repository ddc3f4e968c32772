// Command choreo runs the choreo order-fulfilment system and its tools.
//
//	choreo up                 all four services, an embedded NATS server, SQLite under ./data
//	choreo serve <service>    one service, configured from the environment
//	choreo provider           the payment provider simulator
//	choreo nats-config        the NATS server configuration under deploy/nats
//	choreo trace|replay|dlq|status|events|streams   the operator's tools
//
// Run "choreo help" for the flags of each command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// errUsage marks a command-line mistake: exit code 2.
var errUsage = errors.New("usage")

// errHelp means the help a command was asked for (-h) has been printed:
// exit code 0, as for choreo -h.
var errHelp = errors.New("help")

const usage = `choreo: event-driven order fulfilment on NATS JetStream

Usage:
  choreo up [flags]                 start everything in one process (embedded NATS, SQLite under ./data)
  choreo serve <service> [flags]    run one service: orders, inventory, payments or notifications
  choreo provider [flags]           run the payment provider simulator
  choreo nats-config [flags]        write the NATS server configuration: a user per service and its permissions

Operator tools (each takes --nats-url, default $NATS_URL or nats://127.0.0.1:4222, --nats-creds,
default $NATS_CREDS or the operator's credentials of a local choreo up, and --json):
  choreo trace <order-id>           the saga's timeline across every stream, DLQ included (--follow)
  choreo replay --stream S ...      a stream's events from a sequence or time; --into <service> re-runs its handlers offline
  choreo dlq ls|show|retry|discard  the dead-letter workflow
  choreo status                     streams, consumers, outbox backlogs, DLQ depth
  choreo events                     every command and event type, its schema and a nats pub example
  choreo bench                      load the saga; sagas/s, latency, CPU and memory beside the machine's limits
  choreo streams plan|apply         create the streams or change their replicas and limits (--yes; --allow-lower)

  choreo help                       show this help

Run "choreo <command> -h" for the flags of a command.
`

// run is the whole program behind main, so tests can run it as a user
// would: arguments in, output out, an exit code back.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "up":
		err = runUp(ctx, args[1:], stdout, stderr, getenv)
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr, getenv)
	case "provider":
		err = runProvider(ctx, args[1:], stdout, stderr, getenv)
	case "trace":
		err = runTrace(ctx, args[1:], stdout, stderr, getenv)
	case "replay":
		err = runReplay(ctx, args[1:], stdout, stderr, getenv)
	case "dlq":
		err = runDlq(ctx, args[1:], stdout, stderr, getenv)
	case "status":
		err = runStatus(ctx, args[1:], stdout, stderr, getenv)
	case "events":
		err = runEvents(ctx, args[1:], stdout, stderr, getenv)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr, getenv)
	case "nats-config":
		err = runNATSConfig(ctx, args[1:], stdout, stderr, getenv)
	case "streams":
		err = runStreams(ctx, args[1:], stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "choreo: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		if msg := err.Error(); msg != errUsage.Error() {
			fmt.Fprintln(stderr, "choreo:", msg)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "choreo:", err)
		return 1
	}
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
