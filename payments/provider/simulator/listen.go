package simulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listener is a simulator serving HTTP on a TCP address.
type Listener struct {
	// Server is the simulator, for switching modes and reading the books
	// in process.
	*Server
	// Addr is the address it listens on, host:port, with the port chosen
	// when the one asked for was 0.
	Addr string
	// URL is the base URL of its API: "http://" + Addr.
	URL string

	srv    *http.Server
	cancel context.CancelFunc // cancels the contexts of requests in flight
	done   chan struct{}
	once   sync.Once
	err    error
}

// ListenAndServe starts a simulator configured by cfg on addr (for
// example "127.0.0.1:0") and serves it until ctx is done or Stop is
// called. It returns once the address is bound, so a client can connect
// as soon as it returns.
func ListenAndServe(ctx context.Context, addr string, cfg Config) (*Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: listen on %s: %w", addr, err)
	}
	sim := New(cfg)
	// Requests run under a context Stop cancels, so that a slow-mode
	// answer being held back does not hold up the shutdown.
	base, cancel := context.WithCancel(context.Background())
	l := &Listener{
		Server: sim,
		Addr:   ln.Addr().String(),
		URL:    "http://" + ln.Addr().String(),
		srv: &http.Server{
			Handler:           sim,
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return base },
		},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sim.log.Error("simulator: serve", "addr", l.Addr, "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = l.Stop()
		case <-l.done:
		}
	}()
	return l, nil
}

// Stop stops serving at once: requests in flight are cancelled and every
// connection is closed, as when a provider crashes — a request handled
// just then may have had its effect and lost its answer. Stop returns
// when the server has stopped; it may be called more than once.
//
// Why not a graceful http.Server.Shutdown: it waits up to 5 seconds for a
// connection a client opened but never sent a request on, which a client
// under load leaves behind, and a simulator has no in-flight work worth
// that wait.
func (l *Listener) Stop() error {
	l.once.Do(func() {
		l.cancel()
		l.err = l.srv.Close()
		<-l.done
	})
	return l.err
}

// Done is closed once the server has stopped.
func (l *Listener) Done() <-chan struct{} { return l.done }
