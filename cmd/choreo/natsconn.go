package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/streams"
)

// natsCreds says which credentials file each connection of a system
// authenticates with. A nil service or an empty file connects without
// credentials (a server without authentication, or as its anonymous user).
type natsCreds struct {
	// serviceFile returns the credentials file of a service.
	serviceFile func(service string) string
	// setup is the credentials file of the user that sets up the streams
	// (the operator), or "": the first service's connection does.
	setup string
}

func (c natsCreds) service(name string) string {
	if c.serviceFile == nil {
		return ""
	}
	return c.serviceFile(name)
}

// natsConn is one NATS connection of a running system.
type natsConn struct {
	name   string
	nc     *nats.Conn
	js     jetstream.JetStream
	closed chan struct{}
	// reconnected is when the connection last reconnected (Unix nanos).
	reconnected atomic.Int64
}

// connectService connects as name with the credentials file creds ("":
// none). The connection reconnects for ever: a service outlives a restart
// of its server.
func connectService(cfg systemConfig, name, creds string) (*natsConn, error) {
	c := &natsConn{name: name, closed: make(chan struct{})}
	opts := []nats.Option{
		nats.Name("choreo-" + name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				cfg.log.Warn("nats: disconnected", "service", name, "err", err)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.reconnected.Store(time.Now().UnixNano())
			cfg.log.Info("nats: reconnected", "service", name, "url", nc.ConnectedUrlRedacted())
		}),
		// A permission the server refuses is a bug in the permissions or
		// in the service: say so loudly, with the subject. Except a reply
		// the server refuses just after a reconnect (staleReply).
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if staleReply(err, time.Since(time.Unix(0, c.reconnected.Load()))) {
				cfg.log.Warn(staleReplyMessage, "service", name, "err", err)
				return
			}
			cfg.log.Error("nats: error", "service", name, "err", err)
		}),
	}
	if creds != "" {
		opt, err := natsauth.CredentialsOption(creds)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(cfg.natsURL, opts...)
	if err != nil {
		hint := "start one, or run choreo up without --nats-url and NATS_URL to use the embedded server"
		if errors.Is(err, nats.ErrAuthorization) {
			hint = "the server refused the credentials " + orNone(creds)
		}
		return nil, fmt.Errorf("%s: connect to NATS at %s: %w (%s)", name, cfg.natsURL, err, hint)
	}
	c.nc = nc
	if err := checkServerVersion(nc); err != nil {
		c.close()
		return nil, err
	}
	// Acks lost without a disconnect would otherwise stay pending in the
	// client forever and count against its limit of async publishes; the
	// relay gives up on them sooner (its ack timeout) and sends again.
	if c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second)); err != nil {
		c.close()
		return nil, fmt.Errorf("%s: jetstream: %w", name, err)
	}
	return c, nil
}

// staleReply reports whether err is the server refusing a reply shortly
// after the connection reconnected. A service may publish to an inbox only
// to answer a request its connection received (its user's response
// permission). A request that arrived on the previous connection — read
// from the socket after the process was paused, or still queued for its
// handler when the server restarted — is answered on the new connection,
// which never received it, so the server refuses the answer. Nothing is
// lost: the requester has timed out and asks again.
func staleReply(err error, sinceReconnect time.Duration) bool {
	return errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(strings.ToLower(err.Error()), `publish to "_inbox.`) &&
		sinceReconnect >= 0 && sinceReconnect < staleReplyWindow
}

// staleReplyWindow is how long after a reconnect a refused reply is taken
// for one to a request of the previous connection: the server's default
// response permission lasts this long (a reply later than that would be
// refused on any connection).
const staleReplyWindow = 2 * time.Minute

// staleReplyMessage is the log message of a refused stale reply.
const staleReplyMessage = "nats: a reply to a request received before the reconnect was refused; its requester has given up on it"

func orNone(creds string) string {
	if creds == "" {
		return "(none given)"
	}
	return creds
}

// close drains the connection (in-flight publishes and acks finish) and
// waits until it is closed.
func (c *natsConn) close() {
	if c.nc == nil {
		return
	}
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
	}
	<-c.closed
}

// ensureStreams creates each missing stream and brings an existing one to
// its declared configuration, never lowering its replicas or limits (see
// streams.Ensure), and leaving alone a stream that already has it: a
// service's NATS user may read a stream's configuration but not change it,
// so a service started against streams the operator set up asks for
// nothing it may not do.
func ensureStreams(ctx context.Context, js jetstream.JetStream, specs []streams.Spec, opts streams.Options) error {
	if err := streams.Ensure(ctx, js, specs, opts); err != nil {
		return fmt.Errorf("%w (a service's NATS user may not create or change a stream: set the streams up with the operator's credentials, e.g. by starting choreo up with them)", err)
	}
	return nil
}
