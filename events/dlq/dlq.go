// Package dlq is the dead-letter workflow: how a consumer writes a message
// no retry can fix, and how an operator lists, shows, retries and
// discards those messages afterwards.
//
// It owns every header a dead letter carries. A dead letter is stored on
// "<prefix>.<consumer>.<original subject>" in a stream of its own, with
// the original body and headers (but the Nats-* ones) plus the reason and
// where the message came from. An entry's id is its sequence in that
// stream. Retrying republishes the original message with a retry count, so
// a message that keeps failing cannot loop through the queue forever.
//
// The package knows no domain: the stream name and subject prefix are
// configuration.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/history"
)

// Headers set on every dead letter, besides a copy of the original headers.
const (
	HeaderReason          = "Choreo-Dlq-Reason"
	HeaderOriginalSubject = "Choreo-Original-Subject"
	HeaderOriginalStream  = "Choreo-Original-Stream"
	HeaderOriginalSeq     = "Choreo-Original-Sequence"
	HeaderDeliveryCount   = "Choreo-Delivery-Count"
	HeaderConsumer        = "Choreo-Consumer"
	HeaderFailedAt        = "Choreo-Failed-At"
)

// HeaderRetryCount counts how many times an operator retried a dead
// letter. A retried message carries it; the consumer copies it into the
// new dead letter when the message fails again (it copies every original
// header), so the count survives the loop and the guard can refuse.
const HeaderRetryCount = "Choreo-Retry-Count"

// DefaultMaxRetries is the loop guard when Config leaves it zero.
const DefaultMaxRetries = 3

var (
	// ErrInvalidConfig is wrapped by every configuration error.
	ErrInvalidConfig = errors.New("dlq: invalid config")
	// ErrInvalidFilter is wrapped by a subject filter that is no NATS
	// subject filter.
	ErrInvalidFilter = errors.New("dlq: invalid subject filter")
	// ErrNotFound: no dead letter with that id.
	ErrNotFound = errors.New("dlq: no such dead letter")
	// ErrNoQueue: the server has no dead-letter stream.
	ErrNoQueue = errors.New("dlq: no dead-letter stream")
)

// Failure is a message a consumer gives up on, and why.
type Failure struct {
	Subject  string
	Header   nats.Header
	Data     []byte
	Stream   string // where the message was stored
	Sequence uint64 // its stream sequence
	// Delivered is how many times it was delivered, this time included.
	Delivered uint64
	Consumer  string // the durable that failed
	Reason    error
	At        time.Time
}

// NewMsg is the dead letter for f, to publish under prefix (e.g.
// "dlq.orders": the original subject is appended). Its Nats-Msg-Id makes
// it one dead letter per (stream, sequence, consumer), even when the
// consumer crashes between publishing it and terminating the message.
func NewMsg(prefix string, f Failure) *nats.Msg {
	dl := nats.NewMsg(prefix + "." + f.Subject)
	dl.Data = f.Data
	for k, vs := range f.Header {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		for _, v := range vs {
			dl.Header.Add(k, v)
		}
	}
	reason := "unknown"
	if f.Reason != nil {
		reason = f.Reason.Error()
	}
	dl.Header.Set(HeaderReason, reason)
	dl.Header.Set(HeaderOriginalSubject, f.Subject)
	dl.Header.Set(HeaderOriginalStream, f.Stream)
	dl.Header.Set(HeaderOriginalSeq, strconv.FormatUint(f.Sequence, 10))
	dl.Header.Set(HeaderDeliveryCount, strconv.FormatUint(f.Delivered, 10))
	dl.Header.Set(HeaderConsumer, f.Consumer)
	dl.Header.Set(HeaderFailedAt, f.At.UTC().Format(time.RFC3339Nano))
	dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%d:%s", f.Stream, f.Sequence, f.Consumer))
	return dl
}

// Entry is one dead letter as stored.
type Entry struct {
	ID               uint64 // its sequence in the dead-letter stream
	Subject          string // the dead letter's own subject
	StoredAt         time.Time
	FailedAt         time.Time // when the consumer gave up; StoredAt if unknown
	Consumer         string
	OriginalSubject  string
	OriginalStream   string
	OriginalSequence uint64
	DeliveryCount    uint64
	RetryCount       int
	TraceID          string // from its traceparent, "" without one
	Reason           string
	Header           nats.Header
	Data             []byte
}

func newEntry(seq uint64, subject string, stored time.Time, h nats.Header, data []byte) *Entry {
	e := &Entry{
		ID: seq, Subject: subject, StoredAt: stored.UTC(), Header: h, Data: data,
		Consumer:        h.Get(HeaderConsumer),
		OriginalSubject: h.Get(HeaderOriginalSubject),
		OriginalStream:  h.Get(HeaderOriginalStream),
		Reason:          h.Get(HeaderReason),
		RetryCount:      RetryCount(h),
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderFailedAt)); err == nil {
		e.FailedAt = t.UTC()
	} else {
		e.FailedAt = e.StoredAt
	}
	e.OriginalSequence, _ = strconv.ParseUint(h.Get(HeaderOriginalSeq), 10, 64)
	e.DeliveryCount, _ = strconv.ParseUint(h.Get(HeaderDeliveryCount), 10, 64)
	if id, ok := events.TraceID(h.Get(events.HeaderTraceParent)); ok {
		e.TraceID = id
	}
	return e
}

// RetryCount is the header's Choreo-Retry-Count, 0 when absent or bad.
func RetryCount(h nats.Header) int {
	n, err := strconv.Atoi(strings.TrimSpace(h.Get(HeaderRetryCount)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Config says where the dead letters are.
type Config struct {
	// Stream holds the dead letters. Required.
	Stream string
	// Prefix is the first token of every dead letter's subject (dead
	// letters are "<Prefix>.<consumer>.<original subject>"). Required.
	Prefix string
	// MaxRetries is the loop guard: an entry retried this many times is
	// refused. Zero: DefaultMaxRetries.
	MaxRetries int
}

// Queue is the dead-letter stream, for an operator's tools.
type Queue struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
	reader *history.Reader
}

// Open returns the queue in cfg.Stream. A server without that stream is
// an error wrapping ErrNoQueue.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Queue, error) {
	switch {
	case cfg.Stream == "":
		return nil, fmt.Errorf("%w: no stream", ErrInvalidConfig)
	case cfg.Prefix == "" || strings.ContainsAny(cfg.Prefix, ".*> \t\r\n"):
		return nil, fmt.Errorf("%w: prefix %q must be one subject token", ErrInvalidConfig, cfg.Prefix)
	case cfg.MaxRetries < 0:
		return nil, fmt.Errorf("%w: max retries %d", ErrInvalidConfig, cfg.MaxRetries)
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	}
	s, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w %s: %w", ErrNoQueue, cfg.Stream, err)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", cfg.Stream, err)
	}
	reader, err := history.NewReader(js)
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, js: js, stream: s, reader: reader}, nil
}

// MaxRetries is the loop guard in force.
func (q *Queue) MaxRetries() int { return q.cfg.MaxRetries }

// Filter turns a filter on the original subject into one on the dead
// letters' subjects; "" matches every dead letter.
func (q *Queue) Filter(original string) (string, error) {
	return filter(q.cfg.Prefix, original)
}

func filter(prefix, original string) (string, error) {
	if original == "" {
		return prefix + ".*.>", nil
	}
	if strings.ContainsAny(original, " \t\r\n") {
		return "", fmt.Errorf("%w %q: a NATS subject has no spaces", ErrInvalidFilter, original)
	}
	toks := strings.Split(original, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return "", fmt.Errorf("%w %q: empty token", ErrInvalidFilter, original)
		case tok == ">" && i != len(toks)-1:
			return "", fmt.Errorf("%w %q: '>' must be the last token", ErrInvalidFilter, original)
		case tok != ">" && tok != "*" && strings.ContainsAny(tok, "*>"):
			return "", fmt.Errorf("%w %q: wildcards must be whole tokens", ErrInvalidFilter, original)
		}
	}
	return prefix + ".*." + original, nil
}

// ValidFilter checks a filter on the original subject without a server.
func ValidFilter(original string) error {
	_, err := filter("x", original)
	return err
}

// List calls fn for every dead letter whose original subject matches the
// filter ("" for all), oldest first, a page at a time; an error from fn
// stops it and is returned as is.
func (q *Queue) List(ctx context.Context, original string, fn func(*Entry) error) error {
	f, err := q.Filter(original)
	if err != nil {
		return err
	}
	_, err = q.reader.Read(ctx, history.Query{Stream: q.cfg.Stream, Subjects: []string{f}}, func(m history.Message) error {
		return fn(newEntry(m.Sequence, m.Subject, m.Time, m.Header, m.Data))
	})
	if err != nil && !errors.Is(err, history.ErrPastEnd) {
		return fmt.Errorf("dlq: list: %w", err)
	}
	return nil
}

// All is List gathered into a slice.
func (q *Queue) All(ctx context.Context, original string) ([]*Entry, error) {
	var out []*Entry
	err := q.List(ctx, original, func(e *Entry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// Get returns the dead letter with this id; none is an error wrapping
// ErrNotFound.
func (q *Queue) Get(ctx context.Context, id uint64) (*Entry, error) {
	m, err := q.stream.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: get %d: %w", id, err)
	}
	return newEntry(m.Sequence, m.Subject, m.Time, m.Header, m.Data), nil
}

// Discard removes a dead letter. One already gone is not an error: the
// outcome the caller wants is there.
func (q *Queue) Discard(ctx context.Context, id uint64) error {
	return q.remove(ctx, id)
}

// remove deletes the entry; one that is not there is not an error.
func (q *Queue) remove(ctx context.Context, id uint64) error {
	err := q.stream.DeleteMsg(ctx, id)
	if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	// The server answers a delete of a missing message with an error
	// nats.go only formats into text: ask whether the message is there.
	if _, gerr := q.stream.GetMsg(ctx, id); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("dlq: remove %d: %w", id, err)
}
