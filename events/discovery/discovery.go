// Package discovery makes a service that consumes JetStream visible to the
// NATS micro tooling (`nats micro ls | info | stats | ping`, ADR-32): it
// answers the $SRV.PING, $SRV.INFO and $SRV.STATS requests for the service
// and lists, next to its request-reply endpoints, the subjects its
// consumer handles, with what it did with them: how many messages, how
// many failed and the time spent.
//
// The nats.go micro package counts requests only for the endpoints it
// subscribes to itself, so a service whose work arrives from a JetStream
// consumer would report 0 requests however many events it handled. This
// package answers the same protocol, with micro's own response types, and
// counts the consumer's messages through a consumer.Middleware.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/choreo-dev/choreo/events/consumer"
)

// Config describes a service.
type Config struct {
	Name        string // as micro requires: letters, digits, - and _
	Version     string // semantic version
	Description string
	Metadata    map[string]string
	// Endpoints are request-reply endpoints the service answers.
	Endpoints []Endpoint
	// Consumes lists what the service's consumer handles: one entry per
	// route (see consumer.Config.Sources and the service's router).
	Consumes []Consumed
	// QueueGroup is the queue group of the request-reply endpoints
	// (default "q", micro's default).
	QueueGroup string
}

// Endpoint is a request-reply endpoint.
type Endpoint struct {
	Name     string
	Subject  string
	Metadata map[string]string
	// Handle answers a request with a JSON-encodable value. Its error is
	// answered as a micro error (Nats-Service-Error headers) and counted.
	Handle func(ctx context.Context, data []byte) (any, error)
	// Stats, when set, is the endpoint's "data" in the stats response.
	Stats func() any
}

// Consumed is a subject pattern a service's consumer handles.
type Consumed struct {
	Pattern  string // the route's subject pattern, e.g. orders.placed.*
	Stream   string
	Consumer string // the durable consumer's name
}

// consumedStats is what a consumed pattern's endpoint reports as data.
type consumedStats struct {
	Stream       string `json:"stream,omitempty"`
	Consumer     string `json:"consumer,omitempty"`
	Handled      int    `json:"handled"`
	Duplicates   int    `json:"duplicates"`
	Retried      int    `json:"retried"`
	DeadLettered int    `json:"dead_lettered"`
}

// endpoint is one row of info and stats, request-reply or consumed.
type endpoint struct {
	info     micro.EndpointInfo
	stats    micro.EndpointStats
	consumed *consumedStats // nil for a request-reply endpoint
	data     func() any
}

// Service answers the micro protocol for one service instance.
type Service struct {
	cfg     Config
	id      string
	started time.Time

	mu        sync.Mutex
	endpoints []*endpoint
	byPattern map[string]*endpoint
	subs      []*nats.Subscription
}

var validName = regexp.MustCompile(`^[A-Za-z0-9\-_]+$`)

// Start registers the service on nc: it answers from now on, until Stop.
func Start(nc *nats.Conn, cfg Config) (*Service, error) {
	if !validName.MatchString(cfg.Name) {
		return nil, fmt.Errorf("discovery: service name %q: only letters, digits, - and _", cfg.Name)
	}
	if cfg.QueueGroup == "" {
		cfg.QueueGroup = "q"
	}
	s := &Service{cfg: cfg, id: nuid.Next(), started: time.Now().UTC(), byPattern: map[string]*endpoint{}}
	fail := func(err error) (*Service, error) {
		_ = s.Stop()
		return nil, err
	}
	for _, e := range cfg.Endpoints {
		if !validName.MatchString(e.Name) || e.Subject == "" || e.Handle == nil {
			return fail(fmt.Errorf("discovery: %s: endpoint %q needs a name of letters, digits, - and _, a subject and a handler", cfg.Name, e.Name))
		}
		ep := &endpoint{
			info: micro.EndpointInfo{Name: e.Name, Subject: e.Subject, QueueGroup: cfg.QueueGroup, Metadata: e.Metadata},
			data: e.Stats,
		}
		s.endpoints = append(s.endpoints, ep)
		sub, err := nc.QueueSubscribe(e.Subject, cfg.QueueGroup, func(m *nats.Msg) { s.serve(ep, e.Handle, m) })
		if err != nil {
			return fail(fmt.Errorf("discovery: %s: subscribe %s: %w", cfg.Name, e.Subject, err))
		}
		s.subs = append(s.subs, sub)
	}
	for _, c := range cfg.Consumes {
		s.addConsumed(c)
	}
	verbs := []struct {
		verb  micro.Verb
		reply func() any
	}{
		{micro.PingVerb, func() any { return micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType} }},
		{micro.InfoVerb, func() any { return s.Info() }},
		{micro.StatsVerb, func() any { return s.Stats() }},
	}
	for _, v := range verbs {
		// Every instance answers the requests to all services, to all
		// instances of its name, and to itself.
		for _, scope := range [][2]string{{"", ""}, {cfg.Name, ""}, {cfg.Name, s.id}} {
			subject, err := micro.ControlSubject(v.verb, scope[0], scope[1])
			if err != nil {
				return fail(fmt.Errorf("discovery: %s: %w", cfg.Name, err))
			}
			reply := v.reply
			sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
				if b, err := json.Marshal(reply()); err == nil {
					_ = m.Respond(b)
				}
			})
			if err != nil {
				return fail(fmt.Errorf("discovery: %s: subscribe %s: %w", cfg.Name, subject, err))
			}
			s.subs = append(s.subs, sub)
		}
	}
	return s, nil
}

// ID is the instance's id, as the micro tools show it.
func (s *Service) ID() string { return s.id }

// Stop stops answering.
func (s *Service) Stop() error {
	var errs []error
	for _, sub := range s.subs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	s.subs = nil
	return errors.Join(errs...)
}

// addConsumed adds the endpoint row of a consumed pattern.
func (s *Service) addConsumed(c Consumed) *endpoint {
	ep := &endpoint{
		info: micro.EndpointInfo{
			Name:       consumedName(c.Pattern),
			Subject:    c.Pattern,
			QueueGroup: c.Consumer,
			Metadata:   map[string]string{"kind": "jetstream-consumer", "stream": c.Stream, "consumer": c.Consumer},
		},
		consumed: &consumedStats{Stream: c.Stream, Consumer: c.Consumer},
	}
	s.endpoints = append(s.endpoints, ep)
	s.byPattern[c.Pattern] = ep
	return ep
}

// consumedName names a pattern's row as micro allows: "orders.placed.*"
// is "orders-placed", "cmd.orders.>" is "cmd-orders".
func consumedName(pattern string) string {
	var parts []string
	for _, tok := range strings.Split(pattern, ".") {
		if tok != "*" && tok != ">" {
			parts = append(parts, strings.Map(func(r rune) rune {
				if r == '-' || r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
					return r
				}
				return '_'
			}, tok))
		}
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, "-")
}

// serve answers one request to a request-reply endpoint.
func (s *Service) serve(ep *endpoint, handle func(context.Context, []byte) (any, error), m *nats.Msg) {
	start := time.Now()
	v, err := handle(context.Background(), m.Data)
	var b []byte
	if err == nil {
		b, err = json.Marshal(v)
	}
	if err != nil {
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(micro.ErrorHeader, err.Error())
		reply.Header.Set(micro.ErrorCodeHeader, "500")
		_ = m.RespondMsg(reply)
	} else {
		_ = m.Respond(b)
	}
	s.count(ep, time.Since(start), err)
}

// count adds one request (or message) to an endpoint's stats.
func (s *Service) count(ep *endpoint, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countLocked(ep, took, err)
}

// countLocked is count for a caller that holds s.mu.
func (s *Service) countLocked(ep *endpoint, took time.Duration, err error) {
	st := &ep.stats
	st.NumRequests++
	st.ProcessingTime += took
	st.AverageProcessingTime = st.ProcessingTime / time.Duration(st.NumRequests)
	if err != nil {
		st.NumErrors++
		st.LastError = err.Error()
	}
}

// Middleware counts every message the service's consumer handles on the
// row of its route, or of the consumed pattern its subject matches: a
// request per delivery, an error per delivery that was retried or
// dead-lettered. A message that matches none counts on a row of its own,
// "unrouted".
func (s *Service) Middleware() consumer.Middleware {
	return func(ctx context.Context, m *consumer.Message) (context.Context, func(consumer.Outcome)) {
		start := time.Now()
		return ctx, func(o consumer.Outcome) {
			took := time.Since(start)
			var err error
			if o.Result == consumer.Retried || o.Result == consumer.DeadLettered {
				err = o.Err
				if err == nil {
					err = errors.New(string(o.Result))
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			ep := s.rowOf(m)
			if ep == nil {
				ep = s.addConsumed(Consumed{Pattern: m.Route, Consumer: m.Consumer})
				if m.Route == "" {
					ep.info.Name, ep.info.Subject = "unrouted", m.Subject
				}
			}
			switch o.Result {
			case consumer.Handled:
				ep.consumed.Handled++
			case consumer.Duplicate:
				ep.consumed.Duplicates++
			case consumer.Retried:
				ep.consumed.Retried++
			case consumer.DeadLettered:
				ep.consumed.DeadLettered++
			}
			s.countLocked(ep, took, err)
		}
	}
}

// rowOf finds the row a message counts on: its route's, or else the
// first consumed pattern its subject matches (a filter such as
// cmd.orders.> takes several routes, and commands no route takes).
func (s *Service) rowOf(m *consumer.Message) *endpoint {
	if ep := s.byPattern[m.Route]; ep != nil {
		return ep
	}
	for _, ep := range s.endpoints {
		if ep.consumed != nil && ep.info.Subject != "" && consumer.MatchSubject(ep.info.Subject, m.Subject) {
			if m.Route != "" {
				// Every message of a route lands on the same row:
				// remember it, so the next one is a map lookup.
				s.byPattern[m.Route] = ep
			}
			return ep
		}
	}
	return nil
}

func (s *Service) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: s.cfg.Name, ID: s.id, Version: s.cfg.Version, Metadata: maps.Clone(s.cfg.Metadata)}
}

// Info is what $SRV.INFO answers.
func (s *Service) Info() micro.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType, Description: s.cfg.Description,
		Endpoints: make([]micro.EndpointInfo, 0, len(s.endpoints))}
	for _, ep := range s.endpoints {
		info.Endpoints = append(info.Endpoints, ep.info)
	}
	return info
}

// Stats is what $SRV.STATS answers.
func (s *Service) Stats() micro.Stats {
	s.mu.Lock()
	rows := make([]*micro.EndpointStats, 0, len(s.endpoints))
	var data []func() any
	for _, ep := range s.endpoints {
		st := ep.stats
		st.Name, st.Subject, st.QueueGroup = ep.info.Name, ep.info.Subject, ep.info.QueueGroup
		if ep.consumed != nil {
			st.Data, _ = json.Marshal(*ep.consumed)
		}
		rows = append(rows, &st)
		data = append(data, ep.data)
	}
	s.mu.Unlock()
	// An endpoint's own stats may do I/O (a database query): outside the
	// lock, so that counting messages never waits for it.
	for i, f := range data {
		if f != nil {
			rows[i].Data, _ = json.Marshal(f())
		}
	}
	return micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started, Endpoints: rows}
}
