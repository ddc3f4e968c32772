// Package natstest starts real, embedded NATS servers with JetStream for
// tests — one alone, or a cluster of several —: random ports, stores in
// temporary directories, shut down when the test ends. Nothing is mocked.
package natstest

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	if !opts.NoLog { // a test that turns logs on reads them on stderr
		ns.ConfigureLogger()
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
// A node of a Cluster keeps its route port too and rejoins the others
// (Cluster.WaitForMetaLeader waits until it has caught up).
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

// Cluster is a JetStream cluster of embedded servers owned by one test:
// each node has its own client and route ports (random at first, the same
// after a restart) and its own store directory.
type Cluster struct {
	// Nodes are the servers, named n1, n2, … in order.
	Nodes []*Server
}

// StartCluster starts n servers clustered over routes on random ports,
// with JetStream, and returns once they have elected a meta leader that
// sees every node. configure, when not nil, changes each node's options
// before it starts (users and permissions, say); it must not change the
// ports, the routes or the store.
func StartCluster(t testing.TB, n int, configure func(*server.Options)) *Cluster {
	t.Helper()
	// JetStream starts clustered only on a node that has routes when it
	// starts, so every node must know the others' route ports before any
	// starts: ports the kernel picked, held until all are known.
	clusterPorts := freePorts(t, n)
	routes := make([]*url.URL, n)
	for i, p := range clusterPorts {
		routes[i] = &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))}
	}
	c := &Cluster{}
	for i := range n {
		opts := server.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: clusterPorts[i]},
			Routes:     slices.Delete(slices.Clone(routes), i, i+1),
		}
		if configure != nil {
			configure(&opts)
		}
		s := &Server{opts: opts}
		s.start(t)
		s.opts.Port = s.Server.Addr().(*net.TCPAddr).Port
		s.URL = "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port)
		t.Cleanup(s.Shutdown)
		c.Nodes = append(c.Nodes, s)
	}
	c.WaitForMetaLeader(t)
	return c
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: find a free port: %v", err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// URLs is every node's client URL, comma-separated, as nats.Connect and
// NATS_URL take a cluster.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL
	}
	return strings.Join(urls, ",")
}

// Node returns the running node named name (as a stream's cluster
// information names its leader), or nil.
func (c *Cluster) Node(name string) *Server {
	for _, s := range c.Nodes {
		if s.Running() && s.Name() == name {
			return s
		}
	}
	return nil
}

// Running reports whether the server has been started and not shut down.
func (s *Server) Running() bool { return s.Server != nil && s.Server.Running() }

// WaitForMetaLeader waits until a node leads the JetStream meta group and
// counts every running node as its peer, and every running node is
// current with it: streams with as many replicas as nodes can then be
// created, and a restarted node has caught up.
func (c *Cluster) WaitForMetaLeader(t testing.TB) {
	t.Helper()
	running := 0
	for _, s := range c.Nodes {
		if s.Running() {
			running++
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		leader, current := "", 0
		for _, s := range c.Nodes {
			if !s.Running() {
				continue
			}
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == running {
				leader = s.Name()
			}
			if s.JetStreamIsCurrent() {
				current++
			}
		}
		if leader != "" && current == running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: no JetStream meta leader seeing all %d running nodes (leader %q, %d current)", running, leader, current)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PublishUntilAcked publishes body on subject with msgID as its message id
// until the server acks it: a publish lost while a cluster node goes away
// is sent again, and the stream's de-duplication keeps one. It fails the
// test once ctx ends.
func PublishUntilAcked(t testing.TB, ctx context.Context, js jetstream.JetStream, subject string, body []byte, msgID string) {
	t.Helper()
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(attempt, subject, body, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
