package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/discovery"
	"github.com/choreo-dev/choreo/events/sqldb"
)

// Every service process registers itself as a NATS micro service, so
// `go tool nats micro ls | info | stats` and `choreo status` can see it:
//
//	name      choreo-<service>  (one per service; replicas share the name,
//	          each with its own instance id)
//	endpoint  choreo.<service>.status  answers a microStatus (micro's
//	          queue group: one instance answers)
//	endpoints one per subject its consumer handles (orders-placed for
//	          orders.placed.*, ...): requests are the messages it handled,
//	          errors those retried or dead-lettered
//	stats     $SRV.STATS.choreo-<service> is answered by EVERY instance;
//	          the status endpoint's "data" carries the same microStatus.
//
// choreo status gathers $SRV.STATS replies for a short window, so it sees
// every instance, not just the one a queue group picks.

const (
	microPrefix  = catalog.MicroPrefix
	microVersion = "0.1.0"
)

// microStatus is what one instance of a service reports about itself.
type microStatus struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	// Store identifies the database (see storeIdentity): replicas sharing
	// one database report the same outbox, so it is counted once, and
	// replicas reporting different ones are a mistake choreo status shows.
	Store                  string  `json:"store"`
	OutboxBacklog          int     `json:"outbox_backlog"`
	OutboxOldestAgeSeconds float64 `json:"outbox_oldest_age_seconds"`
	Error                  string  `json:"error,omitempty"`
}

// microBacklogFunc is the outbox's Backlog method.
type microBacklogFunc func(ctx context.Context) (int, time.Time, error)

// microName is the micro service name of a choreo service.
func microName(service string) string { return catalog.MicroName(service) }

// storeIdentity returns the identity of a service's store: a random id
// written into the store the first time any instance opens it. Instances
// sharing one store report the same id however they name it (two URLs for
// one server, the same relative SQLite path meaning different files on two
// machines), so `choreo status` can tell replicas on one store from
// replicas that, by mistake, each have their own.
func storeIdentity(ctx context.Context, db *sqldb.DB) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store identity: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS choreo_store (k INTEGER PRIMARY KEY, id TEXT NOT NULL)`); err != nil {
		return "", fmt.Errorf("store identity: create its table: %w", err)
	}
	// The first instance's id wins; later ones read it.
	if _, err := db.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO choreo_store (k, id) VALUES (1, ?) ON CONFLICT (k) DO NOTHING`), hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("store identity: %w", err)
	}
	var id string
	if err := db.QueryRowContext(ctx, `SELECT id FROM choreo_store WHERE k = 1`).Scan(&id); err != nil {
		return "", fmt.Errorf("store identity: %w", err)
	}
	return id, nil
}

// microStore is the store an instance uses: its identity (storeIdentity)
// and its URL, password masked.
type microStore struct{ id, url string }

// Metadata keys of an instance's micro service, read by its siblings.
const (
	metaStore    = "store"
	metaStoreURL = "store_url"
)

// How long a starting instance waits for its siblings to describe
// themselves: for the first answer (none comes when no sibling runs: the
// server says at once that nobody listens), then for more.
const (
	siblingsFirst = time.Second
	siblingsQuiet = 300 * time.Millisecond
)

// checkSiblingStores refuses an instance of service whose store is not the
// one its live siblings use. Instances of one service share its durable
// consumers, so each handles a share of every saga's events; on stores of
// their own, none holds a whole saga, and orders go wrong quietly (the
// mistake of running `choreo serve payments --db <postgres>` next to a
// `choreo up` on SQLite). Every instance registers its micro service (with
// its store in the metadata) right after this check and before its
// consumer starts, so of two instances started one after the other with
// different stores the later one refuses: it asks after the first has
// registered. Two started within the same instant can both miss each
// other: watchSiblingStores, asking again once registered, catches them.
func checkSiblingStores(ctx context.Context, nc *nats.Conn, service string, store microStore) error {
	other, err := siblingOnAnotherStore(ctx, nc, service, store, "")
	if err != nil || other == nil {
		return err
	}
	return fmt.Errorf("%s: refusing to start: a running %s instance (%s) uses the store %s, and this one %s; "+
		"%s: give this one the same --db (CHOREO_DB_URL) as the running one, or stop that one first",
		service, service, other.ID, other.Metadata[metaStoreURL], store.url, shareOneStore)
}

// shareOneStore says why instances on different stores are refused, in
// the refusal at start and in the reason a running instance is not ready.
const shareOneStore = "instances of one service must share one store, or each sees only part of every saga"

// siblingOnAnotherStore returns a live instance of service, other than
// the instance self, whose store is not store; nil when there is none.
func siblingOnAnotherStore(ctx context.Context, nc *nats.Conn, service string, store microStore, self string) (*micro.Info, error) {
	replies, err := statusGather(ctx, nc, catalog.SiblingsSubject(service), siblingsFirst, siblingsQuiet)
	if err != nil {
		return nil, fmt.Errorf("%s: ask the running instances which store they use: %w", service, err)
	}
	for _, data := range replies {
		var info micro.Info
		if json.Unmarshal(data, &info) != nil || info.ID == self {
			continue
		}
		if theirs := info.Metadata[metaStore]; theirs != "" && theirs != store.id {
			return &info, nil
		}
	}
	return nil, nil
}

// siblingsRecheck is how often a running instance asks its siblings again.
const siblingsRecheck = 30 * time.Second

// siblingWatch keeps checking, once an instance runs, that its siblings
// share its store: right after it registered (closing the race of two
// instances started in the same instant, of which at least one asks after
// the other registered), then every siblingsRecheck. While one does not,
// the instance reports not ready, saying why (see system.readyz); its
// consumer keeps running, as its sibling's does.
type siblingWatch struct {
	split  atomic.Pointer[error]
	cancel context.CancelFunc
	done   chan struct{}
}

func watchSiblingStores(nc *nats.Conn, service string, store microStore, self string, log *slog.Logger) *siblingWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &siblingWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(siblingsRecheck)
		defer tick.Stop()
		for {
			other, err := siblingOnAnotherStore(ctx, nc, service, store, self)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Warn("cannot ask the other instances which store they use", "err", err)
			case other != nil:
				split := fmt.Errorf("%s: another %s instance (%s) uses the store %s, and this one %s; "+
					"%s: give them the same --db (CHOREO_DB_URL), or stop one",
					service, service, other.ID, other.Metadata[metaStoreURL], store.url, shareOneStore)
				if w.split.Swap(&split) == nil {
					log.Error("instances on different stores", "err", split)
				}
			default:
				if w.split.Swap(nil) != nil {
					log.Info("every instance now shares this store")
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// ready is the watch's readiness check.
func (w *siblingWatch) ready(context.Context) error {
	if err := w.split.Load(); err != nil {
		return *err
	}
	return nil
}

func (w *siblingWatch) stop() {
	w.cancel()
	<-w.done
}

// startMicro makes service discoverable (see package discovery): its
// status endpoint, and a row for every subject its consumer handles with
// what it did with it. Its Middleware must wrap the consumer for those
// rows to count.
func startMicro(nc *nats.Conn, service string, store microStore, backlog microBacklogFunc, consumes consumer.Config) (*discovery.Service, error) {
	// The instance id is known once Start returns, but a status request
	// may already be answered by then.
	var started atomic.Pointer[discovery.Service]
	status := func() microStatus {
		st := microStatus{Service: service, Store: store.id}
		if ms := started.Load(); ms != nil {
			st.Instance = ms.ID()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, oldest, err := backlog(ctx)
		if err != nil {
			st.Error = err.Error()
			return st
		}
		st.OutboxBacklog = n
		if n > 0 && !oldest.IsZero() {
			st.OutboxOldestAgeSeconds = max(0, time.Since(oldest).Seconds())
		}
		return st
	}
	cfg := discovery.Config{
		Name:        microName(service),
		Version:     microVersion,
		Description: "choreo " + service + " service: the events and commands it handles, its outbox backlog",
		Metadata:    map[string]string{"service": service, metaStore: store.id, metaStoreURL: store.url},
		Endpoints: []discovery.Endpoint{{
			Name: "status", Subject: catalog.StatusSubject(service),
			Metadata: map[string]string{"format": "application/json"},
			Handle:   func(context.Context, []byte) (any, error) { return status(), nil },
			Stats:    func() any { return status() },
		}},
	}
	for _, src := range consumes.Sources {
		for _, pattern := range src.FilterSubjects {
			cfg.Consumes = append(cfg.Consumes, discovery.Consumed{Pattern: pattern, Stream: src.Stream, Consumer: src.Durable})
		}
	}
	ms, err := discovery.Start(nc, cfg)
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", microName(service), err)
	}
	started.Store(ms)
	return ms, nil
}
