package natsauth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/natsauth"
)

var (
	// Not Respond: acks must pass on their own permissions, not as
	// responses to a delivered message.
	reader = natsauth.Role{Name: "svc", Publish: []string{"svc.>"},
		Consumers: []natsauth.Consumer{{Stream: "SRC", Durable: "svc"}}, Streams: []string{"SRC"}}
	admin  = natsauth.Role{Name: "admin", All: true}
	client = natsauth.Role{Name: "client", Publish: []string{"cmd.>"}, Reader: true, Protected: []string{"svc"}}
	roles  = []natsauth.Role{reader, admin, client}
)

// startServer starts a JetStream server with roles as its users, the
// client anonymous, and the JetStream ack format v2 or not; it returns its
// URL and the credentials file of each role.
func startServer(t *testing.T, ackV2 bool) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	keys, err := natsauth.LoadOrCreateKeys(dir, roles)
	if err != nil {
		t.Fatal(err)
	}
	// A second load reads the same keys back.
	again, err := natsauth.LoadOrCreateKeys(dir, roles)
	if err != nil || again["svc"].Public != keys["svc"].Public {
		t.Fatalf("keys not reused: %v", err)
	}
	users, err := natsauth.Users(roles, keys)
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Nkeys: users, NoAuthUser: keys["client"].Public,
		FeatureFlags: map[string]bool{server.FeatureFlagJsAckFormatV2: ackV2}}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("server not ready")
	}
	files := map[string]string{}
	for _, r := range roles {
		files[r.Name] = natsauth.KeyFile(dir, r.Name)
	}
	return ns.ClientURL(), files
}

// connect connects with a credentials file ("": anonymously) and collects
// the permission violations the server reports.
func connect(t *testing.T, url, creds string) (jetstream.JetStream, *nats.Conn, func() []error) {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	opts := []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	})}
	if creds != "" {
		opt, err := natsauth.CredentialsOption(creds)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, nc, func() []error {
		_ = nc.Flush()
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), errs...)
	}
}

// A service's role creates its durable consumer, fetches and acks with
// only its rights, whichever ack subject format the server uses (nats-server
// 2.14 added a second one; a server may switch to it).
func TestServiceConsumesAndAcksInEitherAckFormat(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "ack v1"
		if v2 {
			name = "ack v2"
		}
		t.Run(name, func(t *testing.T) {
			url, creds := startServer(t, v2)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ajs, _, _ := connect(t, url, creds["admin"])
			if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "SRC", Subjects: []string{"src.>"}}); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := ajs.Publish(ctx, "src.x", []byte("m")); err != nil {
					t.Fatal(err)
				}
			}
			js, _, violations := connect(t, url, creds["svc"])
			if _, err := js.Stream(ctx, "SRC"); err != nil {
				t.Fatalf("stream info: %v", err)
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, "SRC", jetstream.ConsumerConfig{Durable: "svc", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "src.>"})
			if err != nil {
				t.Fatalf("create consumer: %v", err)
			}
			batch, err := cons.Fetch(3)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				// v2: $JS.ACK.<domain>.<account hash>.SRC.svc.…
				if got := strings.Split(m.Reply(), ".")[2] == "SRC"; got == v2 {
					t.Errorf("ack subject %s: not the %s format", m.Reply(), name)
				}
				// A double ack waits for the server's confirmation.
				if err := m.DoubleAck(ctx); err != nil {
					t.Errorf("ack %s: %v", m.Reply(), err)
				}
			}
			if n != 3 {
				t.Fatalf("fetched %d messages, want 3 (%v)", n, batch.Error())
			}
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumAckPending != 0 || info.AckFloor.Stream != 3 {
				t.Errorf("after acks: %d pending, ack floor %d; want 0, 3", info.NumAckPending, info.AckFloor.Stream)
			}
			if v := violations(); len(v) > 0 {
				t.Errorf("violations: %v", v)
			}
		})
	}
}

// What each role may not do is refused, with the subject named.
func TestRolesAreRefusedTheRest(t *testing.T) {
	url, creds := startServer(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ajs, _, _ := connect(t, url, creds["admin"])
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "SRC", Subjects: []string{"src.>", "cmd.>"}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		role     string
		subjects []string
	}{
		{"svc", []string{"src.x", "cmd.x", "other.x", "$JS.API.STREAM.DELETE.SRC", "$JS.API.CONSUMER.CREATE.SRC.other", "$JS.API.CONSUMER.MSG.NEXT.SRC.other", "$JS.ACK.SRC.other.1.1.1.1.0"}},
		{"client", []string{"src.x", "svc.x", "$JS.API.STREAM.DELETE.SRC", "$JS.API.STREAM.PURGE.SRC", "$JS.API.CONSUMER.CREATE.SRC.svc", "$JS.API.CONSUMER.CREATE.SRC.svc.src.>", "$JS.API.CONSUMER.MSG.NEXT.SRC.svc", "$JS.API.CONSUMER.DELETE.SRC.svc", "$JS.ACK.SRC.svc.1.1.1.1.0", "$JS.ACK._.h.SRC.svc.1.1.1.1.0"}},
	}
	for _, c := range cases {
		file := creds[c.role]
		if c.role == "client" {
			file = "" // the anonymous user
		}
		_, nc, violations := connect(t, url, file)
		for _, s := range c.subjects {
			if err := nc.Publish(s, nil); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		var got []error
		for len(got) < len(c.subjects) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			got = violations()
		}
		for _, s := range c.subjects {
			found := false
			for _, err := range got {
				found = found || (errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+s+`"`))
			}
			if !found {
				t.Errorf("%s published %s unrefused", c.role, s)
			}
		}
	}
	// The anonymous client sends commands and reads with a consumer of
	// its own.
	js, _, violations := connect(t, url, "")
	if _, err := js.Publish(ctx, "cmd.x", []byte("c")); err != nil {
		t.Errorf("anonymous command: %v", err)
	}
	oc, err := js.OrderedConsumer(ctx, "SRC", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := oc.Next(jetstream.FetchMaxWait(10 * time.Second)); err != nil || string(m.Data()) != "c" {
		t.Errorf("anonymous read: %v", err)
	}
	if v := violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}
