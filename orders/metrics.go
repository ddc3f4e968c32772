package orders

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choreo-dev/choreo/events"
)

// sagaDuration is the figure people watch: how long an order took from
// placed to final, by the state it ended in and why.
func newSagaDuration() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "choreo_saga_duration_seconds",
		Help:    "Time from an order's placement to its final state (CONFIRMED or CANCELLED), by state and reason (empty for CONFIRMED).",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900},
	}, []string{"state", "reason"})
}

// Collector returns the service's metrics, for a Prometheus registry.
func (s *Service) Collector() prometheus.Collector { return s.sagas }

// watchEnd wraps fn so that it notices when it ends a saga (an order goes
// from pending, or absent, to final) and returns, besides, the function
// to call once the change committed: it records the saga's duration. The
// store may run fn more than once; only the last, committed, run counts.
func (s *Service) watchEnd(fn Transition) (Transition, func(context.Context)) {
	var ended *Order
	return func(o *Order) (*Order, []events.Outgoing, error) {
			ended = nil
			wasFinal := o != nil && o.Status.Final()
			next, out, err := fn(o)
			if err == nil && next != nil && !wasFinal && next.Status.Final() {
				ended = &Order{Status: next.Status, Reason: next.Reason, PlacedAt: next.PlacedAt, UpdatedAt: next.UpdatedAt}
			}
			return next, out, err
		}, func(context.Context) {
			if ended != nil {
				s.sagas.WithLabelValues(string(ended.Status), ended.Reason).Observe(max(0, ended.UpdatedAt.Sub(ended.PlacedAt).Seconds()))
			}
		}
}
