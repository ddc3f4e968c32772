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
