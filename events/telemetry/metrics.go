package telemetry

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/outbox"
)

// Metrics are the Prometheus metrics of the events library in one
// process: what every consumer did with every message, what every relay
// published, the outboxes' backlogs, the dead-letter queue's depth and
// the HTTP requests served. Their names are the contract the alert rules
// and the dashboard under deploy/ rely on.
type Metrics struct {
	reg prometheus.Registerer

	messages     *prometheus.CounterVec
	handling     *prometheus.HistogramVec
	redeliveries *prometheus.CounterVec
	published    *prometheus.CounterVec
	notAcked     *prometheus.CounterVec
	ackLatency   *prometheus.HistogramVec
	relayActive  *prometheus.GaugeVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
}

// Label values of a message whose type is not known: it could not be
// decoded, or no route took it.
const unknownType = "unknown"

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "choreo_messages_total",
			Help: "Deliveries handled by a consumer, by message type and outcome: handled, duplicate (the inbox had it), retried, dead_lettered.",
		}, []string{"consumer", "type", "outcome"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "choreo_message_handling_seconds",
			Help:    "Time from a delivery's arrival to its outcome (decode, transaction, external calls, ack).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"consumer", "type"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "choreo_message_redeliveries_total",
			Help: "Deliveries of a message that had been delivered before (after a retry, a lost ack or a crash).",
		}, []string{"consumer"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "choreo_relay_published_total",
			Help: "Outbox events the relay published and the server acked.",
		}, []string{"service"}),
		notAcked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "choreo_relay_publish_failures_total",
			Help: "Publishes the server did not ack (error or timeout); the event stays in the outbox and is sent again.",
		}, []string{"service"}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "choreo_relay_publish_to_ack_seconds",
			Help:    "Time from the relay's publish of an outbox event to the server's ack.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"service"}),
		relayActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "choreo_relay_active",
			Help: "1 when this process's relay is the one publishing its store's outbox, 0 when it stands by: summed over a service's instances, 1.",
		}, []string{"service"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "choreo_http_requests_total",
			Help: "HTTP requests served, by service, route and status code.",
		}, []string{"service", "route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "choreo_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by service and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service", "route", "method", "code"}),
	}
	reg.MustRegister(m.messages, m.handling, m.redeliveries, m.published, m.notAcked, m.ackLatency, m.relayActive, m.httpRequests, m.httpDuration)
	return m
}

// Messages is a consumer Middleware that counts every delivery by
// consumer, type and outcome, times it from arrival to outcome, and counts
// redeliveries. The consumers named start with a zero count of
// redeliveries, so that the series exists before the first one.
func (m *Metrics) Messages(consumers ...string) consumer.Middleware {
	for _, c := range consumers {
		m.redeliveries.WithLabelValues(c)
	}
	return func(ctx context.Context, msg *consumer.Message) (context.Context, func(consumer.Outcome)) {
		start := time.Now()
		return ctx, func(o consumer.Outcome) {
			typ := msg.Type
			if typ == "" {
				typ = unknownType
			}
			m.messages.WithLabelValues(msg.Consumer, typ, string(o.Result)).Inc()
			m.handling.WithLabelValues(msg.Consumer, typ).Observe(time.Since(start).Seconds())
			if msg.Delivered > 1 {
				m.redeliveries.WithLabelValues(msg.Consumer).Inc()
			}
		}
	}
}

// Relay returns the outbox.Observer of service's relay.
func (m *Metrics) Relay(service string) outbox.Observer {
	return relayObserver{
		published: m.published.WithLabelValues(service),
		notAcked:  m.notAcked.WithLabelValues(service),
		latency:   m.ackLatency.WithLabelValues(service),
		active:    m.relayActive.WithLabelValues(service),
	}
}

type relayObserver struct {
	published, notAcked prometheus.Counter
	latency             prometheus.Observer
	active              prometheus.Gauge
}

func (r relayObserver) Acked(_ string, took time.Duration) {
	r.published.Inc()
	r.latency.Observe(took.Seconds())
}

func (r relayObserver) NotAcked(string) { r.notAcked.Inc() }

func (r relayObserver) Active(active bool) {
	if active {
		r.active.Set(1)
	} else {
		r.active.Set(0)
	}
}

// HTTP counts and times the requests h serves as the given service's
// route (the ServeMux pattern, "GET /orders/{id}": never the path, whose
// ids would make every series unique).
func (m *Metrics) HTTP(service, route string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"service": service, "route": routeOf(route)}
	return promhttp.InstrumentHandlerCounter(m.httpRequests.MustCurryWith(labels),
		promhttp.InstrumentHandlerDuration(m.httpDuration.MustCurryWith(labels), h))
}

// routeOf drops the method from a ServeMux pattern: the method is a label
// of its own.
func routeOf(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// Outbox reports service's outbox: how many events wait to be published
// and how old the oldest is, read from its database at each scrape.
func (m *Metrics) Outbox(service string, ob *outbox.Outbox) {
	labels := prometheus.Labels{"service": service}
	m.reg.MustRegister(&outboxCollector{
		ob: ob,
		backlog: prometheus.NewDesc("choreo_outbox_backlog",
			"Outbox rows waiting to be published.", nil, labels),
		age: prometheus.NewDesc("choreo_outbox_oldest_age_seconds",
			"Age of the oldest outbox row waiting to be published (0 when none waits).", nil, labels),
	})
}

type outboxCollector struct {
	ob           *outbox.Outbox
	backlog, age *prometheus.Desc
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.age
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, oldest, err := c.ob.Backlog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.backlog, err)
		return
	}
	age := 0.0
	if n > 0 && !oldest.IsZero() {
		age = max(0, time.Since(oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}

// DLQ reports the depth of the dead-letter queue: the messages stored in
// stream under each service's subject prefix (service → prefix, such as
// "orders" → "dlq.orders"), read from the server at each scrape.
func (m *Metrics) DLQ(js jetstream.JetStream, stream string, prefixes map[string]string) {
	m.reg.MustRegister(&dlqCollector{js: js, stream: stream, prefixes: prefixes})
}

var dlqDesc = prometheus.NewDesc("choreo_dlq_messages",
	"Dead letters waiting in the dead-letter queue, by the service that gave up on them.", []string{"service"}, nil)

type dlqCollector struct {
	js       jetstream.JetStream
	stream   string
	prefixes map[string]string
}

func (c *dlqCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dlqDesc }

func (c *dlqCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for service, prefix := range c.prefixes {
		n, err := c.depth(ctx, prefix)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(dlqDesc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(dlqDesc, prometheus.GaugeValue, float64(n), service)
	}
}

// depth counts the messages under prefix, from the stream's per-subject
// counts (the server filters them).
func (c *dlqCollector) depth(ctx context.Context, prefix string) (uint64, error) {
	s, err := c.js.Stream(ctx, c.stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+".>"))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	return n, nil
}
