package ceiling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/sqldb"
)

// Names of the measured limits, as found in Result.Name.
const (
	NamePublish     = "jetstream_publish"
	NameCommit      = "store_commit"
	NameMinimalSaga = "minimal_saga"
)

// ErrInvalidOption is wrapped by every error a probe returns for options it
// cannot run with.
var ErrInvalidOption = errors.New("ceiling: invalid option")

// Result is one measured limit.
type Result struct {
	// Name is NamePublish, NameCommit or NameMinimalSaga.
	Name string
	// Ops counts the operations completed: acknowledged messages, committed
	// transactions or completed sagas.
	Ops int
	// Elapsed is the time the operations took, from the first started to
	// the last completed.
	Elapsed time.Duration
	// PerSec is Ops / Elapsed.
	PerSec float64

	// The fields below are set by MinimalSaga only.

	// Latency holds the placed→final latency of every completed saga, in
	// completion order; the caller builds percentiles.
	Latency []time.Duration
	// Batch is SagaOptions.Batch: the most messages a consumer applied in
	// one transaction.
	Batch int
	// Placed counts the sagas placed; Ops of them completed.
	Placed int
	// OutboxLeft counts the outbox rows, over the four services, that were
	// still unpublished when the probe stopped. It is zero after a run in
	// which every saga completed and its trailing events were delivered.
	OutboxLeft int
	// Unacked counts the messages the services' consumers had not yet
	// received or acknowledged when the probe stopped; zero after a clean
	// run.
	Unacked int
}

func result(name string, ops int, elapsed time.Duration) Result {
	r := Result{Name: name, Ops: ops, Elapsed: elapsed}
	if elapsed > 0 {
		r.PerSec = float64(ops) / elapsed.Seconds()
	}
	return r
}

// Opener opens the scratch database called name. The caller of a probe
// decides where it lives (a SQLite file in the run's data directory, a
// PostgreSQL schema); the probe closes what it opened.
type Opener = func(ctx context.Context, name string) (*sqldb.DB, error)

const (
	// ackTimeout bounds the wait for the server's ack of one publish. The
	// probes' JetStream handle is the caller's, whose asynchronous publish
	// timeout may be unset: without this bound a lost ack would hang a
	// probe.
	ackTimeout = 10 * time.Second
	// cleanupTimeout bounds the removal of streams and tables, which runs
	// with a fresh context so that a cancelled run still cleans up.
	cleanupTimeout = 15 * time.Second
	// duplicateWindow is the duplicate window of choreo's streams
	// (events/streams.DefaultDuplicateWindow): the server's bookkeeping of
	// message ids costs the same here as there.
	duplicateWindow = 15 * time.Minute
)

// newToken returns a random run token: lower-case hex, valid in a subject,
// a stream name (upper-cased) and an SQL identifier.
func newToken() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanupContext returns a context for cleaning up after a run, bounded and
// detached from ctx, which may already be cancelled.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// createStream creates a temporary file-storage stream like choreo's.
func createStream(ctx context.Context, js jetstream.JetStream, name, subject string, replicas int) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subject},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Replicas:   replicas,
		Duplicates: duplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("ceiling: create stream %s: %w", name, err)
	}
	return s, nil
}

// deleteStream deletes a stream and, with it, its consumers. A stream that
// is already gone is not an error.
func deleteStream(ctx context.Context, js jetstream.JetStream, name string) error {
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("ceiling: delete stream %s: %w", name, err)
	}
	return nil
}

// awaitAck waits for the outcome of one asynchronous publish, at most
// ackTimeout. t is a stopped or expired timer the caller reuses across
// calls, so that a long run of acks allocates nothing.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture, t *time.Timer) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	default:
	}
	t.Reset(ackTimeout)
	defer t.Stop()
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("no ack within %s", ackTimeout)
	}
}

// payload returns a JSON document of about size bytes naming an event: the
// size of a small event, with none of the cost of encoding one.
func payload(size int, eventID, key string) []byte {
	b := make([]byte, 0, max(size, 64))
	b = append(b, `{"event_id":"`...)
	b = append(b, eventID...)
	b = append(b, `","key":"`...)
	b = append(b, key...)
	b = append(b, `","pad":"`...)
	for n := size - len(b) - 2; n > 0; {
		k := min(n, len(padding))
		b = append(b, padding[:k]...)
		n -= k
	}
	return append(b, `"}`...)
}

var padding = strings.Repeat("x", 512)
