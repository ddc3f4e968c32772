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
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
)

// headerRetryCount counts how many times an operator retried a dead letter
// with `choreo dlq retry`. The consumer copies it into a new dead letter
// when the retried message fails again, so the count survives the loop.
const headerRetryCount = "Choreo-Retry-Count"

// dlqMaxRetries is the loop guard: an entry retried this many times is
// refused by `choreo dlq retry`; fix the cause, or discard it.
const dlqMaxRetries = 3

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

	msg *jetstream.RawStreamMsg
}

func newDlqEntry(m *jetstream.RawStreamMsg) *dlqEntry {
	h := m.Header
	e := &dlqEntry{
		ID:              m.Sequence,
		Consumer:        h.Get(consumer.HeaderConsumer),
		OriginalSubject: h.Get(consumer.HeaderOriginalSubject),
		OriginalStream:  h.Get(consumer.HeaderOriginalStream),
		Reason:          h.Get(consumer.HeaderDLQReason),
		msg:             m,
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(consumer.HeaderFailedAt)); err == nil {
		e.FailedAt = t.UTC()
	} else {
		e.FailedAt = m.Time.UTC()
	}
	e.OriginalSequence, _ = strconv.ParseUint(h.Get(consumer.HeaderOriginalSeq), 10, 64)
	e.DeliveryCount, _ = strconv.ParseUint(h.Get(consumer.HeaderDeliveryCount), 10, 64)
	e.RetryCount = dlqRetryCount(h)
	if id, ok := events.TraceID(h.Get(events.HeaderTraceParent)); ok {
		e.TraceID = id
	}
	if len(bytes.TrimSpace(m.Data)) > 0 && json.Valid(m.Data) {
		e.Data = json.RawMessage(m.Data)
	} else {
		e.Data, _ = json.Marshal(string(m.Data))
	}
	return e
}

// dlqRetryCount is the entry's own Choreo-Retry-Count, 0 when absent or bad.
func dlqRetryCount(h nats.Header) int {
	n, err := strconv.Atoi(strings.TrimSpace(h.Get(headerRetryCount)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// withDetails fills the fields only show prints.
func (e *dlqEntry) withDetails() *dlqEntry {
	e.Subject = e.msg.Subject
	t := e.msg.Time.UTC()
	e.StoredAt = &t
	e.Headers = map[string][]string{}
	for k, vs := range e.msg.Header {
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

// dlqFilter turns a filter on the original subject into one on the DLQ
// subject: dead letters are "dlq.<service>.<original subject>".
func dlqFilter(filter string) (string, error) {
	if filter == "" {
		return catalog.DLQSubject("*") + ".>", nil
	}
	if strings.ContainsAny(filter, " \t\r\n") {
		return "", fmt.Errorf("%w: --subject %q: a NATS subject has no spaces", errUsage, filter)
	}
	toks := strings.Split(filter, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return "", fmt.Errorf("%w: --subject %q: empty token", errUsage, filter)
		case tok == ">" && i != len(toks)-1:
			return "", fmt.Errorf("%w: --subject %q: '>' must be the last token", errUsage, filter)
		case tok != ">" && tok != "*" && strings.ContainsAny(tok, "*>"):
			return "", fmt.Errorf("%w: --subject %q: wildcards must be whole tokens", errUsage, filter)
		}
	}
	return catalog.DLQSubject("*") + "." + filter, nil
}

// openDLQ connects and returns the DLQ stream; close the connection after.
func (d *dlqTool) openDLQ(ctx context.Context) (*nats.Conn, jetstream.Stream, error) {
	nc, js, err := d.flags.connect()
	if err != nil {
		return nil, nil, err
	}
	s, err := js.Stream(ctx, catalog.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		nc.Close()
		return nil, nil, fmt.Errorf("no %s stream on %s: has choreo up (or choreo serve) run against this server?", catalog.StreamDLQ, d.flags.natsURL)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("DLQ stream: %w", err)
	}
	return nc, s, nil
}

// list returns the entries matching --subject, oldest first.
func (d *dlqTool) list(ctx context.Context, s jetstream.Stream) ([]*dlqEntry, error) {
	filter, err := dlqFilter(d.subject)
	if err != nil {
		return nil, err
	}
	var out []*dlqEntry
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the DLQ: %w", err)
		}
		out = append(out, newDlqEntry(m))
		seq = m.Sequence + 1
	}
}

// getDlqEntry returns the entry with this id.
func getDlqEntry(ctx context.Context, s jetstream.Stream, id uint64) (*dlqEntry, error) {
	m, err := s.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter with id %d (choreo dlq ls lists them)", id)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return newDlqEntry(m), nil
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
func (d *dlqTool) selectEntries(ctx context.Context, s jetstream.Stream, args []string, verb string) ([]*dlqEntry, error) {
	if d.all {
		return d.list(ctx, s)
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
		e, err := getDlqEntry(ctx, s, id)
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
	if _, err := dlqFilter(d.subject); err != nil {
		return err
	}
	return nil
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
	if _, err := dlqFilter(d.subject); err != nil {
		return err
	}
	nc, s, err := d.openDLQ(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := d.list(ctx, s)
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
	nc, s, err := d.openDLQ(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	e, err := getDlqEntry(ctx, s, id)
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
	tb.row("Retries", fmt.Sprintf("%d (at most %d)", e.RetryCount, dlqMaxRetries))
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
	data := e.msg.Data
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
		fmt.Fprintf(stderr, dlqRetryNote, dlqMaxRetries)
	}
	rest, err := d.flags.parse(args)
	if err != nil {
		return err
	}
	if err := d.checkBulkArgs(rest, "retry"); err != nil {
		return err
	}
	nc, s, err := d.openDLQ(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	entries, err := d.selectEntries(ctx, s, rest, "retry")
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, d.emptyLine(), "Nothing to retry.")
		return nil
	}
	// Check every entry before republishing any.
	var noSubject, exhausted []string
	for _, e := range entries {
		switch {
		case e.OriginalSubject == "":
			noSubject = append(noSubject, strconv.FormatUint(e.ID, 10))
		case e.RetryCount >= dlqMaxRetries:
			exhausted = append(exhausted, strconv.FormatUint(e.ID, 10))
		}
	}
	switch {
	case len(exhausted) == 1:
		e := exhausted[0]
		return fmt.Errorf("refusing to retry: entry %s was already retried %d times, the limit: fix the cause, or choreo dlq discard %s; nothing was republished", e, dlqMaxRetries, e)
	case len(exhausted) > 1:
		return fmt.Errorf("refusing to retry: entries %s were already retried %d times, the limit: fix the cause, or choreo dlq discard %s; nothing was republished",
			strings.Join(exhausted, ", "), dlqMaxRetries, strings.Join(exhausted, " "))
	case len(noSubject) > 0:
		return fmt.Errorf("refusing to retry: entries %s have no %s header, so there is nowhere to send them; nothing was republished",
			strings.Join(noSubject, ", "), consumer.HeaderOriginalSubject)
	}
	var results []dlqResult
	report := func(r dlqResult, line string) {
		if d.flags.json {
			results = append(results, r)
		} else {
			fmt.Fprintln(stdout, line)
		}
	}
	// Entries of one message dead-lettered by several consumers (an event
	// fanned out to inventory and payments) are republished once: the
	// republished message reaches every consumer of the stream anyway.
	type group struct {
		first *dlqEntry
		count int // the highest retry count in the group, plus one
		ack   *jetstream.PubAck
	}
	groups := map[string]*group{}
	keyOf := func(e *dlqEntry) string {
		if e.OriginalStream == "" || e.OriginalSequence == 0 {
			return "id:" + strconv.FormatUint(e.ID, 10)
		}
		return fmt.Sprintf("%s:%d:%s", e.OriginalStream, e.OriginalSequence, e.OriginalSubject)
	}
	for _, e := range entries {
		g := groups[keyOf(e)]
		if g == nil {
			g = &group{first: e}
			groups[keyOf(e)] = g
		}
		g.count = max(g.count, e.RetryCount+1)
	}
	for _, e := range entries {
		g := groups[keyOf(e)]
		r := dlqResult{ID: e.ID, OriginalSubject: e.OriginalSubject, OriginalStream: e.OriginalStream, RetryCount: g.count}
		same := ""
		if g.first != e {
			same = fmt.Sprintf(" (the same message as %d, republished once for every consumer)", g.first.ID)
		}
		if d.dryRun {
			r.Action = "would_retry"
			report(r, fmt.Sprintf("would retry %d: republish to %s (stream %s) with %s: %d, then remove it from the DLQ%s",
				e.ID, e.OriginalSubject, dlqDash(e.OriginalStream), headerRetryCount, g.count, same))
			continue
		}
		if g.ack == nil {
			ack, err := retryDlqEntry(ctx, js, e, g.count)
			if err != nil {
				_ = writeJSONLines(stdout, results)
				return fmt.Errorf("retry %d: %w; entry %d stays in the DLQ", e.ID, err, e.ID)
			}
			g.ack = ack
		}
		ack := g.ack
		if err := s.DeleteMsg(ctx, e.ID); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			_ = writeJSONLines(stdout, results)
			return fmt.Errorf("retry %d: republished as %s seq %d, but removing it from the DLQ failed: %w; run choreo dlq discard %d",
				e.ID, ack.Stream, ack.Sequence, err, e.ID)
		}
		r.Action, r.Sequence, r.Duplicate = "retried", ack.Sequence, ack.Duplicate
		line := fmt.Sprintf("retried %d: republished to %s (stream %s seq %d, retry %d of %d) and removed from the DLQ%s",
			e.ID, e.OriginalSubject, ack.Stream, ack.Sequence, g.count, dlqMaxRetries, same)
		if ack.Duplicate {
			line += " (the server had it already: an earlier retry was interrupted)"
		}
		report(r, line)
	}
	return writeJSONLines(stdout, results)
}

// retryDlqEntry republishes a dead letter to its original subject.
// count is the new Choreo-Retry-Count.
func retryDlqEntry(ctx context.Context, js jetstream.JetStream, e *dlqEntry, count int) (*jetstream.PubAck, error) {
	m := nats.NewMsg(e.OriginalSubject)
	m.Data = e.msg.Data
	for k, vs := range e.msg.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "nats-") || strings.HasPrefix(lk, "choreo-") {
			continue
		}
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	m.Header.Set(headerRetryCount, strconv.Itoa(count))
	// Fresh, and the same if this very entry is retried again after an
	// interruption between publish and delete: the server then drops the
	// second copy as a duplicate.
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq-retry:%s:%d:%s:%d", catalog.StreamDLQ, e.ID, e.OriginalStream, e.OriginalSequence))
	var opts []jetstream.PublishOpt
	if e.OriginalStream != "" {
		opts = append(opts, jetstream.WithExpectStream(e.OriginalStream))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return js.PublishMsg(pctx, m, opts...)
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
	nc, s, err := d.openDLQ(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := d.selectEntries(ctx, s, rest, "discard")
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
			if err := s.DeleteMsg(ctx, e.ID); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
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
