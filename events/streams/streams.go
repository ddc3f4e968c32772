// Package streams declares JetStream streams and creates or updates them.
package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Spec names a stream and the subjects it captures.
type Spec struct {
	Name        string
	Subjects    []string
	Description string
	// Schedules enables the server's message scheduler on the stream
	// (Nats-Schedule headers), used for saga deadlines.
	Schedules bool
	// Limits bound what the stream keeps (zero: no bound).
	Limits Limits
}

// Limits bound what a stream keeps: once one is reached, the oldest
// messages are removed. A stream without limits grows for ever, and so does
// the server's memory: it keeps an index entry for every subject the
// stream holds, and choreo's subjects carry an order id each.
type Limits struct {
	// MaxAge removes messages older than this (0: no age limit).
	MaxAge time.Duration
	// MaxMsgs keeps at most this many messages (0: no count limit). It
	// bounds the server's memory whatever the rate.
	MaxMsgs int64
	// MaxBytes keeps at most this many bytes (0: no size limit).
	MaxBytes int64
}

// Options apply to every stream Ensure creates.
type Options struct {
	// Replicas is 1 for a single server and 3 in a cluster (default 1).
	Replicas int
	// DuplicateWindow is how long the server remembers Nats-Msg-Id values
	// to drop re-published copies (default DefaultDuplicateWindow). It
	// must outlast the outbox relay's retry horizon (ack timeout plus
	// back-off, seconds) and a typical restart of a crashed publisher; the
	// inbox catches what arrives later still. The server holds every id
	// of the window in memory (about 100 bytes each), so a longer window
	// costs memory in proportion to the publish rate.
	DuplicateWindow time.Duration
}

// DefaultDuplicateWindow is the duplicate window used when none is set.
const DefaultDuplicateWindow = time.Minute

// Config returns the JetStream configuration of spec under opts: file
// storage, limits retention, the duplicate window.
func Config(spec Spec, opts Options) jetstream.StreamConfig {
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.DuplicateWindow == 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	cfg := jetstream.StreamConfig{
		Name:              spec.Name,
		Description:       spec.Description,
		Subjects:          spec.Subjects,
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Replicas:          opts.Replicas,
		Duplicates:        opts.DuplicateWindow,
		AllowMsgSchedules: spec.Schedules,
		AllowDirect:       true,
		MaxAge:            spec.Limits.MaxAge,
		MaxMsgs:           orUnlimited(spec.Limits.MaxMsgs),
		MaxBytes:          orUnlimited(spec.Limits.MaxBytes),
		Discard:           jetstream.DiscardOld,
	}
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge // the server refuses a window longer than the age
	}
	return cfg
}

// Ensure creates each stream, or updates it to the declared configuration
// when it exists. It is safe to call from every process at start.
func Ensure(ctx context.Context, js jetstream.JetStream, specs []Spec, opts Options) error {
	for _, s := range specs {
		if _, err := js.CreateOrUpdateStream(ctx, Config(s, opts)); err != nil {
			return fmt.Errorf("streams: ensure %s: %w", s.Name, err)
		}
	}
	return nil
}

// orUnlimited maps 0 (no limit) to the server's -1.
func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}
