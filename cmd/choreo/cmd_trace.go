package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/history"
)

const traceSynopsis = `trace <order-id> [--json] [--follow | --tree] [--nats-url URL]

The saga of one order across every stream (ORDERS, INVENTORY, PAYMENTS,
NOTIFICATIONS, COMMANDS and DLQ), oldest first: one row per message with
TIME (UTC), GAP (since the previous row), SERVICE, SUBJECT, STREAM:SEQ,
TYPE (CloudEvents type, "command" or "dead letter") and a SUMMARY, then
the order's state folded from its events:
  state: CONFIRMED | CANCELLED (<reason>) | PENDING | UNKNOWN (no valid orders.placed event)

--follow keeps printing new messages live until the order is final and its
customer notification was sent (plus a second of quiet for trailing
compensations), or until Ctrl-C. The order need not exist yet.

--tree shows the saga as a causal tree instead: every event indented under
the message whose handling published it (its CloudEvents causationid), a
dead letter under the message it holds, with AFTER the time since that
cause. A command, or an event whose cause is not in the streams, starts a
branch of its own.

--json prints one object per line instead: first one per message
  {"kind":"event","time","gap_ms","service","subject","stream","sequence",
   "type","id","causation_id","summary","data","dlq_reason"}
(data is the event's data, a command's body or a dead letter's body, as
JSON; causation_id only when the message names its cause, dlq_reason only
on dead letters; with --tree, in tree order with a "depth"), then exactly
one last line
  {"kind":"state","order_id","state","reason"}.

An order with no message anywhere exits 1 ("no events for order <id>").`

// traceSettle is how long --follow waits for trailing messages (commit,
// release, refund) once the order is final and notified.
const traceSettle = time.Second

// traceSource is one stream trace reads and the subjects that may concern
// the order there.
type traceSource struct {
	stream  string
	filters []string
	// byBody: the subject does not name the order, so keep only messages
	// whose body's order_id is the order (commands and their dead letters).
	byBody bool
}

func traceSources(id string) []traceSource {
	return []traceSource{
		// A deadline's schedule is in the stream while it is pending: the
		// server removes it when it fires or the order ends.
		{stream: catalog.StreamOrders, filters: []string{"orders.*." + id, catalog.SchedulePrefix + ".orders.*." + id}},
		{stream: catalog.StreamInventory, filters: []string{"inventory.*." + id}},
		{stream: catalog.StreamPayments, filters: []string{"payments.*." + id}},
		{stream: catalog.StreamNotifications, filters: []string{"notifications.*." + id}},
		// Commands carry the order id only in their body, so trace reads
		// every order command and keeps the order's own: O(commands in the
		// stream) per trace. Acceptable while COMMANDS is bounded by its
		// retention; an index (or the id in the subject) would fix it.
		{stream: catalog.StreamCommands, filters: []string{"cmd.orders.>"}, byBody: true},
		// Dead letters: "dlq.<service>.<original subject>".
		{stream: catalog.StreamDLQ, filters: []string{"dlq.*.*.*." + id}},
		{stream: catalog.StreamDLQ, filters: []string{"dlq.*.cmd.orders.>"}, byBody: true},
	}
}

// traceRow is one message of the timeline; it is also the --json shape of
// an event line.
type traceRow struct {
	Kind     string    `json:"kind"`
	Time     time.Time `json:"time"`
	GapMS    int64     `json:"gap_ms"`
	Service  string    `json:"service"`
	Subject  string    `json:"subject"`
	Stream   string    `json:"stream"`
	Sequence uint64    `json:"sequence"`
	Type     string    `json:"type"`
	ID       string    `json:"id"`
	// CausationID is the id of the message whose handling published it
	// (events: the causationid extension; dead letters: the message they
	// hold).
	CausationID string          `json:"causation_id,omitempty"`
	Summary     string          `json:"summary"`
	Data        json.RawMessage `json:"data"`
	DLQReason   string          `json:"dlq_reason,omitempty"`

	gap time.Duration
	// key is what the events it caused name as their cause: an event's
	// id, a command's idempotency key (see consumer.Message.CommandKey).
	key string
	// cause is the key of the row that caused it; for a dead letter the
	// stream position of the message it holds (see traceTree).
	cause string
}

// traceState is the --json shape of the last line.
type traceState struct {
	Kind    string `json:"kind"`
	OrderID string `json:"order_id"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	tf := newToolFlags("trace", traceSynopsis, "choreo trace 0195f3a2-7c1e-7b9a-8f00-2d1c3e4f5a6b --follow", stderr, getenv)
	var follow, tree bool
	tf.fs.BoolVar(&follow, "follow", false, "keep printing new messages until the order is final and notified (or Ctrl-C)")
	tf.fs.BoolVar(&tree, "tree", false, "show the saga as a causal tree: each event under the message that caused it")
	pos, err := tf.parse(args)
	if err != nil {
		return err
	}
	if follow && tree {
		return fmt.Errorf("%w: --tree draws the saga once it is read; it does not go with --follow", errUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: choreo trace takes exactly one order id, got %d (see choreo trace -h)", errUsage, len(pos))
	}
	id := pos[0]
	if id == "" || strings.ContainsAny(id, ".*> \t\r\n") {
		return fmt.Errorf("%w: order id %q must be non-empty, without '.', '*', '>' or whitespace", errUsage, id)
	}
	nc, js, err := tf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()

	reader, err := history.NewReader(js)
	if err != nil {
		return err
	}
	sources := traceSources(id)
	rows, next, err := traceHistory(ctx, reader, id, sources)
	if err != nil {
		return err
	}
	sortRows(rows)
	if len(rows) == 0 && !follow {
		return fmt.Errorf("no events for order %s%s", id, traceHistoryNote(ctx, js))
	}
	if note := traceHistoryNote(ctx, js); !traceHasStart(rows) && note != "" {
		// Not an error: the order may be fine, its start just gone.
		fmt.Fprintf(stderr, "note: the order's placement is not in the streams any more%s\n", note)
	}

	p := &tracePrinter{w: stdout, json: tf.json, colour: isTerminal(stdout), minWidths: traceMinWidths(id), orderID: id}
	st := &traceFold{}
	for _, r := range rows {
		st.add(r)
	}
	if tree {
		if err := p.tree(rows); err != nil {
			return err
		}
		return p.state(id, st)
	}
	if err := p.history(rows); err != nil {
		return err
	}
	if follow {
		if err := traceFollow(ctx, reader, id, sources, next, p, st); err != nil {
			return err
		}
	}
	if p.count == 0 {
		return fmt.Errorf("no events for order %s", id)
	}
	return p.state(id, st)
}

// traceHasStart reports whether the order's placement (the command or
// orders.placed) is among rows.
func traceHasStart(rows []traceRow) bool {
	for _, r := range rows {
		if r.Subject == catalog.SubjectPlaceOrder || strings.HasPrefix(r.Subject, catalog.Orders+"."+catalog.EventPlaced+".") {
			return true
		}
	}
	return false
}

// traceHistoryNote says how far back the streams an order starts in
// reach, when their limits have dropped messages: the reason an old
// order's events are missing. It is "" while they hold everything.
func traceHistoryNote(ctx context.Context, js jetstream.JetStream) string {
	var notes []string
	for _, name := range []string{catalog.StreamCommands, catalog.StreamOrders} {
		if h, err := history.StreamReach(ctx, js, name); err == nil && h.Dropped(1, time.Time{}) {
			notes = append(notes, h.String())
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return "; the streams keep only their newest messages: " + strings.Join(notes, "; ")
}

// traceHistory reads every message of the order stored when it starts and
// returns them with, per stream, the sequence to follow from. Each source
// is read with the subjects filtered on the server, and its consumer is
// gone when the read returns.
func traceHistory(ctx context.Context, reader *history.Reader, id string, sources []traceSource) ([]traceRow, map[string]uint64, error) {
	var rows []traceRow
	next := map[string]uint64{}
	for _, src := range sources {
		upTo, err := reader.Read(ctx, history.Query{Stream: src.stream, Subjects: src.filters}, func(m history.Message) error {
			if r, ok := traceMakeRow(src, id, m); ok {
				rows = append(rows, r)
			}
			return nil
		})
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("trace: %w", err)
		}
		if n, ok := next[src.stream]; !ok || n > upTo+1 {
			next[src.stream] = upTo + 1
		}
	}
	return rows, next, nil
}

// traceFollow prints the order's new messages as they are stored, from the
// sequences history stopped at, until the order is final and notified (and
// quiet for traceSettle) or ctx ends.
func traceFollow(ctx context.Context, reader *history.Reader, id string, sources []traceSource, next map[string]uint64, p *tracePrinter, st *traceFold) error {
	ctx, cancel := context.WithCancel(ctx)
	live := make(chan traceRow, 64)
	failed := make(chan error, len(sources))
	var wg sync.WaitGroup
	defer func() {
		cancel()  // first: it unblocks a reader waiting to hand over a row
		wg.Wait() // then every reader has deleted its consumer
	}()
	for _, src := range sources {
		start, ok := next[src.stream]
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := reader.Follow(ctx, history.Query{Stream: src.stream, Subjects: src.filters, FromSeq: start}, func(m history.Message) error {
				if r, ok := traceMakeRow(src, id, m); ok {
					select {
					case live <- r:
					case <-ctx.Done():
					}
				}
				return nil
			})
			if err != nil {
				failed <- fmt.Errorf("trace --follow: %w", err)
			}
		}()
	}
	var settle <-chan time.Time
	if st.final() && st.notified {
		settle = time.After(traceSettle)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-settle:
			return nil
		case r := <-live:
			st.add(r)
			if err := p.live(r); err != nil {
				return err
			}
			if st.final() && st.notified {
				settle = time.After(traceSettle)
			}
		}
	}
}

// traceMakeRow turns a stored message into a row; ok is false for a
// command (or its dead letter) about another order.
func traceMakeRow(src traceSource, id string, m history.Message) (traceRow, bool) {
	subject, hdr, body := m.Subject, m.Header, m.Data
	r := traceRow{
		Kind:     "event",
		Time:     m.Time,
		Subject:  subject,
		Stream:   m.Stream,
		Sequence: m.Sequence,
	}
	tokens := strings.Split(subject, ".")
	switch {
	case src.stream == catalog.StreamDLQ:
		if src.byBody && commandOrderID(body) != id {
			return r, false
		}
		if len(tokens) > 1 {
			r.Service = tokens[1]
		}
		r.Type = "dead letter"
		r.DLQReason = hdr.Get(dlq.HeaderReason)
		r.Summary = r.DLQReason
		r.ID = hdr.Get(jetstream.MsgIDHeader)
		if env, err := events.DecodeMessage(hdr, body, m.Time); err == nil {
			r.ID = env.ID
			r.CausationID = env.ID
		}
		// The dead letter lost the original's Nats-Msg-Id, but not where
		// the original is stored: that finds its row.
		r.cause = traceSeqKey(hdr.Get(dlq.HeaderOriginalStream), hdr.Get(dlq.HeaderOriginalSeq))
		r.Data = rawOrString(body)
	case src.byBody:
		if commandOrderID(body) != id {
			return r, false
		}
		if len(tokens) > 1 {
			r.Service = tokens[1]
		}
		r.Type = "command"
		data := body
		if events.CarriesCloudEvent(hdr, body) {
			if env, err := events.DecodeMessage(hdr, body, m.Time); err == nil {
				data, r.ID = env.Data, env.ID
			}
		}
		var cmd struct {
			CommandID string `json:"command_id"`
		}
		_ = json.Unmarshal(data, &cmd)
		if r.ID == "" {
			r.ID = cmd.CommandID
		}
		// The key the consumer names as the cause of what the command
		// does: its Nats-Msg-Id, else command_id, else the envelope's id.
		key := hdr.Get(jetstream.MsgIDHeader)
		for _, k := range []string{cmd.CommandID, r.ID, fmt.Sprintf("%s:%d", m.Stream, m.Sequence)} {
			if key == "" {
				key = k
			}
		}
		r.key = subject + ":" + key
		action := tokens[len(tokens)-1]
		r.Summary = action
		if action == "place" {
			var po catalog.PlaceOrder
			if json.Unmarshal(data, &po) == nil {
				r.Summary = "place: " + po.CustomerID + ", " + plural(len(po.Items), "line") + ", total " + formatMoney(po.Total())
			}
		}
		r.Data = rawOrString(data)
	default:
		r.Service = tokens[0]
		env, err := events.DecodeMessage(hdr, body, m.Time)
		if err != nil {
			r.Type = "invalid"
			r.Summary = err.Error()
			r.Data = rawOrString(body)
			return r, true
		}
		r.Type, r.ID, r.Data = env.Type, env.ID, rawOrString(env.Data)
		r.key, r.CausationID, r.cause = env.ID, env.CausationID, env.CausationID
		r.Summary = summarize(env.Type, env.Data)
	}
	return r, true
}

// commandOrderID is the order_id of a command body, bare JSON or a
// CloudEvent around it.
func commandOrderID(body []byte) string {
	var v struct {
		OrderID string          `json:"order_id"`
		Spec    string          `json:"specversion"`
		Data    json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	if v.Spec != "" {
		var d struct {
			OrderID string `json:"order_id"`
		}
		_ = json.Unmarshal(v.Data, &d)
		return d.OrderID
	}
	return v.OrderID
}

// summarize is one line about an event's data.
func summarize(typ string, data []byte) string {
	switch typ {
	case catalog.TypeOrderPlaced:
		var e catalog.OrderPlaced
		if json.Unmarshal(data, &e) == nil {
			return e.CustomerID + ", " + plural(len(e.Items), "line") + ", total " + formatMoney(e.Total)
		}
	case catalog.TypeOrderConfirmed:
		var e catalog.OrderConfirmed
		if json.Unmarshal(data, &e) == nil {
			return "total " + formatMoney(e.Total)
		}
	case catalog.TypeOrderCancelled:
		var e catalog.OrderCancelled
		if json.Unmarshal(data, &e) == nil {
			return e.Reason
		}
	case catalog.TypeOrderCancelRejected:
		var e catalog.OrderCancelRejected
		if json.Unmarshal(data, &e) == nil {
			return e.Status + ": " + e.Reason
		}
	case catalog.TypeOrderDeadline:
		var e catalog.OrderDeadline
		if json.Unmarshal(data, &e) == nil {
			return "deadline " + e.Deadline.UTC().Format(traceTimeFormat)
		}
	case catalog.TypeStockReserved, catalog.TypeReservationCommitted, catalog.TypeReservationReleased:
		var e struct {
			Items []catalog.StockLine `json:"items"`
		}
		if json.Unmarshal(data, &e) == nil {
			return stockLines(e.Items)
		}
	case catalog.TypeStockReservationFailed:
		var e catalog.StockReservationFailed
		if json.Unmarshal(data, &e) == nil {
			parts := make([]string, len(e.Shortages))
			for i, s := range e.Shortages {
				parts[i] = fmt.Sprintf("%s requested %d, available %d", s.SKU, s.Requested, s.Available)
			}
			out := strings.Join(parts, "; ")
			if e.Reason != "" {
				out = e.Reason + ": " + out
			}
			return out
		}
	case catalog.TypePaymentCaptured, catalog.TypePaymentRefunded:
		var e catalog.PaymentCaptured
		if json.Unmarshal(data, &e) == nil {
			return formatMoney(e.Amount) + " (payment " + e.PaymentID + ")"
		}
	case catalog.TypePaymentDeclined:
		var e catalog.PaymentDeclined
		if json.Unmarshal(data, &e) == nil {
			return e.Reason
		}
	case catalog.TypePaymentVoided:
		return "voided"
	case catalog.TypeNotificationSent:
		var e catalog.NotificationSent
		if json.Unmarshal(data, &e) == nil {
			out := e.Channel + ", " + e.Status
			if e.Reason != "" {
				out += " (" + e.Reason + ")"
			}
			return out
		}
	}
	return ""
}

func stockLines(items []catalog.StockLine) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprintf("%s×%d", it.SKU, it.Quantity)
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// formatMoney shows minor units with two decimals: "25.98 EUR".
func formatMoney(m catalog.Money) string {
	sign, a := "", m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, a/100, a%100, m.Currency)
}

// rawOrString is b as JSON when it is valid JSON, else b as a JSON string.
func rawOrString(b []byte) json.RawMessage {
	if len(b) > 0 && json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// streamRank orders rows with the same timestamp: the saga's own streams
// first, then commands and dead letters.
var streamRank = map[string]int{
	catalog.StreamCommands: 0, catalog.StreamOrders: 1, catalog.StreamInventory: 2,
	catalog.StreamPayments: 3, catalog.StreamNotifications: 4, catalog.StreamDLQ: 5,
}

func sortRows(rows []traceRow) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Stream != b.Stream {
			return streamRank[a.Stream] < streamRank[b.Stream]
		}
		return a.Sequence < b.Sequence
	})
}

// traceFold is the order's state folded from its events.
type traceFold struct {
	placed   bool
	status   string
	reason   string
	notified bool
}

func (f *traceFold) add(r traceRow) {
	switch r.Type {
	case catalog.TypeOrderPlaced:
		f.placed = true
	case catalog.TypeOrderConfirmed:
		if !f.final() {
			f.status = catalog.StatusConfirmed
		}
	case catalog.TypeOrderCancelled:
		if !f.final() {
			f.status, f.reason = catalog.StatusCancelled, r.Summary
		}
	case catalog.TypeNotificationSent:
		f.notified = true
	}
}

func (f *traceFold) final() bool { return f.status != "" }

func (f *traceFold) result() (state, reason string) {
	switch {
	case f.final():
		return f.status, f.reason
	case f.placed:
		return catalog.StatusPending, ""
	default:
		return "UNKNOWN", "no valid orders.placed event"
	}
}

const traceTimeFormat = "2006-01-02T15:04:05.000Z07:00"

var traceHeader = []string{"TIME", "GAP", "SERVICE", "SUBJECT", "STREAM:SEQ", "TYPE", "SUMMARY"}

// tracePrinter writes rows as a table or JSON lines and keeps the gap.
type tracePrinter struct {
	w      io.Writer
	json   bool
	colour bool
	count  int
	prev   time.Time
	// minWidths are the narrowest each column may be (see
	// traceMinWidths); widths are fixed by history and then used for
	// every live row of --follow, so both line up.
	minWidths []int
	widths    []int
	// orderID is the traced order: the tree leaves it out of subjects.
	orderID string
}

// traceMinWidths is how wide each column must be for any row of the
// order's saga, whatever history happened to hold when --follow started:
// the longest service, subject, stream, type the catalog knows, a gap of
// minutes. Only SUMMARY, the last column, is free. A dead letter's subject
// ("dlq.<service>.<subject>") may still be longer; it then pushes its own
// row's later columns right, never the others'.
func traceMinWidths(id string) []int {
	w := make([]int, len(traceHeader))
	w[0] = len(time.Time{}.Format(traceTimeFormat))
	w[1] = len("+59m59.999s")
	for _, s := range catalog.Services {
		w[2] = max(w[2], len(s))
	}
	w[3] = len(catalog.SchedulePrefix+".orders.deadline.") + len(id)
	w[5] = max(len("dead letter"), len("command"), len("invalid"))
	for _, ti := range catalog.Types() {
		w[3] = max(w[3], len(strings.Replace(ti.Subject, "<order-id>", id, 1)))
		w[5] = max(w[5], len(ti.CloudEventsType))
	}
	for _, st := range catalog.Streams {
		w[4] = max(w[4], len(st.Name)+len(":12345678"))
	}
	return w
}

func (p *tracePrinter) stamp(r *traceRow) {
	if p.count > 0 {
		r.gap = r.Time.Sub(p.prev)
		r.GapMS = r.gap.Milliseconds()
	}
	p.prev = r.Time
	p.count++
}

func (p *tracePrinter) cells(r traceRow) []string {
	return []string{
		r.Time.Format(traceTimeFormat),
		formatGap(r.gap),
		r.Service,
		r.Subject,
		fmt.Sprintf("%s:%d", r.Stream, r.Sequence),
		r.Type,
		r.Summary,
	}
}

// formatGap is "+1.234s"; a live row stored before the previous one
// (streams deliver independently under --follow) shows "-12ms".
func formatGap(d time.Duration) string {
	if d = d.Round(time.Millisecond); d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}

func (p *tracePrinter) history(rows []traceRow) error {
	for i := range rows {
		p.stamp(&rows[i])
	}
	if p.json {
		return writeJSONLines(p.w, rows)
	}
	// The widths are fixed here, once, from the columns' minimums and the
	// history; live rows reuse them.
	p.widths = make([]int, len(traceHeader))
	copy(p.widths, p.minWidths)
	all := [][]string{traceHeader}
	for _, r := range rows {
		all = append(all, p.cells(r))
	}
	for _, cs := range all {
		for i, c := range cs {
			p.widths[i] = max(p.widths[i], utf8.RuneCountInString(c))
		}
	}
	if err := p.line(traceHeader, false); err != nil {
		return err
	}
	for _, r := range rows {
		if err := p.line(p.cells(r), r.Type == "dead letter" || r.Type == "invalid"); err != nil {
			return err
		}
	}
	return nil
}

// live prints a row of --follow, aligned with the history table.
func (p *tracePrinter) live(r traceRow) error {
	p.stamp(&r)
	if p.json {
		return writeJSONLines(p.w, []traceRow{r})
	}
	return p.line(p.cells(r), r.Type == "dead letter" || r.Type == "invalid")
}

// line writes cells padded to the fixed widths, two spaces between
// columns; red marks the last cell of a failure.
func (p *tracePrinter) line(cs []string, red bool) error {
	var b strings.Builder
	for i, c := range cs {
		if i == len(cs)-1 {
			if red {
				c = colour(p.colour, "31", c)
			}
			b.WriteString(c)
			break
		}
		b.WriteString(c)
		pad := 2
		if i < len(p.widths) {
			pad = max(p.widths[i]-utf8.RuneCountInString(c), 0) + 2
		}
		b.WriteString(strings.Repeat(" ", pad))
	}
	_, err := fmt.Fprintln(p.w, b.String())
	return err
}

func (p *tracePrinter) state(id string, f *traceFold) error {
	state, reason := f.result()
	if p.json {
		return writeJSONLines(p.w, []traceState{{Kind: "state", OrderID: id, State: state, Reason: reason}})
	}
	line := state
	if reason != "" {
		line += " (" + reason + ")"
	}
	code := "33"
	switch state {
	case catalog.StatusConfirmed:
		code = "32"
	case catalog.StatusCancelled:
		code = "31"
	}
	_, err := fmt.Fprintf(p.w, "\nstate: %s\n", colour(p.colour, code, line))
	return err
}
