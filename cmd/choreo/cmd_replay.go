package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/history"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/payments/provider"
)

const replayExample = `choreo replay --stream ORDERS --since 10m --subject 'orders.*.0193b3c4-0000-7000-8000-000000000001' --into inventory --db data/inventory.db`

// replayed is one stream message as replay prints it.
type replayed struct {
	Stream   string          `json:"stream"`
	Sequence uint64          `json:"sequence"`
	Time     time.Time       `json:"time"`
	Subject  string          `json:"subject"`
	Type     string          `json:"type,omitempty"`
	ID       string          `json:"id,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	// With --into: what the service's consumer made of it — handled,
	// duplicate (the copied store had handled it before), retried,
	// dead_lettered, or not_consumed (the service does not read it) —
	// and why, for all but handled and duplicate.
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`

	header nats.Header // the original headers, for the handlers
}

// stateChange is a row of the service's own tables that the replay
// added, changed or removed in the scratch store.
type stateChange struct {
	Kind   string            `json:"kind"` // "state_change"
	Table  string            `json:"table"`
	Change string            `json:"change"` // added, changed, removed
	Before map[string]string `json:"before,omitempty"`
	After  map[string]string `json:"after,omitempty"`
}

// wouldPublish is an event the service would have published.
type wouldPublish struct {
	Subject string          `json:"subject"`
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	t := newToolFlags("replay", "replay --stream NAME [--from-seq N | --since 10m|RFC3339] [--subject FILTER] [--into SERVICE [--db FILE]]",
		replayExample, stderr, getenv)
	stream := t.fs.String("stream", "", "the streams to read, comma-separated, merged by time: ORDERS, INVENTORY, PAYMENTS, NOTIFICATIONS, COMMANDS, DLQ (default with --into: every stream the service consumes)")
	fromSeq := t.fs.Uint64("from-seq", 0, "start at this stream sequence")
	since := t.fs.String("since", "", "start at this time: a duration ago (10m, 2h) or an RFC 3339 time")
	subject := t.fs.String("subject", "", "only messages whose subject matches one of these comma-separated filters (NATS wildcards)")
	into := t.fs.String("into", "", "re-run this service's handlers on the messages against a scratch store, publishing nothing and calling nothing outside (payments gets the provider answers recorded on PAYMENTS)")
	dbFile := t.fs.String("db", "", "with --into: start the scratch store as a copy of this SQLite file (default: empty)")
	timeout := t.fs.Duration("order-timeout", 2*time.Minute, "with --into orders: the deadline the live service runs with")
	pos, err := t.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	case *stream == "" && *into == "":
		return fmt.Errorf("%w: --stream is required without --into, e.g. %s", errUsage, replayExample)
	case *fromSeq > 0 && *since != "":
		return fmt.Errorf("%w: give --from-seq or --since, not both", errUsage)
	case *dbFile != "" && *into == "":
		return fmt.Errorf("%w: --db only makes sense with --into", errUsage)
	}
	start, err := parseSince(*since, time.Now())
	if err != nil {
		return fmt.Errorf("%w: --since %q: %v", errUsage, *since, err)
	}
	var target *module
	if *into != "" {
		m, ok := findModule(*into)
		if !ok {
			return fmt.Errorf("%w: --into %q: no such service", errUsage, *into)
		}
		target = &m
	}

	names := splitList(*stream)
	if len(names) == 0 && target != nil {
		names = consumedStreams(*target)
	}
	if len(names) > 1 && *fromSeq > 0 {
		return fmt.Errorf("%w: --from-seq names a position in one stream; give one --stream", errUsage)
	}
	filters := splitList(*subject)

	nc, js, err := t.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	var msgs []replayed
	for _, name := range names {
		if h, err := history.StreamReach(ctx, js, name); err == nil && h.Dropped(*fromSeq, start) {
			fmt.Fprintf(stderr, "note: older messages are gone: %s\n", h)
		}
		got, err := readStream(ctx, js, name, *fromSeq, start, filters)
		if err != nil {
			return err
		}
		for _, m := range got {
			if len(filters) == 0 || slices.ContainsFunc(filters, func(f string) bool { return consumer.MatchSubject(f, m.Subject) }) {
				msgs = append(msgs, m)
			}
		}
	}
	// Streams are merged in the order the server stored their messages:
	// the order the live services could have seen them in.
	slices.SortStableFunc(msgs, func(a, b replayed) int { return a.Time.Compare(b.Time) })
	if target == nil {
		return printReplayed(stdout, t.json, msgs, false, nil)
	}
	opts := serviceOptions{offline: true, orderDeadline: *timeout}
	var recorded *provider.Recorded
	if target.name == catalog.Payments {
		if recorded, err = recordedPayments(ctx, js); err != nil {
			return err
		}
		opts.offlineProvider = recorded
	}
	out, changes, err := replayInto(ctx, *target, *dbFile, msgs, opts)
	if err != nil {
		return err
	}
	if err := printReplayed(stdout, t.json, msgs, true, out); err != nil {
		return err
	}
	if recorded != nil {
		if err := printUnanswered(stdout, t.json, recorded.Unanswered()); err != nil {
			return err
		}
	}
	return printChanges(stdout, t.json, changes)
}

// recordedPayments returns the payment provider a replay into payments
// runs with. It never reaches the real provider: it answers each call
// with the live provider's answer, read from the payments events of the
// order on the PAYMENTS stream, so that the replayed service decides as
// the live one did — a capture the live provider declined is declined
// again, never charged and refunded.
func recordedPayments(ctx context.Context, js jetstream.JetStream) (*provider.Recorded, error) {
	stream, err := js.Stream(ctx, catalog.StreamPayments)
	if err != nil {
		return nil, fmt.Errorf("stream %s, where the provider's answers are recorded: %w", catalog.StreamPayments, err)
	}
	return provider.NewRecorded(func(ctx context.Context, subject string) ([]byte, bool, error) {
		// One event per subject and order: the last message is the one.
		msg, err := stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("stream %s: %w", catalog.StreamPayments, err)
		}
		return msg.Data, true, nil
	})
}

// unansweredCall is a provider call the replay could not answer from
// the streams.
type unansweredCall struct {
	Kind      string `json:"kind"` // "unanswered_call"
	Operation string `json:"operation"`
	OrderID   string `json:"order_id"`
	Reason    string `json:"reason"`
}

// printUnanswered says plainly which provider calls the replay could not
// answer as the live run did, since their answer is on no stream.
func printUnanswered(w io.Writer, asJSON bool, calls []provider.UnansweredCall) error {
	if asJSON {
		items := make([]unansweredCall, len(calls))
		for i, c := range calls {
			items[i] = unansweredCall{Kind: "unanswered_call", Operation: c.Operation, OrderID: c.OrderID, Reason: c.Err.Error()}
		}
		return writeJSONLines(w, items)
	}
	if len(calls) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nprovider answers not on record for %d call(s): the replay cannot know them, called no provider, and the service would retry\n", len(calls))
	fmt.Fprintln(w, "(the live call failed — an outage, a timeout —, its answer was lost before it was recorded, or PAYMENTS no longer holds it):")
	for _, c := range calls {
		fmt.Fprintf(w, "  %s of order %s: %v\n", c.Operation, c.OrderID, c.Err)
	}
	return nil
}

// parseSince reads "10m" (that long before now) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration ago cannot be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want a duration like 10m or a time like 2026-11-25T14:00:00Z")
	}
	return t, nil
}

// readStream reads the stream's messages from a sequence or a time up to
// its last sequence at the start, a page at a time, through
// events/history: nothing is acknowledged, no consumer is left behind.
// The server keeps only messages on the subject filters (none: all), so
// the others never cross the wire.
func readStream(ctx context.Context, js jetstream.JetStream, name string, fromSeq uint64, since time.Time, filters []string) ([]replayed, error) {
	reader, err := history.NewReader(js)
	if err != nil {
		return nil, err
	}
	var out []replayed
	_, err = reader.Read(ctx, history.Query{Stream: name, FromSeq: fromSeq, Since: since, Subjects: filters}, func(m history.Message) error {
		r := replayed{Stream: m.Stream, Sequence: m.Sequence, Time: m.Time, Subject: m.Subject,
			Data: json.RawMessage(m.Data), header: m.Header}
		if env, err := events.DecodeMessage(m.Header, m.Data, m.Time); err == nil {
			r.Type, r.ID = env.Type, env.ID
		}
		if !json.Valid(m.Data) {
			r.Data, _ = json.Marshal(string(m.Data))
		}
		out = append(out, r)
		return nil
	})
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("no stream %q (choreo has ORDERS, INVENTORY, PAYMENTS, NOTIFICATIONS, COMMANDS and DLQ)", name)
	case errors.Is(err, history.ErrPastEnd):
		h, herr := history.StreamReach(ctx, js, name)
		if herr != nil {
			return nil, err
		}
		return nil, fmt.Errorf("stream %s ends at sequence %d; --from-seq %d is past the end", name, h.LastSeq, fromSeq)
	case err != nil:
		return nil, fmt.Errorf("replay: %w", err)
	}
	return out, nil
}

// replayInto runs the service's real handlers on msgs against a scratch
// SQLite store — empty, or a consistent copy of dbFile — with every
// external system replaced by an in-process stand-in and no relay: the
// events the handlers produce stay in the scratch outbox, where they are
// read back. Nothing is published.
func replayInto(ctx context.Context, m module, dbFile string, msgs []replayed, opts serviceOptions) ([]wouldPublish, []stateChange, error) {
	dir, err := os.MkdirTemp("", "choreo-replay-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	scratch := filepath.Join(dir, m.name+".db")
	if dbFile != "" {
		if _, err := os.Stat(dbFile); err != nil {
			return nil, nil, fmt.Errorf("--db %s: %w", dbFile, err)
		}
		src, err := sqldb.Open(ctx, dbFile)
		if err != nil {
			return nil, nil, err
		}
		// VACUUM INTO takes a consistent snapshot, even of a database a
		// running service is writing to (WAL included).
		_, err = src.ExecContext(ctx, "VACUUM INTO ?", scratch)
		src.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("copy %s: %w", dbFile, err)
		}
	}
	db, err := sqldb.Open(ctx, scratch)
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	if err := m.migrate(ctx, db); err != nil {
		return nil, nil, err
	}
	built, err := m.build(db, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		return nil, nil, err
	}
	before, err := built.outbox.Pending(ctx)
	if err != nil {
		return nil, nil, err
	}
	stateBefore, err := snapshotTables(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, p := range before {
		seen[p.EventID] = true
	}
	// The consumer as the live service runs it, minus the server: its
	// inbox tells a message the copied store handled before (a
	// duplicate), its rules a retry from a dead letter.
	cfg := built.consumer
	cfg.Outbox = built.outbox
	for i := range msgs {
		r := &msgs[i]
		src, ok := sourceOf(cfg, r.Stream, r.Subject)
		if !ok {
			r.Outcome, r.Reason = outcomeNotConsumed, m.name+" does not read this subject"
			continue
		}
		o := consumer.HandleOffline(ctx, cfg, &consumer.Message{Subject: r.Subject, Data: []byte(r.Data), Header: r.header,
			Stream: r.Stream, Sequence: r.Sequence, Delivered: 1, Time: r.Time, Consumer: src.Durable})
		r.Outcome = string(o.Result)
		if o.Err != nil {
			r.Reason = o.Err.Error()
		}
	}
	after, err := built.outbox.Pending(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []wouldPublish
	for _, p := range after {
		if seen[p.EventID] {
			continue // was already waiting in the copied database
		}
		w := wouldPublish{Subject: p.Subject, ID: p.EventID, Data: json.RawMessage(p.Data)}
		if env, err := events.Decode(p.Data); err == nil {
			w.Type, w.Data = env.Type, env.Data
		}
		out = append(out, w)
	}
	stateAfter, err := snapshotTables(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	return out, diffTables(stateBefore, stateAfter), nil
}

// outcomeNotConsumed is the outcome of a replayed message the service's
// consumer would never have received.
const outcomeNotConsumed = "not_consumed"

// consumedStreams lists the streams a service reads, in a stable order.
func consumedStreams(m module) []string {
	built, err := m.build(nil, slog.New(slog.DiscardHandler), serviceOptions{offline: true})
	if err != nil {
		return nil
	}
	var names []string
	for _, s := range built.consumer.Sources {
		if !slices.Contains(names, s.Stream) {
			names = append(names, s.Stream)
		}
	}
	return names
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// sourceOf returns the durable consumer of the service that would
// receive a message on subject in stream, if any does.
func sourceOf(c consumer.Config, stream, subject string) (consumer.Source, bool) {
	for _, s := range c.Sources {
		if s.Stream != stream {
			continue
		}
		if len(s.FilterSubjects) == 0 || slices.ContainsFunc(s.FilterSubjects, func(f string) bool { return consumer.MatchSubject(f, subject) }) {
			return s, true
		}
	}
	return consumer.Source{}, false
}

// printReplayed prints the messages; with --into (into true), each
// message's outcome and the events the service would have published —
// the section is there, saying so, when there are none.
func printReplayed(w io.Writer, asJSON bool, msgs []replayed, into bool, out []wouldPublish) error {
	if asJSON {
		if err := writeJSONLines(w, msgs); err != nil {
			return err
		}
		type published struct {
			Kind string `json:"kind"`
			wouldPublish
		}
		items := make([]published, len(out))
		for i, o := range out {
			items[i] = published{Kind: "would_publish", wouldPublish: o}
		}
		return writeJSONLines(w, items)
	}
	if len(msgs) == 0 {
		fmt.Fprintln(w, "no messages match")
	} else {
		header := []string{"STREAM:SEQ", "TIME", "SUBJECT", "TYPE"}
		if into {
			header = append(header, "OUTCOME")
		}
		tb := newTable(w, header...)
		for _, m := range msgs {
			cells := []any{fmt.Sprintf("%s:%d", m.Stream, m.Sequence), m.Time.Format("2006-01-02T15:04:05.000Z"), m.Subject, orDash(m.Type)}
			if into {
				outcome := m.Outcome
				if m.Reason != "" {
					outcome += ": " + m.Reason
				}
				cells = append(cells, outcome)
			}
			tb.row(cells...)
		}
		if err := tb.flush(); err != nil {
			return err
		}
	}
	if !into {
		return nil
	}
	if len(out) == 0 {
		fmt.Fprintln(w, "\nwould publish nothing (nothing was published)")
		return nil
	}
	fmt.Fprintf(w, "\nwould publish %d event(s) (nothing was published):\n", len(out))
	tb := newTable(w, "SUBJECT", "TYPE", "ID", "DATA")
	for _, o := range out {
		tb.row(o.Subject, o.Type, o.ID, string(o.Data))
	}
	return tb.flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// platformTables hold delivery bookkeeping (and the HTTP API's stored
// responses, see events/idempotency), not the service's state.
var platformTables = map[string]bool{"outbox": true, "inbox": true, "schema_migrations": true, "sqlite_sequence": true, "idempotent_responses": true}

// snapshotTables reads every row of the service's own tables in the
// scratch SQLite store, keyed by table and rowid.
func snapshotTables(ctx context.Context, db *sqldb.DB) (map[string]map[int64]map[string]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("replay: list tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		if !platformTables[name] {
			tables = append(tables, name)
		}
	}
	rows.Close()
	out := map[string]map[int64]map[string]string{}
	for _, table := range tables {
		rs, err := db.QueryContext(ctx, `SELECT rowid, * FROM "`+table+`"`)
		if err != nil {
			return nil, fmt.Errorf("replay: read %s: %w", table, err)
		}
		cols, _ := rs.Columns()
		out[table] = map[int64]map[string]string{}
		for rs.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				rs.Close()
				return nil, err
			}
			row := map[string]string{}
			for i, c := range cols[1:] {
				v := vals[i+1]
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				row[c] = fmt.Sprint(v)
			}
			out[table][vals[0].(int64)] = row
		}
		rs.Close()
	}
	return out, nil
}

// diffTables lists the rows added, changed and removed between two
// snapshots, table by table in name order.
func diffTables(before, after map[string]map[int64]map[string]string) []stateChange {
	var out []stateChange
	tables := slices.Sorted(maps.Keys(after))
	for _, table := range tables {
		b, a := before[table], after[table]
		ids := slices.Sorted(maps.Keys(a))
		for _, id := range ids {
			switch old, ok := b[id]; {
			case !ok:
				out = append(out, stateChange{Kind: "state_change", Table: table, Change: "added", After: a[id]})
			case !maps.Equal(old, a[id]):
				out = append(out, stateChange{Kind: "state_change", Table: table, Change: "changed", Before: old, After: a[id]})
			}
		}
		for _, id := range slices.Sorted(maps.Keys(b)) {
			if _, ok := a[id]; !ok {
				out = append(out, stateChange{Kind: "state_change", Table: table, Change: "removed", Before: b[id]})
			}
		}
	}
	return out
}

func printChanges(w io.Writer, asJSON bool, changes []stateChange) error {
	if asJSON {
		return writeJSONLines(w, changes)
	}
	if len(changes) == 0 {
		fmt.Fprintln(w, "\nstate would not change in the scratch store")
		return nil
	}
	fmt.Fprintf(w, "\nstate would change in %d row(s) of the scratch store:\n", len(changes))
	for _, c := range changes {
		switch c.Change {
		case "added":
			fmt.Fprintf(w, "  + %s %s\n", c.Table, formatRow(c.After, nil))
		case "removed":
			fmt.Fprintf(w, "  - %s %s\n", c.Table, formatRow(c.Before, nil))
		default:
			fmt.Fprintf(w, "  ~ %s %s\n", c.Table, formatRow(c.After, c.Before))
		}
	}
	return nil
}

// formatRow prints a row's columns in name order; with before, only the
// columns that changed, as old→new.
func formatRow(row, before map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(row)) {
		switch {
		case before == nil:
			parts = append(parts, k+"="+row[k])
		case before[k] != row[k]:
			parts = append(parts, k+"="+before[k]+"→"+row[k])
		case k == "sku" || strings.HasSuffix(k, "_id"):
			parts = append(parts, k+"="+row[k]) // which row it is
		}
	}
	return strings.Join(parts, " ")
}
