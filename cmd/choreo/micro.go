package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Every service process registers itself as a NATS micro service, so
// `go tool nats micro ls | info | stats` and `choreo status` can see it:
//
//	name      choreo-<service>  (one per service; replicas share the name,
//	          each with its own instance id)
//	endpoint  choreo.<service>.status  answers a microStatus (micro's
//	          queue group: one instance answers)
//	stats     $SRV.STATS.choreo-<service> is answered by EVERY instance;
//	          the status endpoint's "data" carries the same microStatus.
//
// choreo status gathers $SRV.STATS replies for a short window, so it sees
// every instance, not just the one a queue group picks.

const (
	microPrefix  = "choreo-"
	microVersion = "0.1.0"
)

// microStatus is what one instance of a service reports about itself.
type microStatus struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	// Store identifies the database (a hash of its masked URL): replicas
	// sharing one database report the same outbox, so it is counted once.
	Store                  string  `json:"store"`
	OutboxBacklog          int     `json:"outbox_backlog"`
	OutboxOldestAgeSeconds float64 `json:"outbox_oldest_age_seconds"`
	Error                  string  `json:"error,omitempty"`
}

// microBacklogFunc is the outbox's Backlog method.
type microBacklogFunc func(ctx context.Context) (int, time.Time, error)

// microName is the micro service name of a choreo service.
func microName(service string) string { return microPrefix + service }

// storeID names a database without revealing where it is.
func microStoreID(dbURL string) string {
	sum := sha256.Sum256([]byte(dbURL))
	return hex.EncodeToString(sum[:6])
}

// startMicro registers service as a micro service on nc.
func startMicro(nc *nats.Conn, service, dbURL string, backlog microBacklogFunc, log *slog.Logger) (micro.Service, error) {
	// The instance id is known once AddService returns, but a stats
	// request may already be answered by then.
	var id atomic.Pointer[string]
	status := func() microStatus {
		st := microStatus{Service: service, Store: microStoreID(dbURL)}
		if p := id.Load(); p != nil {
			st.Instance = *p
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
	svc, err := micro.AddService(nc, micro.Config{
		Name:        microName(service),
		Version:     microVersion,
		Description: "choreo " + service + " service: outbox backlog and the age of its oldest row",
		Metadata:    map[string]string{"service": service},
		StatsHandler: func(*micro.Endpoint) any {
			return status()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", microName(service), err)
	}
	instance := svc.Info().ID
	id.Store(&instance)
	handler := micro.HandlerFunc(func(req micro.Request) {
		b, err := json.Marshal(status())
		if err != nil {
			_ = req.Error("500", err.Error(), nil)
			return
		}
		if err := req.Respond(b); err != nil {
			log.Warn("micro: respond", "err", err)
		}
	})
	if err := svc.AddGroup("choreo."+service).AddEndpoint("status", handler,
		micro.WithEndpointMetadata(map[string]string{"format": "application/json"})); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("micro service %s: %w", microName(service), err)
	}
	return svc, nil
}
