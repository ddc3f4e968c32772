// Package worker runs the background half of a service: its outbox relay
// and its consumer. Start brings them up; Stop drains the consumer
// (in-flight messages finish and are acked) and then lets the relay
// publish what those last messages wrote.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
)

// Config is what a worker runs.
type Config struct {
	JS     jetstream.JetStream
	Outbox *outbox.Outbox
	// Consumer is the service's consumer; its Outbox and Logger default
	// to the worker's.
	Consumer     consumer.Config
	RelayOptions []outbox.Option
	// InboxRetention, when above 0, makes the worker forget inbox claims
	// older than this, checking every PruneEvery (default: a sixtieth of
	// the retention, at most ten minutes). See inbox.Prune.
	InboxRetention time.Duration
	PruneEvery     time.Duration
	// Tasks run periodically beside the consumer, until Stop.
	Tasks  []Task
	Logger *slog.Logger
}

// Task is work a service does on a timer rather than on a message (a
// safety-net sweep, say). A failed run is logged and tried again at the
// next tick.
type Task struct {
	Name  string
	Every time.Duration
	Run   func(ctx context.Context) error
}

// Worker is a running relay plus a consumer.
type Worker struct {
	consumer    *consumer.Consumer
	cancelRelay context.CancelFunc
	relayDone   chan struct{}
	pruneDone   chan struct{}
	tasks       sync.WaitGroup
	stopOnce    sync.Once
}

// Start starts the relay and then the consumer. If the consumer cannot be
// created, the relay is stopped and the error returned.
func Start(ctx context.Context, cfg Config) (*Worker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	relay, err := outbox.NewRelay(cfg.Outbox, cfg.JS, append([]outbox.Option{outbox.WithLogger(log)}, cfg.RelayOptions...)...)
	if err != nil {
		return nil, err
	}
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Worker{cancelRelay: cancel, relayDone: make(chan struct{}), pruneDone: make(chan struct{})}
	go func() {
		defer close(w.relayDone)
		_ = relay.Run(relayCtx)
	}()
	if cfg.InboxRetention > 0 {
		every := cfg.PruneEvery
		if every <= 0 {
			every = min(cfg.InboxRetention/60, 10*time.Minute)
		}
		go func() {
			defer close(w.pruneDone)
			prune(relayCtx, cfg.Outbox.DB(), cfg.InboxRetention, every, log)
		}()
	} else {
		close(w.pruneDone)
	}
	for _, task := range cfg.Tasks {
		if task.Every <= 0 || task.Run == nil {
			w.Stop()
			return nil, fmt.Errorf("worker: task %q needs a period and a function", task.Name)
		}
		w.tasks.Go(func() { runTask(relayCtx, task, log) })
	}
	cc := cfg.Consumer
	if cc.Logger == nil {
		cc.Logger = log
	}
	if cc.Outbox == nil {
		cc.Outbox = cfg.Outbox
	}
	c, err := consumer.Start(ctx, cfg.JS, cc)
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.consumer = c
	return w, nil
}

// Stop drains the consumer, then stops the relay after a final flush. It
// is safe to call more than once.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		if w.consumer != nil {
			w.consumer.Stop()
		}
		w.cancelRelay()
		<-w.relayDone
		<-w.pruneDone
		w.tasks.Wait()
	})
}

// runTask runs task every period until ctx ends.
func runTask(ctx context.Context, task Task, log *slog.Logger) {
	t := time.NewTicker(task.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := task.Run(ctx); err != nil && ctx.Err() == nil {
			log.Warn("worker: task failed; will run again", "task", task.Name, "err", err, "retry_in", task.Every.String())
		}
	}
}

// prune forgets inbox claims older than keep, every interval, until ctx
// ends.
func prune(ctx context.Context, db *sqldb.DB, keep, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := inbox.Prune(ctx, db, time.Now().Add(-keep), 0)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("worker: inbox retention failed; will try again", "err", err, "retry_in", every.String())
		case n > 0:
			log.Debug("worker: forgot old inbox claims", "claims", n, "older_than", keep.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
