package natstest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/natstest"
)

func TestRestartKeepsURLAndData(t *testing.T) {
	srv := natstest.Start(t)
	if !strings.HasPrefix(srv.URL, "nats://127.0.0.1:") || strings.HasSuffix(srv.URL, ":4222") {
		t.Errorf("URL: got %q, want a random port on 127.0.0.1", srv.URL)
	}
	_, js := natstest.Connect(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("before")); err != nil {
		t.Fatal(err)
	}

	url := srv.URL
	srv.Restart(t)
	if srv.URL != url {
		t.Errorf("URL after Restart: got %q, want %q", srv.URL, url)
	}

	// The same client reconnects by itself and finds the stream and its
	// message. Each attempt has its own timeout: a request written just
	// before the client noticed the restart is lost, and waiting for its
	// answer would take the whole deadline.
	deadline := time.Now().Add(20 * time.Second)
	var (
		s   jetstream.Stream
		err error
	)
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		s, err = js.Stream(attempt, "S")
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("stream after Restart: %v", err)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("message after Restart: %v", err)
	}
	if string(m.Data) != "before" {
		t.Errorf("message after Restart: got %q, want %q", m.Data, "before")
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := natstest.Start(t), natstest.Start(t)
	if a.URL == b.URL {
		t.Errorf("two servers: got the same URL %q twice, want distinct ports", a.URL)
	}
}

func TestContextEndsWithTheTest(t *testing.T) {
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		ctx = natstest.Context(t)
		if ctx.Err() != nil {
			t.Errorf("during the test: got %v, want a live context", ctx.Err())
		}
	})
	if ctx.Err() == nil {
		t.Error("after the test: got a live context, want it cancelled")
	}
}

// Three nodes form a cluster on which a stream of three replicas keeps
// taking messages while its leader's node is down, and the node comes
// back on the same ports with its store and catches up.
func TestClusterSurvivesANodeRestart(t *testing.T) {
	c := natstest.StartCluster(t, 3, nil)
	if got := strings.Count(c.URLs(), ","); got != 2 {
		t.Fatalf("URLs %q: want three", c.URLs())
	}
	_, js := natstest.Connect(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader := c.Node(s.CachedInfo().Cluster.Leader)
	if leader == nil {
		t.Fatalf("stream leader %q is no node of the cluster", s.CachedInfo().Cluster.Leader)
	}
	url := leader.URL
	leader.Shutdown()
	if leader.Running() {
		t.Fatal("a node shut down says it runs")
	}
	// Two of three keep a quorum: a new leader takes the publish (retried,
	// the client may have been on the node that went).
	natstest.PublishUntilAcked(t, ctx, js, "s.2", nil, "s.2")
	leader.Restart(t)
	if leader.URL != url {
		t.Errorf("URL after Restart: got %q, want %q", leader.URL, url)
	}
	c.WaitForMetaLeader(t)
	natstest.PublishUntilAcked(t, ctx, js, "s.3", nil, "s.3")
	deadline := time.Now().Add(time.Minute)
	for {
		// Each request for at most a few seconds: one that reaches the
		// stream between two leaders gets no answer, and with ctx alone
		// would wait out the test's minute instead of asking again.
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := s.Info(rctx)
		rcancel()
		if err == nil && info.State.Msgs == 3 && len(info.Cluster.Replicas) == 2 && info.Cluster.Replicas[0].Current && info.Cluster.Replicas[1].Current {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream after the restart: %+v, %v; want 3 messages on 3 current replicas", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
