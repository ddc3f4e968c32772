package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events/streams"
)

const streamsUsage = `Usage: choreo streams plan|apply [flags]

Sets up choreo's streams (ORDERS, INVENTORY, PAYMENTS, NOTIFICATIONS, COMMANDS,
DLQ) as the operator: the replicas, limits and subjects the flags declare.

  choreo streams plan     prints, per stream, what apply would create or change
  choreo streams apply    prints the same and applies it (--yes: without it, nothing
                          changes and the command says so)

An existing stream's replicas, duplicate window and limits are never lowered
(they are kept, and the plan says so) unless --allow-lower is given; every
change that lowers one is marked. A service at start creates a missing stream
but never changes one this way.

Run "choreo streams plan -h" for the flags.
`

func runStreams(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, streamsUsage)
		return errUsage
	}
	switch args[0] {
	case "plan", "apply":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, streamsUsage)
		return errHelp
	default:
		return fmt.Errorf("%w: unknown streams command %q: want plan or apply (choreo streams -h)", errUsage, args[0])
	}
	cmd := args[0]
	tf := newToolFlags("streams "+cmd, "streams "+cmd+" [--stream-replicas N] [--stream-max-* …] [--allow-lower] [--yes] [--json]",
		"choreo streams "+cmd+" --stream-replicas 3 --nats-url nats://nats-0:4222,nats://nats-1:4222 --nats-creds secrets/nats/operator.nk",
		stderr, getenv)
	var sf streamFlags
	e := &envFlags{fs: tf.fs, getenv: getenv}
	addStreamFlags(e, &sf)
	if e.err != nil {
		return e.err
	}
	var allowLower, yes bool
	tf.fs.BoolVar(&allowLower, "allow-lower", false, "lower an existing stream's replicas, duplicate window or limits where they are stronger than declared (otherwise they are kept)")
	if cmd == "apply" {
		tf.fs.BoolVar(&yes, "yes", false, "apply the changes printed; without it apply changes nothing")
	}
	pos, err := tf.parse(args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: choreo streams %s takes no arguments, got %q", errUsage, cmd, pos)
	}
	if err := sf.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A change the user may not make is refused asynchronously, and the
	// request would wait for its timeout: stop at the refusal instead.
	tf.onRefused = cancel
	nc, js, err := tf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()

	specs, opts := sf.declared()
	lowering := streams.KeepStronger
	if allowLower {
		lowering = streams.AllowLower
	}
	plans, err := streams.Plan(ctx, js, specs, opts, lowering)
	if err != nil {
		return tf.explain(err)
	}
	if err := printStreamPlans(stdout, plans, tf.json); err != nil {
		return err
	}
	changing := 0
	for _, p := range plans {
		if p.Action != streams.Unchanged {
			changing++
		}
	}
	switch {
	case cmd == "plan":
		return nil
	case changing == 0:
		if !tf.json {
			fmt.Fprintln(stdout, "Nothing to change.")
		}
		return nil
	case !yes:
		return fmt.Errorf("%w: nothing applied: run choreo streams apply again with --yes to make the changes above", errUsage)
	}
	if err := streams.Apply(ctx, js, plans); err != nil {
		return tf.explain(err)
	}
	if !tf.json {
		fmt.Fprintf(stdout, "Applied: %d of %d streams created or changed.\n", changing, len(plans))
	}
	return nil
}

// streamPlanJSON is one stream's plan as --json prints it; the field names
// are a stable interface for scripts.
type streamPlanJSON struct {
	Stream  string         `json:"stream"`
	Action  streams.Action `json:"action"`
	Changes []changeJSON   `json:"changes"`
	Kept    []keptJSON     `json:"kept"`
}

type changeJSON struct {
	Setting string `json:"setting"`
	From    string `json:"from,omitempty"`
	To      string `json:"to"`
	Lowers  bool   `json:"lowers"`
}

type keptJSON struct {
	Setting  string `json:"setting"`
	Kept     string `json:"kept"`
	Declared string `json:"declared"`
}

// printStreamPlans writes what each plan does: the stream and its action,
// then a line per setting created or changed, marking a change that
// lowers, and a line per stronger setting kept.
func printStreamPlans(w io.Writer, plans []streams.StreamPlan, asJSON bool) error {
	if asJSON {
		rows := make([]streamPlanJSON, len(plans))
		for i, p := range plans {
			rows[i] = streamPlanJSON{Stream: p.Stream, Action: p.Action, Changes: []changeJSON{}, Kept: []keptJSON{}}
			for _, c := range p.Changes {
				rows[i].Changes = append(rows[i].Changes, changeJSON(c))
			}
			for _, k := range p.Kept {
				rows[i].Kept = append(rows[i].Kept, keptJSON(k))
			}
		}
		return writeJSONLines(w, rows)
	}
	for _, p := range plans {
		fmt.Fprintf(w, "%s: %s\n", p.Stream, p.Action)
		for _, c := range p.Changes {
			var line strings.Builder
			fmt.Fprintf(&line, "  %-18s ", c.Setting)
			if p.Action != streams.Create {
				fmt.Fprintf(&line, "%s -> ", orNothing(c.From))
			}
			line.WriteString(orNothing(c.To))
			if c.Lowers {
				line.WriteString("   (lowers it)")
			}
			fmt.Fprintln(w, line.String())
		}
		for _, k := range p.Kept {
			fmt.Fprintf(w, "  %-18s %s kept, stronger than the declared %s (--allow-lower lowers it)\n", k.Setting, k.Kept, k.Declared)
		}
	}
	return nil
}

func orNothing(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
