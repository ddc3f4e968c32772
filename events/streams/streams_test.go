package streams_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/streams"
)

func TestConfigDefaults(t *testing.T) {
	cfg := streams.Config(streams.Spec{Name: "ORDERS", Subjects: []string{"orders.>"}, Description: "d"}, streams.Options{})
	if cfg.Name != "ORDERS" || !slices.Equal(cfg.Subjects, []string{"orders.>"}) || cfg.Description != "d" {
		t.Errorf("name, subjects, description: got %q %v %q, want ORDERS [orders.>] d", cfg.Name, cfg.Subjects, cfg.Description)
	}
	if cfg.Storage != jetstream.FileStorage {
		t.Errorf("storage: got %v, want file", cfg.Storage)
	}
	if cfg.Retention != jetstream.LimitsPolicy {
		t.Errorf("retention: got %v, want limits", cfg.Retention)
	}
	if cfg.Replicas != 1 {
		t.Errorf("replicas: got %d, want 1", cfg.Replicas)
	}
	if cfg.Duplicates != streams.DefaultDuplicateWindow {
		t.Errorf("duplicate window: got %s, want %s", cfg.Duplicates, streams.DefaultDuplicateWindow)
	}
	if cfg.AllowMsgSchedules {
		t.Error("schedules: got enabled, want disabled unless asked for")
	}

	cfg = streams.Config(streams.Spec{Name: "ORDERS", Schedules: true}, streams.Options{Replicas: 3, DuplicateWindow: time.Hour})
	if cfg.Replicas != 3 || cfg.Duplicates != time.Hour || !cfg.AllowMsgSchedules {
		t.Errorf("explicit options: got replicas %d window %s schedules %v, want 3 1h true", cfg.Replicas, cfg.Duplicates, cfg.AllowMsgSchedules)
	}
}

func TestEnsure(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx := natstest.Context(t)
	specs := []streams.Spec{
		{Name: "ORDERS", Subjects: []string{"orders.>"}},
		{Name: "DLQ", Subjects: []string{"dlq.>"}},
	}
	if err := streams.Ensure(ctx, js, specs, streams.Options{}); err != nil {
		t.Fatalf("Ensure: got %v, want nil", err)
	}
	// Every process calls Ensure at start: a second call is harmless.
	if err := streams.Ensure(ctx, js, specs, streams.Options{}); err != nil {
		t.Fatalf("second Ensure: got %v, want nil", err)
	}
	for _, spec := range specs {
		s, err := js.Stream(ctx, spec.Name)
		if err != nil {
			t.Fatalf("stream %s: got %v, want it to exist", spec.Name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(info.Config.Subjects, spec.Subjects) || info.Config.Storage != jetstream.FileStorage ||
			info.Config.Duplicates != streams.DefaultDuplicateWindow {
			t.Errorf("stream %s: got subjects %v storage %v window %s, want %v file %s", spec.Name,
				info.Config.Subjects, info.Config.Storage, info.Config.Duplicates, spec.Subjects, streams.DefaultDuplicateWindow)
		}
	}

	// A new release that widens a stream updates it in place.
	specs[0].Subjects = []string{"orders.>", "legacy.orders.>"}
	if err := streams.Ensure(ctx, js, specs[:1], streams.Options{DuplicateWindow: time.Minute}); err != nil {
		t.Fatalf("Ensure with new subjects: got %v, want nil", err)
	}
	s, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Config.Subjects, specs[0].Subjects) || info.Config.Duplicates != time.Minute {
		t.Errorf("updated stream: got subjects %v window %s, want %v 1m", info.Config.Subjects, info.Config.Duplicates, specs[0].Subjects)
	}
}

func TestEnsureReportsTheStream(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Two streams may not capture the same subjects.
	err := streams.Ensure(ctx, js, []streams.Spec{
		{Name: "A", Subjects: []string{"x.>"}},
		{Name: "B", Subjects: []string{"x.>"}},
	}, streams.Options{})
	if err == nil {
		t.Fatal("Ensure with overlapping subjects: got nil error, want one")
	}
	if got := err.Error(); !strings.Contains(got, "ensure B") {
		t.Errorf("error: got %q, want it to name stream B", got)
	}
}

func TestConfigLimits(t *testing.T) {
	cfg := streams.Config(streams.Spec{Name: "X"}, streams.Options{})
	if cfg.MaxAge != 0 || cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 {
		t.Errorf("no limits: got age %s msgs %d bytes %d, want 0 -1 -1", cfg.MaxAge, cfg.MaxMsgs, cfg.MaxBytes)
	}
	cfg = streams.Config(streams.Spec{Name: "X", Limits: streams.Limits{MaxAge: 30 * time.Second, MaxMsgs: 1000, MaxBytes: 1 << 20}},
		streams.Options{DuplicateWindow: time.Minute})
	if cfg.MaxAge != 30*time.Second || cfg.MaxMsgs != 1000 || cfg.MaxBytes != 1<<20 || cfg.Discard != jetstream.DiscardOld {
		t.Errorf("limits: got age %s msgs %d bytes %d discard %v, want 30s 1000 1MiB old", cfg.MaxAge, cfg.MaxMsgs, cfg.MaxBytes, cfg.Discard)
	}
	if cfg.Duplicates != 30*time.Second {
		t.Errorf("duplicate window: got %s, want it cut to the max age (30s): the server refuses a longer one", cfg.Duplicates)
	}
}

// A stream with a count limit keeps the newest messages.
func TestEnsureAppliesLimits(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx := natstest.Context(t)
	spec := streams.Spec{Name: "L", Subjects: []string{"l.>"}, Limits: streams.Limits{MaxMsgs: 3}}
	if err := streams.Ensure(ctx, js, []streams.Spec{spec}, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := js.Publish(ctx, "l.m."+strconv.Itoa(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "L")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 || info.State.FirstSeq != 3 {
		t.Errorf("stream state: got %d messages from seq %d, want the newest 3 (from 3)", info.State.Msgs, info.State.FirstSeq)
	}
}
