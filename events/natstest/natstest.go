// Package natstest starts a real, embedded NATS server with JetStream for
// tests: a random port, its store in a temporary directory, shut down when
// the test ends. Nothing is mocked.
package natstest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded JetStream server owned by one test.
type Server struct {
	*server.Server
	// URL is the client URL; it stays the same across Restart.
	URL  string
	opts server.Options
}

// Start starts a server on a random port and registers its shutdown.
func Start(t testing.TB) *Server {
	t.Helper()
	opts := server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	s := &Server{opts: opts}
	s.start(t)
	// Later starts reuse the port so clients can reconnect to the same URL.
	s.opts.Port = s.Server.Addr().(*net.TCPAddr).Port
	s.URL = "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port)
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	opts := s.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("natstest: server not ready for connections")
	}
	s.Server = ns
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	if s.Server == nil {
		return
	}
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
}

// Restart stops the server and starts it again on the same port with the
// same store: streams, consumers and messages survive, clients reconnect.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Shutdown()
	s.start(t)
}

// Connect opens a client connection that retries forever on disconnect and
// closes when the test ends; opts add to (or override) those settings, e.g.
// credentials.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.RetryOnFailedConnect(true)}, opts...)...)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
