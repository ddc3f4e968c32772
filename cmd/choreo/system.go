package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/openapi"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/discovery"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/outbox"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/events/streams"
	"github.com/choreo-dev/choreo/events/telemetry"
	"github.com/choreo-dev/choreo/events/worker"
)

// systemConfig says which services to run and where their data lives.
type systemConfig struct {
	services []module
	// dbURL returns the database URL of a service.
	dbURL   func(service string) string
	natsURL string
	// creds says how each service authenticates to NATS.
	creds    natsCreds
	httpAddr string
	replicas int
	opts     serviceOptions
	log      *slog.Logger
	getenv   func(string) string
}

// system is a set of running services, each with its own NATS connection
// (as its own NATS user), sharing one HTTP server.
type system struct {
	conns    []*natsConn
	dbs      []*sqldb.DB
	workers  []*worker.Worker
	micro    []*discovery.Service // one per service, see micro.go
	watches  []*siblingWatch      // one per service, see micro.go
	http     *http.Server
	httpAddr string
	httpDone chan struct{}
	pprof    *pprofServer
	// routes are the HTTP API's routes, as registered.
	routes  *apiMux
	tracing *telemetry.Tracing
	ready   atomic.Bool
	// needs are the services' own readiness checks (see builtService).
	needs []func(context.Context) error
	log   *slog.Logger
}

// startSystem connects to NATS, ensures the streams, opens and migrates
// every service's database, starts their workers and serves HTTP. On error
// it stops whatever it had started.
func startSystem(ctx context.Context, cfg systemConfig) (_ *system, err error) {
	s := &system{log: cfg.log}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	// A connection per service, each as the service's own NATS user: the
	// server lets it publish only its own subjects.
	conns := map[string]*natsConn{}
	for _, m := range cfg.services {
		c, err := connectService(cfg, m.name, cfg.creds.service(m.name))
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, c)
		conns[m.name] = c
	}
	// Streams are set up by the operator's user where there is one (a
	// service's user may not change a stream); otherwise by the first
	// service, which only changes what differs (see ensureStreams).
	setup := s.conns[0].js
	if cfg.creds.setup != "" {
		c, err := connectService(cfg, "setup", cfg.creds.setup)
		if err != nil {
			return nil, err
		}
		setup = c.js
		defer c.close()
	}
	if err := ensureStreams(ctx, setup, catalog.StreamSpecs(cfg.opts.retention), streams.Options{Replicas: cfg.replicas, DuplicateWindow: cfg.opts.dupWindow, Logger: cfg.log}); err != nil {
		return nil, err
	}

	s.tracing, err = telemetry.NewTracing(ctx, telemetry.TracingConfig{Getenv: cfg.getenv, Exporter: testSpanExporter, Version: microVersion})
	if err != nil {
		return nil, err
	}
	s.tracing.Install("choreo")

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := telemetry.NewMetrics(reg)
	dlqPrefixes := map[string]string{}
	mux := &apiMux{ServeMux: http.NewServeMux()}
	auth, limit, err := cfg.opts.edge.build(ctx, cfg.log)
	if err != nil {
		return nil, err
	}
	for _, m := range cfg.services {
		log := cfg.log.With("service", m.name)
		db, err := sqldb.Open(ctx, cfg.dbURL(m.name), sqldb.WithDurable(cfg.opts.durable))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		s.dbs = append(s.dbs, db)
		if err := m.migrate(ctx, db); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		built, err := m.build(db, log, cfg.opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		tracer := s.tracing.Provider(serviceName(cfg, m.name))
		built.consumer.Batch = cfg.opts.batch
		built.consumer.ReorderWait = cfg.opts.reorderWait
		conn := conns[m.name]
		storeID, err := storeIdentity(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		store := microStore{id: storeID, url: db.URL}
		if err := checkSiblingStores(ctx, conn.nc, m.name, store); err != nil {
			return nil, err
		}
		ms, err := startMicro(conn.nc, m.name, store, built.outbox.Backlog, built.consumer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		s.micro = append(s.micro, ms)
		watch := watchSiblingStores(conn.nc, m.name, store, ms.ID(), log)
		s.watches = append(s.watches, watch)
		s.needs = append(s.needs, watch.ready)
		built.consumer.Middleware = append(built.consumer.Middleware,
			telemetry.TraceMessages(tracer), metrics.Messages(durables(built.consumer)...), ms.Middleware(), consumer.LogOutcomes(log))
		w, err := worker.Start(ctx, worker.Config{JS: conn.js, Outbox: built.outbox, Consumer: built.consumer,
			RelayOptions:   []outbox.Option{outbox.WithTracerProvider(tracer), outbox.WithObserver(metrics.Relay(m.name))},
			InboxRetention: cfg.opts.inboxRetention, Tasks: built.tasks, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		s.workers = append(s.workers, w)
		built.routes(routes{mux: mux, service: m.name, tracer: tracer, metrics: metrics, auth: auth, limit: limit})
		metrics.Outbox(m.name, built.outbox)
		reg.MustRegister(built.collectors...)
		dlqPrefixes[m.name] = built.consumer.DLQSubject
		if built.ready != nil {
			s.needs = append(s.needs, built.ready)
		}
		log.Info("service started", "db", db.URL)
	}
	metrics.DLQ(s.conns[0].js, catalog.StreamDLQ, dlqPrefixes)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	// The description covers exactly the routes registered, this one
	// included, so it is made once they all are, before serving starts.
	var apiDoc []byte
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(apiDoc)
	})
	if apiDoc, err = openapi.Document(mux.patterns); err != nil {
		return nil, err
	}
	s.routes = mux

	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("http: listen on %s: %w (choose another address with --http)", cfg.httpAddr, err)
	}
	s.httpAddr = ln.Addr().String()
	s.http = &http.Server{
		Handler:           httpx.Edge(mux.ServeMux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	s.httpDone = make(chan struct{})
	go func() {
		defer close(s.httpDone)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.log.Error("http: serve", "err", err)
		}
	}()
	if cfg.opts.pprof != "" {
		if s.pprof, err = startPprof(cfg.opts.pprof, cfg.log); err != nil {
			return nil, err
		}
	}
	s.ready.Store(true)
	return s, nil
}

// apiMux is the HTTP API's mux. It remembers every route's pattern and
// the service it is of, so that /openapi.json describes the routes this
// process serves and a test can tell a route the description lacks.
type apiMux struct {
	*http.ServeMux
	patterns []string
	// services maps a service's route to the service; the platform's
	// routes (/healthz, /metrics…) are not in it.
	services map[string]string
}

func (m *apiMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// handleFor registers a route of service.
func (m *apiMux) handleFor(service, pattern string, h http.Handler) {
	if m.services == nil {
		m.services = map[string]string{}
	}
	m.services[pattern] = service
	m.Handle(pattern, h)
}

func (m *apiMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// pprofLine is the line choreo up prints about the profiler, or "".
func (s *system) pprofLine() string {
	if s.pprof == nil {
		return ""
	}
	return "\n  pprof    http://" + s.pprof.addr + "/debug/pprof/"
}

// readyz answers 200 only when the process can do its work: started, NATS
// connected, every database answering, what each service needs beyond
// them (payments: its provider) reachable, and no sibling of a service on
// another store than its own (see watchSiblingStores).
func (s *system) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		httpx.WriteProblem(w, r, http.StatusServiceUnavailable, "Not ready", "starting or stopping")
		return
	}
	for _, c := range s.conns {
		if !c.nc.IsConnected() {
			httpx.WriteProblem(w, r, http.StatusServiceUnavailable, "Not ready", "nats: "+c.name+" not connected")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	for _, db := range s.dbs {
		if err := db.PingContext(ctx); err != nil {
			httpx.WriteProblem(w, r, http.StatusServiceUnavailable, "Not ready", "database "+db.URL+": "+err.Error())
			return
		}
	}
	for _, need := range s.needs {
		if err := need(ctx); err != nil {
			httpx.WriteProblem(w, r, http.StatusServiceUnavailable, "Not ready", err.Error())
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// stop shuts down in the order that loses nothing: stop taking HTTP
// requests, drain the consumers (in-flight messages finish and are acked),
// let the relays flush, then drain the NATS connection and close the
// databases.
func (s *system) stop() {
	s.ready.Store(false)
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
		<-s.httpDone
	}
	for _, w := range s.workers {
		w.Stop()
	}
	if s.pprof != nil {
		s.pprof.stop()
	}
	for _, w := range s.watches {
		w.stop()
	}
	for _, ms := range s.micro {
		_ = ms.Stop()
	}
	for _, c := range s.conns {
		c.close()
	}
	for _, db := range s.dbs {
		db.Close()
	}
	if s.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.tracing.Shutdown(ctx); err != nil {
			s.log.Warn("telemetry: spans not exported at shutdown", "err", err)
		}
		cancel()
	}
}

// durables returns the names of the durable consumers of cfg.
func durables(cfg consumer.Config) []string {
	names := make([]string, 0, len(cfg.Sources))
	for _, s := range cfg.Sources {
		names = append(names, s.Durable)
	}
	return names
}

// serviceName is the OpenTelemetry service.name of a service's spans: its
// name, or OTEL_SERVICE_NAME where a process runs that one service only.
func serviceName(cfg systemConfig, service string) string {
	if name := cfg.getenv("OTEL_SERVICE_NAME"); name != "" && len(cfg.services) == 1 {
		return name
	}
	return service
}

// minServerVersion is the oldest nats-server choreo runs on: the message
// scheduler behind order deadlines arrived in 2.12.
var minServerVersion = [3]int{2, 12, 0}

// checkServerVersion refuses a server too old for choreo with a message
// that says what to do, instead of a JetStream API error later.
func checkServerVersion(nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	var got [3]int
	if _, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d.%d", &got[0], &got[1], &got[2]); err != nil {
		return nil // an unparseable version (a dev build): let it try
	}
	for i := range got {
		if got[i] != minServerVersion[i] {
			if got[i] < minServerVersion[i] {
				return fmt.Errorf("the NATS server at %s is version %s; choreo needs %d.%d.%d or newer (run choreo up without --nats-url and NATS_URL to use the embedded server)",
					nc.ConnectedUrlRedacted(), v, minServerVersion[0], minServerVersion[1], minServerVersion[2])
			}
			return nil
		}
	}
	return nil
}
