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
}

// Options apply to every stream Ensure creates.
type Options struct {
	// Replicas is 1 for a single server and 3 in a cluster (default 1).
	Replicas int
	// DuplicateWindow is how long the server remembers Nats-Msg-Id values
	// to drop re-published copies (default 15m). It must outlast the
	// outbox relay's retry horizon (ack timeout plus back-off, seconds) and
	// a typical restart of a crashed publisher; the inbox catches what
	// arrives later still.
	DuplicateWindow time.Duration
}

// DefaultDuplicateWindow is the duplicate window used when none is set.
const DefaultDuplicateWindow = 15 * time.Minute

// Config returns the JetStream configuration of spec under opts: file
// storage, limits retention, the duplicate window.
func Config(spec Spec, opts Options) jetstream.StreamConfig {
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.DuplicateWindow == 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	return jetstream.StreamConfig{
		Name:              spec.Name,
		Description:       spec.Description,
		Subjects:          spec.Subjects,
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Replicas:          opts.Replicas,
		Duplicates:        opts.DuplicateWindow,
		AllowMsgSchedules: spec.Schedules,
		AllowDirect:       true,
	}
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
