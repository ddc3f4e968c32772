package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/history"
)

// The rows `choreo status --json` writes, one object per line, told apart
// by "kind".
type (
	statusStream struct {
		Kind      string `json:"kind"` // "stream"
		Name      string `json:"name"`
		Messages  uint64 `json:"messages"`
		Bytes     uint64 `json:"bytes"`
		FirstSeq  uint64 `json:"first_seq"`
		LastSeq   uint64 `json:"last_seq"`
		Consumers int    `json:"consumers"`
	}
	statusConsumer struct {
		Kind        string `json:"kind"` // "consumer"
		Stream      string `json:"stream"`
		Consumer    string `json:"consumer"`
		Pending     uint64 `json:"pending"`
		AckPending  int    `json:"ack_pending"`
		Redelivered int    `json:"redelivered"`
	}
	statusService struct {
		Kind      string   `json:"kind"` // "service"
		Service   string   `json:"service"`
		Instances int      `json:"instances"`
		IDs       []string `json:"instance_ids"`
		// OutboxBacklog is summed over distinct databases (replicas
		// sharing one count it once); the age is the oldest of them.
		OutboxBacklog          int      `json:"outbox_backlog"`
		OutboxOldestAgeSeconds float64  `json:"outbox_oldest_age_seconds"`
		Errors                 []string `json:"errors,omitempty"`
		// Stores is how many distinct stores its instances report: more
		// than one is a mistake (see statusSummarize).
		Stores  int    `json:"stores"`
		Warning string `json:"warning,omitempty"`
	}
	statusDLQ struct {
		Kind   string `json:"kind"` // "dlq"
		Stream string `json:"stream"`
		Depth  uint64 `json:"depth"`
	}
)

// statusGatherQuiet is how long `choreo status` keeps listening for more
// service instances after the last one answered, and how long it waits for
// the first (statusGatherFirst).
var (
	statusGatherQuiet = 300 * time.Millisecond
	statusGatherFirst = time.Second
)

// runStatus prints the state of the system: streams, consumers, services
// (from their micro stats, every instance) and the DLQ depth.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	tf := newToolFlags("status", "status [--json] [--nats-url URL]",
		"choreo status --nats-url nats://127.0.0.1:4222   # streams, consumers, services' outbox backlog, DLQ depth",
		stderr, getenv)
	pos, err := tf.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: choreo status takes no arguments, got %q", errUsage, pos)
	}
	nc, js, err := tf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	streams, consumers, dlq, err := statusStreams(ctx, js, stderr)
	if err != nil {
		return err
	}
	services, err := statusServices(ctx, nc)
	if err != nil {
		return err
	}

	if tf.json {
		var rows []any
		for _, s := range streams {
			rows = append(rows, s)
		}
		for _, c := range consumers {
			rows = append(rows, c)
		}
		for _, s := range services {
			rows = append(rows, s)
		}
		rows = append(rows, dlq)
		return writeJSONLines(stdout, rows)
	}

	fmt.Fprintln(stdout, "STREAMS")
	t := newTable(stdout, "NAME", "MESSAGES", "BYTES", "FIRST SEQ", "LAST SEQ", "CONSUMERS")
	for _, s := range streams {
		t.row(s.Name, s.Messages, s.Bytes, s.FirstSeq, s.LastSeq, s.Consumers)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nCONSUMERS")
	t = newTable(stdout, "STREAM", "CONSUMER", "PENDING", "ACK PENDING", "REDELIVERED")
	for _, c := range consumers {
		t.row(c.Stream, c.Consumer, c.Pending, c.AckPending, c.Redelivered)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nSERVICES")
	t = newTable(stdout, "SERVICE", "INSTANCES", "OUTBOX BACKLOG", "OLDEST ROW AGE")
	for _, s := range services {
		backlog, age := "-", "-"
		if s.Instances > 0 {
			backlog = fmt.Sprint(s.OutboxBacklog)
			if s.OutboxBacklog > 0 {
				age = statusFormatAge(s.OutboxOldestAgeSeconds)
			}
			if len(s.Errors) > 0 {
				backlog += " (error: " + s.Errors[0] + ")"
			}
		}
		t.row(s.Service, s.Instances, backlog, age)
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, s := range services {
		if s.Warning != "" {
			fmt.Fprintf(stdout, "\nWARNING %s: %s\n", s.Service, s.Warning)
		}
	}
	depth := fmt.Sprint(dlq.Depth)
	fmt.Fprintf(stdout, "\nDLQ depth: %s\n", colour(dlq.Depth > 0 && isTerminal(stdout), "1;31", depth))
	return nil
}

// streamStatuses reads every choreo stream, its consumers and the DLQ
// depth. A stream the catalog declares but the server lacks is reported on
// stderr; none at all is an error.
func statusStreams(ctx context.Context, js jetstream.JetStream, stderr io.Writer) ([]statusStream, []statusConsumer, statusDLQ, error) {
	var (
		streams   []statusStream
		consumers []statusConsumer
		missing   []string
	)
	dlq := statusDLQ{Kind: "dlq", Stream: catalog.StreamDLQ}
	for _, spec := range catalog.Streams {
		st, err := js.Stream(ctx, spec.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			missing = append(missing, spec.Name)
			continue
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, nil, dlq, errors.New("JetStream is not enabled on this NATS server, so there are no choreo streams: start the services with choreo up or choreo serve")
		}
		if err != nil {
			return nil, nil, dlq, fmt.Errorf("stream %s: %w", spec.Name, err)
		}
		reach := history.ReachOf(st.CachedInfo())
		streams = append(streams, statusStream{
			Kind: "stream", Name: spec.Name,
			Messages: reach.Msgs, Bytes: reach.Bytes,
			FirstSeq: reach.FirstSeq, LastSeq: reach.LastSeq,
			Consumers: reach.Consumers,
		})
		if spec.Name == catalog.StreamDLQ {
			dlq.Depth = reach.Msgs
		}
		var cs []statusConsumer
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			if ci.Config.Durable == "" {
				// Ephemeral: someone's read in progress (choreo's tools
				// delete theirs when done). Operators watch the durables.
				continue
			}
			cs = append(cs, statusConsumer{
				Kind: "consumer", Stream: spec.Name, Consumer: ci.Name,
				Pending: ci.NumPending, AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered,
			})
		}
		if err := lister.Err(); err != nil {
			return nil, nil, dlq, fmt.Errorf("stream %s: consumers: %w", spec.Name, err)
		}
		slices.SortFunc(cs, func(a, b statusConsumer) int { return strings.Compare(a.Consumer, b.Consumer) })
		consumers = append(consumers, cs...)
	}
	if len(streams) == 0 {
		return nil, nil, dlq, errors.New("no choreo streams on this NATS server (none of " + statusStreamNames() + "): start the services with choreo up or choreo serve, or point --nats-url / NATS_URL at the right server")
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "choreo: warning: streams missing from the server: %s\n", strings.Join(missing, ", "))
	}
	return streams, consumers, dlq, nil
}

func statusStreamNames() string {
	names := make([]string, len(catalog.Streams))
	for i, s := range catalog.Streams {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// gatherServices asks every micro service for its stats on $SRV.STATS and
// collects the replies of all choreo-* instances: it waits up to
// statusGatherFirst for the first and stops statusGatherQuiet after the
// last. Every known service gets a row, with 0 instances when none answered.
func statusServices(ctx context.Context, nc *nats.Conn) ([]statusService, error) {
	replies, err := statusGather(ctx, nc, "$SRV.STATS", statusGatherFirst, statusGatherQuiet)
	if err != nil {
		return nil, err
	}
	byService := map[string][]microStatus{}
	for _, data := range replies {
		var st micro.Stats
		if err := json.Unmarshal(data, &st); err != nil || !strings.HasPrefix(st.Name, microPrefix) {
			continue
		}
		name := strings.TrimPrefix(st.Name, microPrefix)
		inst := microStatus{Service: name, Instance: st.ID, Error: "no status in its stats"}
		for _, ep := range st.Endpoints {
			if ep.Name == "status" && len(ep.Data) > 0 {
				inst = microStatus{}
				if err := json.Unmarshal(ep.Data, &inst); err != nil {
					inst.Error = "bad status: " + err.Error()
				}
				inst.Service, inst.Instance = name, st.ID
			}
		}
		byService[name] = append(byService[name], inst)
	}
	var out []statusService
	for _, m := range modules {
		out = append(out, statusSummarize(m.name, byService[m.name]))
		delete(byService, m.name)
	}
	var others []string
	for name := range byService {
		others = append(others, name)
	}
	slices.Sort(others)
	for _, name := range others {
		out = append(out, statusSummarize(name, byService[name]))
	}
	return out, nil
}

// summarize folds the instances of one service into a row: per database
// the largest backlog its replicas saw (they read it a moment apart), then
// the sum over databases; the oldest row age is the largest seen.
func statusSummarize(service string, insts []microStatus) statusService {
	s := statusService{Kind: "service", Service: service, Instances: len(insts), IDs: []string{}}
	perStore := map[string]int{}
	for _, in := range insts {
		s.IDs = append(s.IDs, in.Instance)
		if in.Error != "" {
			s.Errors = append(s.Errors, in.Instance+": "+in.Error)
			continue
		}
		perStore[in.Store] = max(perStore[in.Store], in.OutboxBacklog)
		s.OutboxOldestAgeSeconds = max(s.OutboxOldestAgeSeconds, in.OutboxOldestAgeSeconds)
	}
	for _, n := range perStore {
		s.OutboxBacklog += n
	}
	s.Stores = len(perStore)
	if s.Stores > 1 {
		// Replicas share the service's durable consumers: each gets part
		// of every saga's events, and no store holds them all.
		s.Warning = (fmt.Sprintf("%d instances on %d different stores: replicas of %s must share one store, or each sees only part of every saga; give every instance the same --db (CHOREO_DB_URL), or stop the odd one",
			len(insts), s.Stores, service))
	}
	slices.Sort(s.IDs)
	return s
}

// noResponders is the status of the message the server answers a request
// with when nobody subscribes to its subject.
const noResponders = "503"

// statusGather publishes an empty request on subject and collects every
// reply: up to first for the first one, then until quiet passes without
// another, or none when the server says nobody listens.
func statusGather(ctx context.Context, nc *nats.Conn, subject string, first, quiet time.Duration) ([][]byte, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("gather %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, fmt.Errorf("gather %s: %w", subject, err)
	}
	var out [][]byte
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case m := <-ch:
			if m.Header.Get("Status") == noResponders && len(m.Data) == 0 {
				// Nobody listens on subject: no reply will come.
				return out, nil
			}
			out = append(out, m.Data)
			timer.Reset(quiet)
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// formatAge prints an age in seconds as a short duration.
func statusFormatAge(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
