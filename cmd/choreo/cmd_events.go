package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
)

// runEvents lists every command and event type: its subject, CloudEvents
// type, what it does and a `go tool nats pub` example that works as
// printed. --schema TYPE prints one type's JSON Schema.
func runEvents(_ context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	t := newToolFlags("events", "events [--schema TYPE] [--json]",
		"choreo events --schema orders.place", stderr, getenv)
	var schemaOf string
	t.fs.StringVar(&schemaOf, "schema", "", "print the JSON Schema of TYPE: a short name (orders.placed), a CloudEvents type (choreo.orders.placed.v1) or a command subject (cmd.orders.place)")
	pos, err := t.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: choreo events takes no arguments; did you mean --schema %s?", errUsage, pos[0])
	}
	if schemaOf != "" {
		ti, ok := catalog.LookupType(schemaOf)
		if !ok {
			return fmt.Errorf("%w: unknown type %q; run choreo events for the list", errUsage, schemaOf)
		}
		_, err := stdout.Write(ti.Schema())
		return err
	}
	types := catalog.Types()
	if t.json {
		type jsonType struct {
			catalog.TypeInfo
			Schema json.RawMessage `json:"schema"`
			Pub    string          `json:"pub"`
		}
		out := make([]jsonType, len(types))
		for i, ti := range types {
			out[i] = jsonType{TypeInfo: ti, Schema: ti.Schema(), Pub: pubCommand(ti)}
		}
		return writeJSONLines(stdout, out)
	}
	fmt.Fprintf(stdout, "Commands go to the COMMANDS stream; the services consume them. Events are published by the\n"+
		"services themselves: publishing one by hand is for testing, and takes the operator's key of a\n"+
		"local choreo up (--nkey data/nats/creds/operator.nk; no other client may). Every example acts\n"+
		"on order ord-1001: the commands restock its SKU, place it and cancel it; an event published by\n"+
		"hand reaches the services as if that order's saga had published it. Add --schema TYPE for a\n"+
		"type's JSON Schema.\n")
	for _, ti := range types {
		fmt.Fprintln(stdout)
		fmt.Fprintf(stdout, "%s (%s)\n", ti.Name, ti.Kind)
		tb := newTable(stdout, "  subject", ti.Subject+"   (stream "+ti.Stream+")")
		if ti.CloudEventsType != "" {
			tb.row("  type", ti.CloudEventsType)
		}
		tb.row("  go type", ti.GoType)
		tb.row("  dataschema", ti.DataSchema)
		tb.row("  published by", ti.Publisher)
		consumers := strings.Join(ti.Consumers, ", ")
		if consumers == "" {
			consumers = "nobody (for observers)"
		}
		tb.row("  consumed by", consumers)
		tb.row("  does", ti.Description)
		tb.row("  example effect", ti.Effect)
		if err := tb.flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  %s\n", pubCommand(ti))
	}
	return nil
}

// pubCommand is the copy-paste example: a nats CLI publish of the example
// body on the example subject. The bodies never contain a single quote.
func pubCommand(ti catalog.TypeInfo) string {
	nats := "go tool nats "
	if ti.Kind == catalog.KindEvent {
		// Only its service or the operator may publish an event: the
		// example uses the operator's key of a local choreo up.
		nats += "--nkey " + filepath.ToSlash(natsauth.KeyFile(embeddedCredsDir("data"), catalog.RoleOperator)) + " "
	}
	return nats + "pub " + ti.ExampleSubject + " '" + strings.TrimSpace(string(ti.Example)) + "'"
}
