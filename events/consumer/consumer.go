// Package consumer runs a service's handlers over its durable JetStream
// pull consumers: explicit acks, back-off on transient errors applied with
// NakWithDelay, a bounded number of deliveries, a dead-letter queue for
// messages that cannot be handled, and batches — the messages fetched
// together are applied in one database transaction (inbox claims, state
// changes, outbox rows); a message that fails is set aside, applied in a
// transaction of its own, and the others are applied together again, so a
// poison message never holds its neighbours back.
//
// A Router sends each message to the handler of its subject; the handler
// returns the Work that handles it and the runner carries the Work out.
package consumer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/dlq"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("consumer: invalid config")

// Message is one delivery of a stream message to a handler.
type Message struct {
	Subject   string
	Data      []byte
	Header    nats.Header
	Stream    string
	Sequence  uint64    // stream sequence
	Delivered uint64    // 1 on the first delivery
	Time      time.Time // when the stream stored it
	Consumer  string    // the durable consumer that received it
	// Route is the subject pattern of the route that took the message,
	// set by the Router: a destination template for metrics and traces,
	// where the subject itself carries an id.
	Route string
	// Set by the route's decoder once the message is decoded, for logs,
	// metrics and traces, and ID as the cause of the events its handling
	// creates (see events.WithCause).
	ID      string // the event's id, or the command's idempotency key
	Type    string // the CloudEvents type, or the command's subject
	Key     string // what the message is about: an order id, a SKU
	KeyName string // what kind of key Key is, as a log attribute: "order_id", "sku"
	raw     jetstream.Msg
}

type messageKey struct{}

// WithMessage returns a context carrying m: the runner handles every
// message in such a context, so that a log handler (or anything else)
// can say which message a record is about.
func WithMessage(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, messageKey{}, m)
}

// MessageFrom returns the message ctx carries, or nil.
func MessageFrom(ctx context.Context) *Message {
	m, _ := ctx.Value(messageKey{}).(*Message)
	return m
}

// InProgress tells the server the handler is still working, resetting the
// ack wait so a long call does not cause a redelivery.
func (m *Message) InProgress() error {
	if m.raw == nil {
		return nil
	}
	return m.raw.InProgress()
}

// KeepAlive calls InProgress every interval until the returned stop is
// called, so a handler waiting on a slow dependency is not redelivered to
// another instance meanwhile. Use an interval well under the ack wait.
func (m *Message) KeepAlive(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress() // best effort: at worst a redelivery, found in the inbox
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// CommandKey returns the idempotency key of a command message: its
// Nats-Msg-Id header when set, else the command's own id, else the id of its
// CloudEvents envelope, else its stream position (which at least makes a
// redelivery a duplicate). The subject prefixes it, so keys of different
// commands never collide.
func (m *Message) CommandKey(commandID, envelopeID string) string {
	id := m.Header.Get(jetstream.MsgIDHeader)
	if id == "" {
		id = commandID
	}
	if id == "" {
		id = envelopeID
	}
	if id == "" {
		id = m.Stream + ":" + strconv.FormatUint(m.Sequence, 10)
	}
	return m.Subject + ":" + id
}

// Source is one durable consumer a service reads: usually one per stream,
// and more where kinds of message need limits of their own (see Skip).
type Source struct {
	// Stream and Durable name the consumer; Durable is stable across
	// releases (never derived from a Go type name).
	Stream  string
	Durable string
	// FilterSubjects limits the subjects delivered (default: all).
	FilterSubjects []string
	// Skip lists subject patterns that another source of the same
	// consumer takes from the same stream: a message matching one is
	// acknowledged as it arrives, without being handled (nor seen by the
	// middleware). It lets a catch-all source (every command to a
	// service, so that one without a route is dead-lettered) stand beside
	// a source per kind of message, each with its own durable consumer
	// and so its own MaxAckPending: a flood of one kind being retried
	// fills its own consumer's ack-pending limit, never another kind's.
	Skip []string
}

// Config describes a service's consumer: the streams it reads, its
// handler, and how it retries.
type Config struct {
	Sources []Source
	Handler Handler
	// Outbox is the service's outbox, in the database whose transactions
	// apply Work (the inbox lives there too). Required when the handler
	// returns Work with an inbox Key or an Apply.
	Outbox *outbox.Outbox
	// DLQSubject is the prefix dead letters are published under; the
	// original subject is appended ("dlq.orders" + "." + subject).
	DLQSubject string
	// MaxDeliver bounds deliveries: a message still failing on its last
	// delivery goes to the dead-letter queue (default 8).
	MaxDeliver int
	// Backoff returns the delay before redelivery after the n-th failed
	// delivery (default: 200ms doubling up to 30s).
	Backoff func(delivered int) time.Duration
	// EarlyBackoff returns the delay before redelivery of a message that
	// came before one it follows (events.Early) after its n-th delivery
	// (default: 5ms doubling up to 30s). It starts far shorter than
	// Backoff: what it follows is usually milliseconds behind on another
	// stream this service reads, and a saga should not wait 200ms for it.
	EarlyBackoff func(delivered int) time.Duration
	// ReorderWait is how long a message that came before one it follows
	// (events.Early) is retried, counted from when the stream stored it,
	// before it goes to the dead-letter queue (default 5m: longer than a
	// consumer paused or a server restarted usually stays behind).
	ReorderWait time.Duration
	// AckWait is how long the server waits for an ack before redelivering
	// (default 30s).
	AckWait time.Duration
	// Batch is the most messages applied in one transaction (default 1:
	// one transaction per message). Messages are batched only when they
	// are already fetched: a quiet consumer applies each at once.
	Batch int
	// Concurrency is how many messages' After run at once (default 4).
	// Messages wait for their After, or run it, up to max(2×Batch,
	// 4×Concurrency) of them and a batch more: while that many do, the
	// consumer takes no new message (see maxWaiting).
	Concurrency int
	// HandlerTimeout bounds applying a batch and one message's After
	// (default: two thirds of AckWait, so a handler gives up before the
	// server redelivers its message to another instance).
	HandlerTimeout time.Duration
	// Middleware wraps the handling of every message, in order: the
	// first is the outermost (its done runs last). Tracing, metrics and
	// logging live here, once for every handler.
	Middleware []Middleware
	// Logger receives the runner's own failures: an ack, a nak or a
	// dead-letter publish that did not go through (default: discard).
	// What became of each message is for a Middleware to log (see
	// LogOutcomes).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 8
	}
	if c.Backoff == nil {
		c.Backoff = ExponentialBackoff(200*time.Millisecond, 30*time.Second)
	}
	if c.EarlyBackoff == nil {
		c.EarlyBackoff = ExponentialBackoff(5*time.Millisecond, 30*time.Second)
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.ReorderWait == 0 {
		c.ReorderWait = 5 * time.Minute
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = c.AckWait * 2 / 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	if len(c.Sources) == 0 {
		return fmt.Errorf("%w: no sources", ErrInvalidConfig)
	}
	for _, s := range c.Sources {
		if s.Stream == "" || s.Durable == "" {
			return fmt.Errorf("%w: a source needs a stream and a durable", ErrInvalidConfig)
		}
	}
	switch {
	case c.Handler == nil:
		return fmt.Errorf("%w: no handler", ErrInvalidConfig)
	case c.DLQSubject == "":
		return fmt.Errorf("%w: %s has no DLQ subject", ErrInvalidConfig, c.Sources[0].Durable)
	case c.MaxDeliver < 1:
		return fmt.Errorf("%w: max deliver %d < 1", ErrInvalidConfig, c.MaxDeliver)
	case c.ReorderWait < 0:
		return fmt.Errorf("%w: reorder wait %s < 0", ErrInvalidConfig, c.ReorderWait)
	case c.Batch < 1:
		return fmt.Errorf("%w: batch %d < 1", ErrInvalidConfig, c.Batch)
	case c.Concurrency < 1:
		return fmt.Errorf("%w: concurrency %d < 1", ErrInvalidConfig, c.Concurrency)
	}
	return nil
}

// ExponentialBackoff returns first, 2×first, 4×first, … capped at max.
func ExponentialBackoff(first, max time.Duration) func(int) time.Duration {
	return func(delivered int) time.Duration {
		d := first
		for i := 1; i < delivered && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}

// fetched is a message as its source's puller received it.
type fetched struct {
	raw jetstream.Msg
	src *Source
}

// Consumer is a running consumer.
type Consumer struct {
	cfg       Config
	js        jetstream.JetStream
	iters     []jetstream.MessagesContext
	msgs      chan fetched
	after     chan struct{} // a slot per After running
	waiting   chan struct{} // a slot per message between its batch and its settling
	finishing sync.WaitGroup
	baseCtx   context.Context
	done      chan struct{}
	stopping  chan struct{} // closed by Stop
	stop      sync.Once
}

// Start creates or updates the durable consumer of every source and starts
// handling messages in the background. The server's own MaxDeliver is
// unlimited on purpose: the runner enforces the bound itself so that an
// exhausted message always reaches the dead-letter queue, even when the
// process dies during its last delivery. If a source cannot be started,
// the ones started are stopped and the error is returned.
func Start(ctx context.Context, js jetstream.JetStream, cfg Config) (*Consumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:      cfg,
		js:       js,
		msgs:     make(chan fetched, cfg.Batch),
		after:    make(chan struct{}, cfg.Concurrency),
		waiting:  make(chan struct{}, maxWaiting(cfg)),
		baseCtx:  context.WithoutCancel(ctx),
		done:     make(chan struct{}),
		stopping: make(chan struct{}),
	}
	// Enough fetched ahead to fill a batch while the previous one commits,
	// and to keep every After slot busy.
	pull := max(2*cfg.Batch, 2*cfg.Concurrency)
	for _, src := range cfg.Sources {
		cc := jetstream.ConsumerConfig{
			Durable:       src.Durable,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: 1000,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}
		switch len(src.FilterSubjects) {
		case 0:
		case 1:
			cc.FilterSubject = src.FilterSubjects[0]
		default:
			cc.FilterSubjects = src.FilterSubjects
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, src.Stream, cc)
		if err != nil {
			c.stopIters()
			return nil, fmt.Errorf("consumer %s/%s: create: %w", src.Stream, src.Durable, err)
		}
		iter, err := cons.Messages(jetstream.PullMaxMessages(pull), jetstream.PullExpiry(pullExpiry))
		if err != nil {
			c.stopIters()
			return nil, fmt.Errorf("consumer %s/%s: subscribe: %w", src.Stream, src.Durable, err)
		}
		c.iters = append(c.iters, iter)
	}
	go c.run()
	return c, nil
}

// pullExpiry is how long one pull request of a consumer's iterator lasts
// before the client asks again (nats.go's default is 30s). A consumer that
// held back while its After calls were busy was seen, on a loaded machine,
// to get nothing more until its pull request expired: 22 of 200 messages
// waited over 20s. A shorter request bounds such a stall, for one more
// request every few seconds per idle consumer.
const pullExpiry = 5 * time.Second

func (c *Consumer) stopIters() {
	for _, it := range c.iters {
		it.Stop()
	}
}

// run pulls from every source into one queue and applies what it finds
// there in batches until Stop.
func (c *Consumer) run() {
	defer close(c.done)
	var pullers sync.WaitGroup
	for i, it := range c.iters {
		src := &c.cfg.Sources[i]
		pullers.Go(func() { c.pull(src, it) })
	}
	go func() {
		pullers.Wait()
		close(c.msgs)
	}()
	batch := make([]fetched, 0, c.cfg.Batch)
	for m := range c.msgs {
		batch = append(batch[:0], m)
	fill:
		for len(batch) < c.cfg.Batch {
			select {
			case m, ok := <-c.msgs:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		c.handleBatch(batch)
	}
	c.finishing.Wait()
}

func (c *Consumer) pull(src *Source, it jetstream.MessagesContext) {
	for {
		m, err := it.Next()
		if err == nil {
			if skipped(src.Skip, m.Subject()) {
				// Another source of this consumer takes it.
				if err := m.Ack(); err != nil {
					c.cfg.Logger.Debug("consumer: ack of a message another source takes", "stream", src.Stream, "consumer", src.Durable, "err", err)
				}
				continue
			}
			c.msgs <- fetched{raw: m, src: src}
			continue
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			select {
			case <-c.stopping:
			default:
				// Not our Stop: the server ended the subscription (the
				// consumer was deleted, say). Say so loudly; nothing is
				// consumed from this stream until the process restarts.
				c.cfg.Logger.Error("consumer: stopped pulling unexpectedly", "stream", src.Stream, "consumer", src.Durable)
			}
			return
		}
		// Heartbeat misses and reconnects surface here; the iterator
		// recovers by itself, so keep pulling — after a pause, so an error
		// that repeats at once (a closed connection) cannot spin.
		c.cfg.Logger.Debug("consumer: pull", "stream", src.Stream, "consumer", src.Durable, "err", err)
		select {
		case <-c.stopping:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func skipped(patterns []string, subject string) bool {
	for _, p := range patterns {
		if MatchSubject(p, subject) {
			return true
		}
	}
	return false
}

// Stop stops pulling, lets the messages already received be handled, and
// returns when they have. Messages not yet acked are redelivered to
// another instance or after restart.
func (c *Consumer) Stop() {
	c.stop.Do(func() {
		close(c.stopping)
		for _, it := range c.iters {
			it.Drain()
		}
	})
	<-c.done
}

// Done is closed once the consumer has stopped.
func (c *Consumer) Done() <-chan struct{} { return c.done }

// item is one message of a batch on its way through.
type item struct {
	m       *Message
	ctx     context.Context
	done    []func(Outcome) // the middleware's, innermost first
	work    Work
	first   bool // work is the handler's own, not a follow-up
	applied bool
	dup     bool // the inbox showed the message was handled before
	err     error
}

// handleBatch plans every message and applies the batch's work in one
// transaction (see applyTogether for when a message of it fails). Messages
// with nothing more to do are settled at once; the others finish — their
// After, and the follow-up work those return — on a goroutine of their
// own while the batcher moves on to the next batch, unless too many wait
// for their After already (see maxWaiting).
func (c *Consumer) handleBatch(raws []fetched) {
	items := make([]*item, 0, len(raws))
	for _, f := range raws {
		m, ok := c.message(f.raw, f.src.Durable)
		if !ok {
			continue
		}
		it := &item{m: m, ctx: WithMessage(c.baseCtx, m), first: true}
		for _, mw := range c.cfg.Middleware {
			var done func(Outcome)
			it.ctx, done = mw(it.ctx, m)
			if done != nil {
				it.done = append(it.done, done)
			}
		}
		it.work, it.err = c.plan(it.ctx, m)
		if m.ID != "" {
			it.ctx = events.WithCause(it.ctx, m.ID)
		}
		items = append(items, it)
	}
	c.apply(items)
	var later []*item
	for _, it := range items {
		if it.err != nil || it.work.After == nil {
			c.settle(it)
			continue
		}
		later = append(later, it)
	}
	if len(later) > 0 {
		// Backpressure: while the messages already waiting for their After
		// fill every slot, the batcher stops here, and so stops taking new
		// messages, instead of holding ever more of them in memory when
		// the calls are slower than the flow; those it would have taken
		// wait in the stream (see maxWaiting).
		for range later {
			c.waiting <- struct{}{}
		}
		c.finishing.Go(func() { c.finish(later) })
	}
}

// maxWaiting is how many messages may wait for their After (or run it):
// enough to keep every After slot busy and the next batch coming while
// calls are in flight, and at least a batch, which must fit. Without a
// bound a consumer whose calls fall behind keeps taking messages until
// their ack wait ends, then takes the server's redeliveries of them too,
// and its memory grows with the backlog. With it, the last message waits
// for about maxWaiting/Concurrency calls: calls slower than AckWait over
// that still see messages redelivered while they wait (found in the
// inbox, so only wasted work).
func maxWaiting(cfg Config) int { return max(2*cfg.Batch, 4*cfg.Concurrency) }

// finish runs the items' After calls, each on a slot of its own, applies
// the follow-up work they return together, and repeats until no item has
// more to do; then it settles each item.
func (c *Consumer) finish(items []*item) {
	round := items
	for step := 0; len(round) > 0; step++ {
		var calls sync.WaitGroup
		for _, it := range round {
			if step == maxFollowUps {
				it.err = events.Permanent(fmt.Errorf("consumer: more than %d follow-ups for one message", maxFollowUps))
				continue
			}
			c.after <- struct{}{}
			calls.Go(func() {
				defer func() { <-c.after }()
				ctx, cancel := context.WithTimeout(it.ctx, c.cfg.HandlerTimeout)
				defer cancel()
				after := it.work.After
				it.work, it.first = Work{}, false
				it.err = safe(func() (err error) {
					it.work, err = after(ctx, it.applied)
					return err
				})
			})
		}
		calls.Wait()
		c.apply(round)
		next := round[:0:0]
		for _, it := range round {
			if it.err == nil && it.work.After != nil {
				next = append(next, it)
			}
		}
		round = next
	}
	for _, it := range items {
		c.settle(it)
		<-c.waiting
	}
}

func (c *Consumer) message(raw jetstream.Msg, durable string) (*Message, bool) {
	meta, err := raw.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack.
		c.cfg.Logger.Error("consumer: message without metadata", "subject", raw.Subject(), "err", err)
		return nil, false
	}
	// Until its route decodes it, a message is known by its Nats-Msg-Id
	// (an event's id, as the relay publishes it), else its position.
	id := raw.Headers().Get(jetstream.MsgIDHeader)
	if id == "" {
		id = meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	return &Message{
		ID:        id,
		Consumer:  durable,
		Subject:   raw.Subject(),
		Data:      raw.Data(),
		Header:    raw.Headers(),
		Stream:    meta.Stream,
		Sequence:  meta.Sequence.Stream,
		Delivered: meta.NumDelivered,
		Time:      meta.Timestamp,
		raw:       raw,
	}, true
}

// plan asks the handler for the message's Work; a panic is a permanent
// failure, so one poison message cannot crash the process or loop forever.
func (c *Consumer) plan(ctx context.Context, m *Message) (w Work, err error) {
	err = safe(func() error {
		w, err = c.cfg.Handler(ctx, m)
		return err
	})
	return w, err
}

// safeFn is fn with a panic turned into its permanent error, so that a
// unit of a batch that panics is the failing unit (see applyTogether), not
// the whole batch; nil stays nil.
func safeFn(fn func(context.Context, *sql.Tx) ([]events.Outgoing, error)) inbox.Fn {
	if fn == nil {
		return nil
	}
	return func(ctx context.Context, tx *sql.Tx) (out []events.Outgoing, err error) {
		err = safe(func() error {
			out, err = fn(ctx, tx)
			return err
		})
		return out, err
	}
}

// safe runs f, turning a panic into a permanent error.
func safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = events.Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return f()
}

// apply runs the inbox claims and Apply of the items' work: together in
// one transaction (applyTogether), and those that could not be, or a lone
// one, each in its own, where a unit that lost a creation race is run
// again (inbox.Apply).
func (c *Consumer) apply(items []*item) {
	var todo []*item
	for _, it := range items {
		if it.err != nil {
			continue
		}
		if !it.work.needsDB() {
			it.applied = true // nothing to claim or change
			continue
		}
		todo = append(todo, it)
	}
	if len(todo) == 0 {
		return
	}
	if c.cfg.Outbox == nil {
		for _, it := range todo {
			it.err = errNoOutbox
		}
		return
	}
	alone := c.applyTogether(todo)
	for _, it := range alone {
		ictx, cancel := context.WithTimeout(it.ctx, c.cfg.HandlerTimeout)
		it.err = safe(func() error {
			applied, err := inbox.Apply(ictx, c.cfg.Outbox, it.work.Key, inbox.Fn(it.work.Apply))
			if err != nil {
				return err
			}
			it.setApplied(applied)
			return nil
		})
		cancel()
	}
}

// maxSetAside bounds how many failing units a batch sets aside: when the
// rest fails once more, it is applied one message per transaction too.
const maxSetAside = 3

// applyTogether applies the items' work in one transaction. When one unit
// fails, it sets that one aside and applies the rest together again: a
// message that fails (a poison message, or one that came before what it
// follows) costs its batch one more transaction, not one per message. It
// returns the items still to be applied, each in a transaction of its own:
// those not applied together (after a failure that names no unit — the
// begin's or the commit's — or one more than maxSetAside), then the ones
// set aside, so that a message that came before another of its batch is
// tried again after it.
// Units of a batch may be applied out of their order this way, as messages
// may arrive in any order: handlers do not depend on it.
func (c *Consumer) applyTogether(todo []*item) (alone []*item) {
	if len(todo) < 2 {
		return todo
	}
	ctx, cancel := context.WithTimeout(c.baseCtx, c.cfg.HandlerTimeout)
	defer cancel()
	together := todo
	var aside []*item
	for len(together) > 1 {
		units := make([]inbox.Unit, len(together))
		for i, it := range together {
			// The batch's deadline, the message's own values (its trace,
			// its id as the cause of the events it creates).
			units[i] = inbox.Unit{Key: it.work.Key, Fn: safeFn(it.work.Apply), Values: it.ctx}
		}
		var applied []bool
		err := safe(func() (err error) {
			applied, err = inbox.ApplyAll(ctx, c.cfg.Outbox, units)
			return err
		})
		if err == nil {
			for i, it := range together {
				it.setApplied(applied[i])
			}
			return aside
		}
		var unit *inbox.UnitError
		if !errors.As(err, &unit) || unit.Units != len(together) || len(aside) == maxSetAside {
			c.cfg.Logger.Debug("consumer: batch failed, applying its messages one by one", "messages", len(together), "err", err)
			break
		}
		c.cfg.Logger.Debug("consumer: a message of the batch failed, applying the others without it", "messages", len(together), "err", err)
		aside = append(aside, together[unit.Index])
		together = slices.Concat(together[:unit.Index], together[unit.Index+1:])
	}
	return slices.Concat(together, aside)
}

// setApplied records whether the item's work was applied (and committed);
// the handler's own work not applied, with a claim, means the message is
// a duplicate.
func (it *item) setApplied(applied bool) {
	it.applied = applied
	if it.first && !applied && it.work.Key.EventID != "" {
		it.dup = true
	}
	if applied && it.work.Committed != nil {
		it.work.Committed(it.ctx)
	}
}

// settle acks, retries or dead-letters a message by the outcome of its
// handling, then tells the middleware what became of it.
func (c *Consumer) settle(it *item) {
	o := c.outcome(it.ctx, it.m, it.err)
	if o.Result == Handled && it.dup {
		o.Result = Duplicate
	}
	for i := len(it.done) - 1; i >= 0; i-- {
		it.done[i](o)
	}
}

func (c *Consumer) outcome(ctx context.Context, m *Message, herr error) Outcome {
	o := c.cfg.verdict(m, herr)
	switch o.Result {
	case Handled:
		if err := m.raw.Ack(); err != nil {
			c.cfg.Logger.WarnContext(ctx, "consumer: ack failed; the message will be redelivered and found in the inbox", "err", err)
		}
		return o
	case DeadLettered:
		return c.deadLetter(ctx, m, o.Err)
	default:
		return c.retry(ctx, m, o.Err, o.RetryIn)
	}
}

// verdict decides what becomes of a delivery whose handling ended with
// herr, before anything is done about it: the one place that tells a
// retry from a dead letter, for the runner and for HandleOffline alike.
func (c *Config) verdict(m *Message, herr error) Outcome {
	switch {
	case herr == nil:
		return Outcome{Result: Handled}
	case events.IsPermanent(herr):
		return Outcome{Result: DeadLettered, Err: herr}
	case events.KindOf(herr) == events.KindUnavailable:
		// A dependency is down, not the message: back off as long as it
		// takes, at the longest back-off once past MaxDeliver.
		return Outcome{Result: Retried, Err: herr, RetryIn: c.Backoff(min(int(m.Delivered), c.MaxDeliver))}
	case events.KindOf(herr) == events.KindEarly:
		// Its predecessor may be further back in another stream: wait by
		// the clock, not by the count, from when the stream stored it.
		if waited := time.Since(m.Time); m.Time.IsZero() || waited < c.ReorderWait {
			return Outcome{Result: Retried, Err: herr, RetryIn: c.EarlyBackoff(int(m.Delivered))}
		}
		return Outcome{Result: DeadLettered, Err: fmt.Errorf("gave up after waiting %s for what it follows (reorder wait %s): %w", time.Since(m.Time).Round(time.Second), c.ReorderWait, herr)}
	case int(m.Delivered) >= c.MaxDeliver:
		return Outcome{Result: DeadLettered, Err: fmt.Errorf("gave up after %d deliveries: %w", m.Delivered, herr)}
	default:
		return Outcome{Result: Retried, Err: herr, RetryIn: c.Backoff(int(m.Delivered))}
	}
}

// retry naks m so that it comes back after delay.
func (c *Consumer) retry(ctx context.Context, m *Message, herr error, delay time.Duration) Outcome {
	if err := m.raw.NakWithDelay(delay); err != nil {
		c.cfg.Logger.WarnContext(ctx, "consumer: nak failed; the server redelivers after the ack wait", "err", err)
	}
	return Outcome{Result: Retried, Err: herr, RetryIn: delay}
}

// deadLetter publishes the message with its reason to the DLQ and only then
// terminates it. If the DLQ publish fails, the message is nak'ed and comes
// back: it is never dropped.
func (c *Consumer) deadLetter(ctx context.Context, m *Message, reason error) Outcome {
	// The dlq package writes every dead-letter header, and reads them back
	// for the operator's tools.
	dl := dlq.NewMsg(c.cfg.DLQSubject, dlq.Failure{
		Subject: m.Subject, Header: m.Header, Data: m.Data,
		Stream: m.Stream, Sequence: m.Sequence, Delivered: m.Delivered,
		Consumer: m.Consumer, Reason: reason, At: time.Now(),
	})

	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(pctx, dl); err != nil {
		c.cfg.Logger.ErrorContext(ctx, "consumer: dead-letter publish failed, will retry", "reason", reason, "err", err)
		delay := c.cfg.Backoff(int(m.Delivered))
		_ = m.raw.NakWithDelay(delay)
		return Outcome{Result: Retried, Err: reason, RetryIn: delay}
	}
	if err := m.raw.TermWithReason(truncate(reason.Error(), 200)); err != nil {
		c.cfg.Logger.WarnContext(ctx, "consumer: term failed after dead-lettering", "err", err)
	}
	return Outcome{Result: DeadLettered, Err: reason}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
