// Package worker runs the background half of a service: its outbox relay
// and its consumers. Start brings them up; Stop drains the consumers
// (in-flight messages finish and are acked) and then lets the relay
// publish what those last messages wrote.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/outbox"
)

// Subscription is one consumer of the service and its handler.
type Subscription struct {
	Config  consumer.Config
	Handler consumer.Handler
}

// Config is what a worker runs.
type Config struct {
	JS            jetstream.JetStream
	Outbox        *outbox.Outbox
	Subscriptions []Subscription
	RelayOptions  []outbox.Option
	Logger        *slog.Logger
}

// Worker is a running relay plus consumers.
type Worker struct {
	consumers   []*consumer.Consumer
	cancelRelay context.CancelFunc
	relayDone   chan struct{}
	stopOnce    sync.Once
}

// Start starts the relay and then every consumer. If a consumer cannot be
// created, what was started is stopped and the error returned.
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
	w := &Worker{cancelRelay: cancel, relayDone: make(chan struct{})}
	go func() {
		defer close(w.relayDone)
		_ = relay.Run(relayCtx)
	}()
	for _, s := range cfg.Subscriptions {
		if s.Config.Logger == nil {
			s.Config.Logger = log
		}
		c, err := consumer.Start(ctx, cfg.JS, s.Config, s.Handler)
		if err != nil {
			w.Stop()
			return nil, fmt.Errorf("worker: %w", err)
		}
		w.consumers = append(w.consumers, c)
	}
	return w, nil
}

// Stop drains the consumers, then stops the relay after a final flush. It
// is safe to call more than once.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, c := range w.consumers {
			wg.Go(c.Stop)
		}
		wg.Wait()
		w.cancelRelay()
		<-w.relayDone
	})
}
