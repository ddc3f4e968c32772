// Package history reads what a JetStream stream holds: from a sequence or a
// time, filtered by subject on the server, a page at a time, and without
// leaving anything behind on the server.
//
// It is the reading half of the tools (trace, replay, the DLQ list) and
// knows nothing of what the messages mean. Reading uses an ordered
// consumer — the server pushes pages, the client checks there is no gap —
// that is deleted as soon as the read ends, so `nats consumer report`
// shows only the consumers a system really runs. If the reader dies
// before it can delete it, the consumer's short inactivity threshold makes
// the server drop it soon after.
package history

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidOption is wrapped by every option and query error.
var ErrInvalidOption = errors.New("history: invalid option")

// ErrPastEnd is returned by Read when the query starts after the stream's
// last sequence.
var ErrPastEnd = errors.New("history: start is past the end of the stream")

// ConsumerPrefix begins the name of every consumer a Reader creates, so an
// operator can tell a tool's read from a service's consumer.
const ConsumerPrefix = "history"

// Query says what to read from one stream.
type Query struct {
	// Stream is the stream's name. Required.
	Stream string
	// Subjects keeps only messages on these subjects (NATS wildcards); the
	// server filters, so the rest never cross the wire. Empty: every
	// message.
	Subjects []string
	// FromSeq starts at this stream sequence; Since starts at the first
	// message stored at or after this time. At most one of them; neither:
	// from the first message.
	FromSeq uint64
	Since   time.Time
	// UpTo ends Read at this sequence. Zero: the stream's last sequence
	// when Read starts, so a busy stream's read ends. Follow ignores it.
	UpTo uint64
}

func (q Query) validate() error {
	switch {
	case q.Stream == "":
		return fmt.Errorf("%w: no stream", ErrInvalidOption)
	case q.FromSeq > 0 && !q.Since.IsZero():
		return fmt.Errorf("%w: a start sequence or a start time, not both", ErrInvalidOption)
	}
	for _, s := range q.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("%w: subject filter %q", ErrInvalidOption, s)
		}
	}
	return nil
}

// Message is one stored message.
type Message struct {
	Stream   string
	Sequence uint64
	// Time is when the server stored it, in UTC.
	Time    time.Time
	Subject string
	Header  nats.Header
	Data    []byte
}

// Reader reads streams. It is safe for concurrent use; each Read or Follow
// has a consumer of its own.
type Reader struct {
	js       jetstream.JetStream
	page     int
	idle     time.Duration
	inactive time.Duration
}

// Option configures a Reader.
type Option func(*Reader) error

// WithPageSize sets how many messages the server sends ahead of the
// reader: the most a read holds in memory. Default 256.
func WithPageSize(n int) Option {
	return func(r *Reader) error {
		if n < 1 {
			return fmt.Errorf("%w: page size %d, want at least 1", ErrInvalidOption, n)
		}
		r.page = n
		return nil
	}
}

// WithIdleCheck sets how long Read waits for the next message before it
// asks the server whether any is still pending: a message counted at the
// start can be removed before it is delivered (a limit, a purge, a fired
// schedule). Default 1s.
func WithIdleCheck(d time.Duration) Option {
	return func(r *Reader) error {
		if d <= 0 {
			return fmt.Errorf("%w: idle check %s, want > 0", ErrInvalidOption, d)
		}
		r.idle = d
		return nil
	}
}

// WithInactiveThreshold sets after how long without a pull the server
// deletes a consumer the reader could not delete itself (it crashed, or
// lost the connection). Default 30s; nats.go's ordered consumers would
// otherwise stay 5 minutes.
func WithInactiveThreshold(d time.Duration) Option {
	return func(r *Reader) error {
		if d < time.Second {
			return fmt.Errorf("%w: inactive threshold %s, want at least 1s", ErrInvalidOption, d)
		}
		r.inactive = d
		return nil
	}
}

// NewReader returns a Reader over js.
func NewReader(js jetstream.JetStream, opts ...Option) (*Reader, error) {
	r := &Reader{js: js, page: 256, idle: time.Second, inactive: 30 * time.Second}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Read calls fn for each message of q in stream order, from q's start up
// to q.UpTo (by default the last sequence when Read starts), and returns
// the sequence it read up to: Follow from one past it misses nothing and
// repeats nothing. At most a page of messages is in memory at a time.
//
// An error from fn stops the read and is returned as is. A stream that
// does not exist is an error wrapping jetstream.ErrStreamNotFound; a start
// past the stream's end wraps ErrPastEnd. Whatever happens, the consumer
// is deleted before Read returns.
func (r *Reader) Read(ctx context.Context, q Query, fn func(Message) error) (uint64, error) {
	if err := q.validate(); err != nil {
		return 0, err
	}
	s, err := r.js.Stream(ctx, q.Stream)
	if err != nil {
		return 0, fmt.Errorf("history: stream %s: %w", q.Stream, err)
	}
	info := s.CachedInfo()
	last := info.State.LastSeq
	if q.FromSeq > last {
		return last, fmt.Errorf("%w: stream %s ends at sequence %d, start %d", ErrPastEnd, q.Stream, last, q.FromSeq)
	}
	upTo := last
	if q.UpTo > 0 && q.UpTo < upTo {
		upTo = q.UpTo
	}
	if info.State.Msgs == 0 || q.FromSeq > upTo {
		return upTo, nil
	}
	err = r.consume(ctx, s, q, func(m Message, pending uint64) (bool, error) {
		if m.Sequence > upTo {
			return true, nil
		}
		if err := fn(m); err != nil {
			return true, err
		}
		return pending == 0 || m.Sequence >= upTo, nil
	}, true)
	return upTo, err
}

// Follow calls fn for each message of q as it is stored, from q's start
// (FromSeq, Since, or the first message), until ctx ends or fn returns an
// error. It returns nil when ctx ends and fn's error as is; its consumer
// is deleted either way.
func (r *Reader) Follow(ctx context.Context, q Query, fn func(Message) error) error {
	if err := q.validate(); err != nil {
		return err
	}
	s, err := r.js.Stream(ctx, q.Stream)
	if err != nil {
		return fmt.Errorf("history: stream %s: %w", q.Stream, err)
	}
	err = r.consume(ctx, s, q, func(m Message, _ uint64) (bool, error) {
		return false, fn(m)
	}, false)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// consume runs an ordered consumer over q and hands every message and the
// number still pending after it to step, until step says done. bounded:
// the read ends when nothing is pending any more (Read); otherwise it waits
// for more (Follow).
func (r *Reader) consume(ctx context.Context, s jetstream.Stream, q Query, step func(Message, uint64) (bool, error), bounded bool) (err error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    q.Subjects,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: r.inactive,
		// A name of our own: Read deletes every consumer it created by
		// name, also those the ordered consumer replaced after a gap.
		NamePrefix: ConsumerPrefix + "_" + rand.Text(),
		// A lost server is an error for a tool, not an endless retry.
		MaxResetAttempts: 3,
	}
	switch {
	case q.FromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, q.FromSeq
	case !q.Since.IsZero():
		since := q.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("history: stream %s: %w", q.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.page))
	if err != nil {
		return fmt.Errorf("history: stream %s: %w", q.Stream, err)
	}
	defer func() {
		it.Stop()
		if derr := r.deleteConsumers(ctx, q.Stream, cons); derr != nil && err == nil {
			err = derr
		}
	}()
	if bounded {
		if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
			return nil
		}
	}
	for {
		nctx, cancel := context.WithTimeout(ctx, r.idle)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				if !bounded {
					continue
				}
				// Quiet: done if the server has nothing left for us (what
				// it counted at the start may have been removed since).
				ci, ierr := cons.Info(ctx)
				if ierr != nil {
					return fmt.Errorf("history: stream %s: %w", q.Stream, ierr)
				}
				if ci.NumPending == 0 {
					return nil
				}
				continue
			}
			return fmt.Errorf("history: stream %s: %w", q.Stream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("history: stream %s: %w", q.Stream, err)
		}
		done, err := step(Message{
			Stream: meta.Stream, Sequence: meta.Sequence.Stream, Time: meta.Timestamp.UTC(),
			Subject: m.Subject(), Header: m.Headers(), Data: m.Data(),
		}, meta.NumPending)
		if err != nil || done {
			return err
		}
	}
}

// deleteConsumers deletes the consumer the ordered consumer uses now and
// every one it used before (it replaces its consumer after a gap and
// deletes the old one in the background, which a short-lived tool may not
// live to see). Names are "<prefix>_<n>" for n from 1.
func (r *Reader) deleteConsumers(ctx context.Context, stream string, cons jetstream.Consumer) error {
	ci := cons.CachedInfo()
	if ci == nil {
		return nil
	}
	i := strings.LastIndexByte(ci.Name, '_')
	serial, err := strconv.Atoi(ci.Name[i+1:])
	if i < 0 || err != nil {
		serial = 0
	}
	// The caller's ctx may be what ended the read (Ctrl-C): deleting must
	// still happen.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var errs []error
	for n := 1; n <= serial; n++ {
		name := ci.Name[:i+1] + strconv.Itoa(n)
		if err := r.js.DeleteConsumer(dctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("history: delete consumer %s on %s: %w", name, stream, err))
		}
	}
	if serial == 0 {
		if err := r.js.DeleteConsumer(dctx, stream, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("history: delete consumer %s on %s: %w", ci.Name, stream, err))
		}
	}
	return errors.Join(errs...)
}
