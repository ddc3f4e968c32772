package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/dlq"
)

// dlqConfig is where choreo keeps its dead letters; the workflow itself
// (headers, loop guard, retry, discard) is events/dlq's.
var dlqConfig = dlq.Config{Stream: catalog.StreamDLQ, Prefix: catalog.DLQPrefix}

// dlqReasonWidth is how much of a reason the ls table shows.
const dlqReasonWidth = 60

const dlqUsage = `Usage: choreo dlq <command> [flags]

Dead letters: messages a consumer could not handle, kept in the DLQ stream
with the reason. An entry's id is its DLQ stream sequence.

Commands:
  ls [--subject FILTER]      list dead letters, oldest first
  show <id>                  one dead letter: every field, all headers, the body
  retry <id>... | --all [--subject FILTER] [--dry-run]
                             republish to the original subject, then remove
  discard <id>... | --all [--subject FILTER] [--dry-run]
                             remove dead letters

Example:
  choreo dlq ls --subject 'cmd.orders.>'

Run "choreo dlq <command> -h" for the flags of a command.
`

// runDlq is `choreo dlq ls | show | retry | discard`.
func runDlq(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	switch args[0] {
	case "ls", "list":
		return runDlqLs(ctx, args[1:], stdout, stderr, getenv)
	case "show":
		return runDlqShow(ctx, args[1:], stdout, stderr, getenv)
	case "retry":
		return runDlqRetry(ctx, args[1:], stdout, stderr, getenv)
	case "discard", "rm":
		return runDlqDiscard(ctx, args[1:], stdout, stderr, getenv)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	default:
		return fmt.Errorf("%w: unknown dlq command %q: want ls, show, retry or discard (choreo dlq -h)", errUsage, args[0])
	}
}

// dlqEntry is one dead letter as the tools show it. The JSON field names
// are a stable interface for scripts.
type dlqEntry struct {
	ID               uint64          `json:"id"`
	FailedAt         time.Time       `json:"failed_at"`
	Consumer         string          `json:"consumer"`
	OriginalSubject  string          `json:"original_subject"`
	OriginalStream   string          `json:"original_stream"`
	OriginalSequence uint64          `json:"original_sequence"`
	DeliveryCount    uint64          `json:"delivery_count"`
	RetryCount       int             `json:"retry_count"`
	TraceID          string          `json:"trace_id"`
	Reason           string          `json:"reason"`
	Data             json.RawMessage `json:"data"`
	// Only in show: the DLQ subject, when it was stored and every header.
	Subject  string              `json:"subject,omitempty"`
	StoredAt *time.Time          `json:"stored_at,omitempty"`
	Headers  map[string][]string `json:"headers,omitempty"`

	entry *dlq.Entry
}

// newDlqEntry is the script-facing shape of a dead letter.
func newDlqEntry(e *dlq.Entry) *dlqEntry {
	out := &dlqEntry{
		ID: e.ID, FailedAt: e.FailedAt, Consumer: e.Consumer,
		OriginalSubject: e.OriginalSubject, OriginalStream: e.OriginalStream, OriginalSequence: e.OriginalSequence,
		DeliveryCount: e.DeliveryCount, RetryCount: e.RetryCount, TraceID: e.TraceID, Reason: e.Reason,
		entry: e,
	}
	if len(bytes.TrimSpace(e.Data)) > 0 && json.Valid(e.Data) {
		out.Data = json.RawMessage(e.Data)
	} else {
		out.Data, _ = json.Marshal(string(e.Data))
	}
	return out
}

// withDetails fills the fields only show prints.
func (e *dlqEntry) withDetails() *dlqEntry {
	e.Subject = e.entry.Subject
	t := e.entry.StoredAt
	e.StoredAt = &t
	e.Headers = map[string][]string{}
	for k, vs := range e.entry.Header {
		e.Headers[k] = vs
	}
	return e
}

// dlqTool is the state every dlq subcommand shares.
type dlqTool struct {
	flags   *toolFlags
	subject string
	all     bool
	dryRun  bool
}

func newDlqTool(name, synopsis, example string, stderr io.Writer, getenv func(string) string) *dlqTool {
	return &dlqTool{flags: newToolFlags("dlq "+name, "dlq "+synopsis, example, stderr, getenv)}
}

func (d *dlqTool) addSubject() {
	d.flags.fs.StringVar(&d.subject, "subject", "", "only entries whose original subject matches this NATS filter, e.g. 'cmd.orders.>'")
}

func (d *dlqTool) addBulk(verb string) {
	d.addSubject()
	d.flags.fs.BoolVar(&d.all, "all", false, verb+" every entry (matching --subject)")
	d.flags.fs.BoolVar(&d.dryRun, "dry-run", false, "print what would be done, change nothing")
}

// checkSubject checks --subject, a filter on the original subject.
func (d *dlqTool) checkSubject() error {
	if err := dlq.ValidFilter(d.subject); err != nil {
		return fmt.Errorf("%w: --subject: %v", errUsage, err)
	}
	return nil
}

// open connects and opens the DLQ; close the connection after.
func (d *dlqTool) open(ctx context.Context) (*nats.Conn, *dlq.Queue, error) {
	nc, js, err := d.flags.connect()
	if err != nil {
		return nil, nil, err
	}
	q, err := dlq.Open(ctx, js, dlqConfig)
	if errors.Is(err, dlq.ErrNoQueue) {
		nc.Close()
		return nil, nil, fmt.Errorf("no %s stream on %s: has choreo up (or choreo serve) run against this server?", catalog.StreamDLQ, d.flags.natsURL)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("DLQ stream: %w", err)
	}
	return nc, q, nil
}

// list returns the entries matching --subject, oldest first.
func (d *dlqTool) list(ctx context.Context, q *dlq.Queue) ([]*dlqEntry, error) {
	var out []*dlqEntry
	err := q.List(ctx, d.subject, func(e *dlq.Entry) error {
		out = append(out, newDlqEntry(e))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the DLQ: %w", err)
	}
	return out, nil
}

// getDlqEntry returns the entry with this id.
func getDlqEntry(ctx context.Context, q *dlq.Queue, id uint64) (*dlqEntry, error) {
	e, err := q.Get(ctx, id)
	if errors.Is(err, dlq.ErrNotFound) {
		return nil, fmt.Errorf("no dead letter with id %d (choreo dlq ls lists them)", id)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return newDlqEntry(e), nil
}

// parseDlqID parses an entry id: its DLQ stream sequence.
func parseDlqID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: %q is not a dead-letter id: ids are the numbers in the ID column of choreo dlq ls", errUsage, s)
	}
	return id, nil
}

// selectEntries resolves ids or --all [--subject] into entries, checking
// every id exists before anything is changed.
func (d *dlqTool) selectEntries(ctx context.Context, q *dlq.Queue, args []string, verb string) ([]*dlqEntry, error) {
	if d.all {
		return d.list(ctx, q)
	}
	seen := map[uint64]bool{}
	var out []*dlqEntry
	for _, a := range args {
		id, err := parseDlqID(a)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		e, err := getDlqEntry(ctx, q, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w; nothing changed", verb, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// checkBulkArgs checks ids versus --all before connecting.
func (d *dlqTool) checkBulkArgs(args []string, verb string) error {
	switch {
	case d.all && len(args) > 0:
		return fmt.Errorf("%w: dlq %s: give ids or --all, not both", errUsage, verb)
	case !d.all && len(args) == 0:
		return fmt.Errorf("%w: dlq %s: which entries? give their ids (choreo dlq ls) or --all", errUsage, verb)
	case !d.all && d.subject != "":
		return fmt.Errorf("%w: dlq %s: --subject only goes with --all", errUsage, verb)
	}
	for _, a := range args {
		if _, err := parseDlqID(a); err != nil {
			return err
		}
	}
	return d.checkSubject()
}

func (d *dlqTool) emptyLine() string {
	if d.subject != "" {
		return fmt.Sprintf("No dead letters with an original subject matching %s.", d.subject)
	}
	return "The DLQ is empty: no dead letters."
}

func runDlqLs(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	d := newDlqTool("ls", "ls [--subject FILTER] [--json]", "choreo dlq ls --subject 'cmd.orders.>'", stderr, getenv)
	d.addSubject()
	rest, err := d.flags.parse(args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: dlq ls takes no arguments (got %q); filter with --subject", errUsage, rest[0])
	}
	if err := d.checkSubject(); err != nil {
		return err
	}
	nc, q, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := d.list(ctx, q)
	if err != nil {
		return err
	}
	if d.flags.json {
		if len(entries) == 0 {
			fmt.Fprintln(stderr, d.emptyLine())
		}
		return writeJSONLines(stdout, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, d.emptyLine())
		return nil
	}
	tb := newTable(stdout, "ID", "FAILED AT", "CONSUMER", "ORIGINAL SUBJECT", "STREAM:SEQ", "DELIVERIES", "RETRIES", "TRACE ID", "REASON")
	for _, e := range entries {
		tb.row(e.ID, e.FailedAt.Format(time.RFC3339), dlqDash(e.Consumer), dlqDash(e.OriginalSubject),
			fmt.Sprintf("%s:%d", dlqDash(e.OriginalStream), e.OriginalSequence), e.DeliveryCount, e.RetryCount,
			dlqDash(e.TraceID), dlqOneLine(e.Reason, dlqReasonWidth))
	}
	return tb.flush()
}

func runDlqShow(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	d := newDlqTool("show", "show <id> [--json]", "choreo dlq show 12", stderr, getenv)
	rest, err := d.flags.parse(args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: dlq show takes one id (choreo dlq ls lists them)", errUsage)
	}
	id, err := parseDlqID(rest[0])
	if err != nil {
		return err
	}
	nc, q, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	e, err := getDlqEntry(ctx, q, id)
	if err != nil {
		return err
	}
	e.withDetails()
	if d.flags.json {
		return writeJSONLines(stdout, []*dlqEntry{e})
	}
	var b strings.Builder
	tb := newTable(&b, "ID", strconv.FormatUint(e.ID, 10))
	tb.row("Failed at", e.FailedAt.Format(time.RFC3339Nano))
	tb.row("Consumer", dlqDash(e.Consumer))
	tb.row("Original subject", dlqDash(e.OriginalSubject))
	tb.row("Original stream", dlqDash(e.OriginalStream))
	tb.row("Original sequence", e.OriginalSequence)
	tb.row("Deliveries", e.DeliveryCount)
	tb.row("Retries", fmt.Sprintf("%d (at most %d)", e.RetryCount, q.MaxRetries()))
	tb.row("Trace ID", dlqDash(e.TraceID))
	tb.row("DLQ subject", e.Subject)
	tb.row("Stored at", e.StoredAt.Format(time.RFC3339Nano))
	tb.row("Reason", dlqOneLine(e.Reason, 0))
	if err := tb.flush(); err != nil {
		return err
	}
	b.WriteString("\nHeaders:\n")
	keys := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range e.Headers[k] {
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	data := e.entry.Data
	var pretty bytes.Buffer
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		b.WriteString("\nBody: (empty)\n")
	case json.Indent(&pretty, data, "", "  ") == nil:
		fmt.Fprintf(&b, "\nBody (JSON, %d bytes):\n%s\n", len(data), pretty.String())
	default:
		fmt.Fprintf(&b, "\nBody (not JSON, %d bytes):\n%s\n", len(data), data)
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

// dlqResult is what retry and discard print per entry with --json.
type dlqResult struct {
	ID              uint64 `json:"id"`
	Action          string `json:"action"` // retried, discarded, would_retry, would_discard
	OriginalSubject string `json:"original_subject"`
	OriginalStream  string `json:"original_stream"`
	RetryCount      int    `json:"retry_count"`
	// After a retry: where the message was republished.
	Sequence  uint64 `json:"sequence,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

const dlqRetryNote = `
Retrying republishes the original body to the original subject, with the
original headers (not the Choreo-* and Nats-* ones), Choreo-Retry-Count
raised by one and a fresh Nats-Msg-Id; the entry is removed only once the
server acknowledged the publish. The message goes to every consumer of that
stream, not only to the one that failed: that is safe, consumers
deduplicate by event id through their inbox. So entries of one message
that several consumers dead-lettered are republished once, together. An
entry already retried %d times is refused, and then nothing is retried: fix
the cause, or discard it.
`

func runDlqRetry(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	d := newDlqTool("retry", "retry <id>... | --all [--subject FILTER] [--dry-run] [--json]", "choreo dlq retry 12 13\n  choreo dlq retry --all --subject 'cmd.inventory.>' --dry-run", stderr, getenv)
	d.addBulk("retry")
	usage := d.flags.fs.Usage
	d.flags.fs.Usage = func() {
		usage()
		fmt.Fprintf(stderr, dlqRetryNote, dlq.DefaultMaxRetries)
	}
	rest, err := d.flags.parse(args)
	if err != nil {
		return err
	}
	if err := d.checkBulkArgs(rest, "retry"); err != nil {
		return err
	}
	nc, q, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := d.selectEntries(ctx, q, rest, "retry")
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, d.emptyLine(), "Nothing to retry.")
		return nil
	}
	var results []dlqResult
	targets := make([]*dlq.Entry, len(entries))
	for i, e := range entries {
		targets[i] = e.entry
	}
	err = q.Retry(ctx, targets, d.dryRun, func(r dlq.Retried) {
		e := r.Entry
		res := dlqResult{ID: e.ID, OriginalSubject: e.OriginalSubject, OriginalStream: e.OriginalStream, RetryCount: r.Count}
		same := ""
		if r.SameAs != 0 {
			same = fmt.Sprintf(" (the same message as %d, republished once for every consumer)", r.SameAs)
		}
		var line string
		if r.DryRun {
			res.Action = "would_retry"
			line = fmt.Sprintf("would retry %d: republish to %s (stream %s) with %s: %d, then remove it from the DLQ%s",
				e.ID, e.OriginalSubject, dlqDash(e.OriginalStream), dlq.HeaderRetryCount, r.Count, same)
		} else {
			res.Action, res.Sequence, res.Duplicate = "retried", r.Sequence, r.Duplicate
			line = fmt.Sprintf("retried %d: republished to %s (stream %s seq %d, retry %d of %d) and removed from the DLQ%s",
				e.ID, e.OriginalSubject, r.Stream, r.Sequence, r.Count, q.MaxRetries(), same)
			if r.Duplicate {
				line += " (the server had it already: an earlier retry was interrupted)"
			}
		}
		if d.flags.json {
			results = append(results, res)
		} else {
			fmt.Fprintln(stdout, line)
		}
	})
	var refused *dlq.RefusedError
	var removeErr *dlq.RemoveError
	switch {
	case errors.As(err, &refused):
		return dlqRefusal(refused)
	case errors.As(err, &removeErr):
		_ = writeJSONLines(stdout, results)
		return fmt.Errorf("retry %d: republished as %s seq %d, but removing it from the DLQ failed: %w; run choreo dlq discard %d",
			removeErr.ID, removeErr.Stream, removeErr.Sequence, removeErr.Err, removeErr.ID)
	case err != nil:
		_ = writeJSONLines(stdout, results)
		return d.flags.explain(err)
	}
	return writeJSONLines(stdout, results)
}

// dlqRefusal says why retry refused, and what to do instead.
func dlqRefusal(r *dlq.RefusedError) error {
	ids := func(ids []uint64, sep string) string {
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = strconv.FormatUint(id, 10)
		}
		return strings.Join(s, sep)
	}
	switch {
	case len(r.Exhausted) == 1:
		e := ids(r.Exhausted, "")
		return fmt.Errorf("refusing to retry: entry %s was already retried %d times, the limit: fix the cause, or choreo dlq discard %s; nothing was republished", e, r.MaxRetries, e)
	case len(r.Exhausted) > 1:
		return fmt.Errorf("refusing to retry: entries %s were already retried %d times, the limit: fix the cause, or choreo dlq discard %s; nothing was republished",
			ids(r.Exhausted, ", "), r.MaxRetries, ids(r.Exhausted, " "))
	default:
		return fmt.Errorf("refusing to retry: entries %s have no %s header, so there is nowhere to send them; nothing was republished",
			ids(r.NoSubject, ", "), dlq.HeaderOriginalSubject)
	}
}

func runDlqDiscard(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	d := newDlqTool("discard", "discard <id>... | --all [--subject FILTER] [--dry-run] [--json]", "choreo dlq discard 12 13\n  choreo dlq discard --all --subject 'cmd.orders.>' --dry-run", stderr, getenv)
	d.addBulk("discard")
	rest, err := d.flags.parse(args)
	if err != nil {
		return err
	}
	if err := d.checkBulkArgs(rest, "discard"); err != nil {
		return err
	}
	nc, q, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := d.selectEntries(ctx, q, rest, "discard")
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, d.emptyLine(), "Nothing to discard.")
		return nil
	}
	var results []dlqResult
	for _, e := range entries {
		r := dlqResult{ID: e.ID, OriginalSubject: e.OriginalSubject, OriginalStream: e.OriginalStream, RetryCount: e.RetryCount}
		verb := "discarded"
		if d.dryRun {
			r.Action, verb = "would_discard", "would discard"
		} else {
			if err := q.Discard(ctx, e.ID); err != nil {
				_ = writeJSONLines(stdout, results)
				return fmt.Errorf("discard %d: %w", e.ID, err)
			}
			r.Action = "discarded"
		}
		if d.flags.json {
			results = append(results, r)
		} else {
			fmt.Fprintf(stdout, "%s %d (%s, consumer %s)\n", verb, e.ID, dlqDash(e.OriginalSubject), dlqDash(e.Consumer))
		}
	}
	return writeJSONLines(stdout, results)
}

func dlqDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dlqOneLine flattens s onto one line for a table cell and, when width > 0,
// cuts it to width runes.
func dlqOneLine(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if width > 0 {
		if r := []rune(s); len(r) > width {
			return string(r[:width-1]) + "…"
		}
	}
	return dlqDash(s)
}
