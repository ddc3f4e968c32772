// Package consumer runs a handler over a durable JetStream pull consumer:
// explicit acks, back-off on transient errors applied with NakWithDelay, a
// bounded number of deliveries, and a dead-letter queue for messages that
// cannot be handled.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
)

// Headers set on every dead letter, besides a copy of the original headers.
const (
	HeaderDLQReason       = "Choreo-Dlq-Reason"
	HeaderOriginalSubject = "Choreo-Original-Subject"
	HeaderOriginalStream  = "Choreo-Original-Stream"
	HeaderOriginalSeq     = "Choreo-Original-Sequence"
	HeaderDeliveryCount   = "Choreo-Delivery-Count"
	HeaderConsumer        = "Choreo-Consumer"
	HeaderFailedAt        = "Choreo-Failed-At"
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
	raw       jetstream.Msg
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

// Handler handles one message. It returns nil when the message is done
// (handled, or a duplicate), a Permanent error (see package events) when it
// can never be handled, and any other error to be retried after a back-off.
type Handler func(ctx context.Context, m *Message) error

// Config describes one durable consumer.
type Config struct {
	// Stream and Durable name the consumer; Durable is stable across
	// releases (never derived from a Go type name).
	Stream  string
	Durable string
	// FilterSubjects limits the subjects delivered (default: all).
	FilterSubjects []string
	// DLQSubject is the prefix dead letters are published under; the
	// original subject is appended ("dlq.orders" + "." + subject).
	DLQSubject string
	// MaxDeliver bounds deliveries: a message still failing on its last
	// delivery goes to the dead-letter queue (default 8).
	MaxDeliver int
	// Backoff returns the delay before redelivery after the n-th failed
	// delivery (default: 200ms doubling up to 30s).
	Backoff func(delivered int) time.Duration
	// AckWait is how long the server waits for an ack before redelivering
	// (default 30s).
	AckWait time.Duration
	// Concurrency is how many messages are handled at once (default 4).
	Concurrency int
	// HandlerTimeout bounds one handler call (default: two thirds of
	// AckWait, so a handler gives up before the server redelivers its
	// message to another instance).
	HandlerTimeout time.Duration
	// Logger receives one record per handled message (default: discard).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 8
	}
	if c.Backoff == nil {
		c.Backoff = ExponentialBackoff(200*time.Millisecond, 30*time.Second)
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
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
	switch {
	case c.Stream == "" || c.Durable == "":
		return fmt.Errorf("%w: stream and durable are required", ErrInvalidConfig)
	case c.DLQSubject == "":
		return fmt.Errorf("%w: %s/%s has no DLQ subject", ErrInvalidConfig, c.Stream, c.Durable)
	case c.MaxDeliver < 1:
		return fmt.Errorf("%w: max deliver %d < 1", ErrInvalidConfig, c.MaxDeliver)
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

// Consumer is a running consumer.
type Consumer struct {
	cfg      Config
	js       jetstream.JetStream
	handle   Handler
	iter     jetstream.MessagesContext
	baseCtx  context.Context
	done     chan struct{}
	stopping chan struct{} // closed by Stop
	stop     sync.Once
}

// Start creates or updates the durable consumer and starts handling
// messages in the background. The server's own MaxDeliver is unlimited on
// purpose: the runner enforces the bound itself so that an exhausted
// message always reaches the dead-letter queue, even when the process dies
// during its last delivery.
func Start(ctx context.Context, js jetstream.JetStream, cfg Config, h Handler) (*Consumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	switch len(cfg.FilterSubjects) {
	case 0:
	case 1:
		cc.FilterSubject = cfg.FilterSubjects[0]
	default:
		cc.FilterSubjects = cfg.FilterSubjects
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: create: %w", cfg.Stream, cfg.Durable, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * cfg.Concurrency))
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: subscribe: %w", cfg.Stream, cfg.Durable, err)
	}
	c := &Consumer{
		cfg:      cfg,
		js:       js,
		handle:   h,
		iter:     iter,
		baseCtx:  context.WithoutCancel(ctx),
		done:     make(chan struct{}),
		stopping: make(chan struct{}),
	}
	go c.run()
	return c, nil
}

func (c *Consumer) run() {
	defer close(c.done)
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range c.cfg.Concurrency {
		wg.Go(func() {
			for m := range msgs {
				c.process(m)
			}
		})
	}
	for {
		m, err := c.iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				select {
				case <-c.stopping:
				default:
					// Not our Stop: the server ended the subscription (the
					// consumer was deleted, say). Say so loudly; nothing
					// is consumed until the process restarts.
					c.cfg.Logger.Error("consumer: stopped pulling unexpectedly", "stream", c.cfg.Stream, "consumer", c.cfg.Durable)
				}
				break
			}
			// Heartbeat misses and reconnects surface here; the iterator
			// recovers by itself, so keep pulling — after a pause, so an
			// error that repeats at once (a closed connection) cannot spin.
			c.cfg.Logger.Debug("consumer: pull", "stream", c.cfg.Stream, "consumer", c.cfg.Durable, "err", err)
			select {
			case <-c.stopping:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		msgs <- m
	}
	close(msgs)
	wg.Wait()
}

// Stop stops pulling, lets the handlers finish the messages already
// received, and returns when they have. Messages not yet acked are
// redelivered to another instance or after restart.
func (c *Consumer) Stop() {
	c.stop.Do(func() {
		close(c.stopping)
		c.iter.Drain()
	})
	<-c.done
}

// Done is closed once the consumer has stopped.
func (c *Consumer) Done() <-chan struct{} { return c.done }

func (c *Consumer) process(raw jetstream.Msg) {
	meta, err := raw.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack.
		c.cfg.Logger.Error("consumer: message without metadata", "subject", raw.Subject(), "err", err)
		return
	}
	m := &Message{
		Subject:   raw.Subject(),
		Data:      raw.Data(),
		Header:    raw.Headers(),
		Stream:    meta.Stream,
		Sequence:  meta.Sequence.Stream,
		Delivered: meta.NumDelivered,
		Time:      meta.Timestamp,
		raw:       raw,
	}
	log := c.cfg.Logger.With("stream", m.Stream, "consumer", c.cfg.Durable, "subject", m.Subject,
		"seq", m.Sequence, "delivered", m.Delivered)
	if tp := m.Header.Get(events.HeaderTraceParent); tp != "" {
		if id, ok := events.TraceID(tp); ok {
			log = log.With("trace_id", id)
		}
	}

	ctx, cancel := context.WithTimeout(c.baseCtx, c.cfg.HandlerTimeout)
	defer cancel()
	if tp := m.Header.Get(events.HeaderTraceParent); tp != "" {
		ctx = events.WithTraceParent(ctx, tp)
	}
	start := time.Now()
	herr := c.safeHandle(ctx, m)
	switch {
	case herr == nil:
		if err := raw.Ack(); err != nil {
			log.Warn("consumer: ack failed; the message will be redelivered and found in the inbox", "err", err)
			return
		}
		log.Debug("consumer: handled", "took", time.Since(start))
	case events.IsPermanent(herr):
		c.deadLetter(m, herr, log)
	case events.KindOf(herr) == events.KindUnavailable:
		// A dependency is down, not the message: back off as long as it
		// takes, at the longest back-off once past MaxDeliver.
		delay := c.cfg.Backoff(min(int(m.Delivered), c.cfg.MaxDeliver))
		log.Warn("consumer: dependency unavailable, will retry", "err", herr, "retry_in", delay)
		if err := raw.NakWithDelay(delay); err != nil {
			log.Warn("consumer: nak failed; the server redelivers after the ack wait", "err", err)
		}
	case int(m.Delivered) >= c.cfg.MaxDeliver:
		c.deadLetter(m, fmt.Errorf("gave up after %d deliveries: %w", m.Delivered, herr), log)
	default:
		delay := c.cfg.Backoff(int(m.Delivered))
		log.Warn("consumer: handler failed, will retry", "err", herr, "retry_in", delay)
		if err := raw.NakWithDelay(delay); err != nil {
			log.Warn("consumer: nak failed; the server redelivers after the ack wait", "err", err)
		}
	}
}

// safeHandle turns a handler panic into a permanent error, so one poison
// message cannot crash the process or loop forever.
func (c *Consumer) safeHandle(ctx context.Context, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = events.Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return c.handle(ctx, m)
}

// deadLetter publishes the message with its reason to the DLQ and only then
// terminates it. If the DLQ publish fails, the message is nak'ed and comes
// back: it is never dropped.
func (c *Consumer) deadLetter(m *Message, reason error, log *slog.Logger) {
	dl := nats.NewMsg(c.cfg.DLQSubject + "." + m.Subject)
	dl.Data = m.Data
	for k, vs := range m.Header {
		if len(k) >= 5 && k[:5] == "Nats-" {
			continue
		}
		for _, v := range vs {
			dl.Header.Add(k, v)
		}
	}
	dl.Header.Set(HeaderDLQReason, reason.Error())
	dl.Header.Set(HeaderOriginalSubject, m.Subject)
	dl.Header.Set(HeaderOriginalStream, m.Stream)
	dl.Header.Set(HeaderOriginalSeq, strconv.FormatUint(m.Sequence, 10))
	dl.Header.Set(HeaderDeliveryCount, strconv.FormatUint(m.Delivered, 10))
	dl.Header.Set(HeaderConsumer, c.cfg.Durable)
	dl.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per (stream, sequence, consumer), even if we crash
	// between this publish and the Term below.
	dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%d:%s", m.Stream, m.Sequence, c.cfg.Durable))

	ctx, cancel := context.WithTimeout(c.baseCtx, 10*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(ctx, dl); err != nil {
		log.Error("consumer: dead-letter publish failed, will retry", "reason", reason, "err", err)
		_ = m.raw.NakWithDelay(c.cfg.Backoff(int(m.Delivered)))
		return
	}
	if err := m.raw.TermWithReason(truncate(reason.Error(), 200)); err != nil {
		log.Warn("consumer: term failed after dead-lettering", "err", err)
	}
	log.Error("consumer: dead-lettered", "reason", reason, "dlq_subject", dl.Subject)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
