package streams_test

import (
	"context"
	"log/slog"
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
	if got := err.Error(); !strings.Contains(got, "create B") {
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

// A process that declares weaker settings than an existing stream has (one
// replica, a shorter window, tighter limits) leaves them as they are; one
// that declares stronger ones raises them; both keep the stream's other
// declared settings current.
func TestEnsureNeverLowers(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx := natstest.Context(t)
	strong := streams.Spec{Name: "S", Subjects: []string{"s.>"}, Limits: streams.Limits{MaxAge: time.Hour, MaxMsgs: 1000, MaxBytes: 1 << 20}}
	if err := streams.Ensure(ctx, js, []streams.Spec{strong}, streams.Options{DuplicateWindow: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	config := func() jetstream.StreamConfig {
		t.Helper()
		s, err := js.Stream(ctx, "S")
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	weak := streams.Spec{Name: "S", Subjects: []string{"s.>", "t.>"}, Description: "new", Limits: streams.Limits{MaxAge: time.Minute, MaxMsgs: 10, MaxBytes: 1 << 10}}
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	if err := streams.Ensure(ctx, js, []streams.Spec{weak}, streams.Options{DuplicateWindow: time.Second, Logger: log}); err != nil {
		t.Fatal(err)
	}
	got := config()
	if got.MaxAge != time.Hour || got.MaxMsgs != 1000 || got.MaxBytes != 1<<20 || got.Duplicates != 2*time.Minute {
		t.Errorf("after a weaker Ensure: age %s msgs %d bytes %d window %s, want 1h 1000 1MiB 2m (unchanged)", got.MaxAge, got.MaxMsgs, got.MaxBytes, got.Duplicates)
	}
	if !slices.Equal(got.Subjects, weak.Subjects) || got.Description != "new" {
		t.Errorf("after a weaker Ensure: subjects %v description %q, want %v \"new\" (the rest is updated)", got.Subjects, got.Description, weak.Subjects)
	}
	for _, setting := range []string{"max age", "max messages", "max bytes", "duplicate window", "choreo streams apply --allow-lower", "nats stream edit S"} {
		if !strings.Contains(logged.String(), setting) {
			t.Errorf("log does not mention %q:\n%s", setting, logged.String())
		}
	}

	// Unlimited is the strongest: raised to it, never back.
	if err := streams.Ensure(ctx, js, []streams.Spec{{Name: "S", Subjects: weak.Subjects, Description: "new"}}, streams.Options{DuplicateWindow: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if got := config(); got.MaxAge != 0 || got.MaxMsgs != -1 || got.MaxBytes != -1 {
		t.Errorf("after an unlimited Ensure: age %s msgs %d bytes %d, want no limits", got.MaxAge, got.MaxMsgs, got.MaxBytes)
	}
	if err := streams.Ensure(ctx, js, []streams.Spec{weak}, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := config(); got.MaxAge != 0 || got.MaxMsgs != -1 || got.MaxBytes != -1 {
		t.Errorf("limits after a limited Ensure: age %s msgs %d bytes %d, want still none", got.MaxAge, got.MaxMsgs, got.MaxBytes)
	}
}

// Replicas cannot be raised on one server, so Merge is checked alone: a
// stream with three replicas keeps them against a declared one.
func TestMergeKeepsReplicas(t *testing.T) {
	have := streams.Config(streams.Spec{Name: "S"}, streams.Options{Replicas: 3})
	want := streams.Config(streams.Spec{Name: "S"}, streams.Options{Replicas: 1})
	got, kept := streams.Merge(have, want)
	if got.Replicas != 3 || len(kept) != 1 || kept[0].Setting != "replicas" {
		t.Errorf("Merge(R3, R1): replicas %d, kept %+v, want 3 and [replicas]", got.Replicas, kept)
	}
	if got, kept := streams.Merge(want, have); got.Replicas != 3 || len(kept) != 0 {
		t.Errorf("Merge(R1, R3): replicas %d, kept %+v, want 3 (raised) and nothing kept", got.Replicas, kept)
	}
}

// Plan says what Apply will do and changes nothing; a weaker declaration
// is lowered only by a plan that allows it, each lowering marked.
func TestPlanAndApply(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL)
	ctx := natstest.Context(t)
	strong := []streams.Spec{{Name: "S", Subjects: []string{"s.>"}, Limits: streams.Limits{MaxMsgs: 1000}}}
	plans, err := streams.Plan(ctx, js, strong, streams.Options{}, streams.KeepStronger)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 1 || plans[0].Action != streams.Create || !hasChange(plans[0].Changes, "max messages", "", "1000") {
		t.Fatalf("plan of a missing stream: %+v, want create with max messages 1000", plans)
	}
	if _, err := js.Stream(ctx, "S"); err == nil {
		t.Fatal("Plan created the stream")
	}
	if err := streams.Apply(ctx, js, plans); err != nil {
		t.Fatal(err)
	}
	if plans, err = streams.Plan(ctx, js, strong, streams.Options{}, streams.KeepStronger); err != nil || plans[0].Action != streams.Unchanged || len(plans[0].Changes) != 0 {
		t.Fatalf("plan after Apply: %+v, %v; want unchanged", plans, err)
	}

	weak := []streams.Spec{{Name: "S", Subjects: []string{"s.>"}, Description: "new", Limits: streams.Limits{MaxMsgs: 10}}}
	plans, err = streams.Plan(ctx, js, weak, streams.Options{}, streams.KeepStronger)
	if err != nil {
		t.Fatal(err)
	}
	p := plans[0]
	if p.Action != streams.Update || len(p.Changes) != 1 || !hasChange(p.Changes, "description", "", "new") || len(p.Kept) != 1 || p.Kept[0].Setting != "max messages" {
		t.Errorf("plan keeping stronger: %+v; want the description changed and max messages kept", p)
	}
	plans, err = streams.Plan(ctx, js, weak, streams.Options{}, streams.AllowLower)
	if err != nil {
		t.Fatal(err)
	}
	p = plans[0]
	if len(p.Kept) != 0 || !hasChange(p.Changes, "max messages", "1000", "10") {
		t.Fatalf("plan allowing lower: %+v; want max messages 1000 -> 10", p)
	}
	for _, c := range p.Changes {
		if c.Lowers != (c.Setting == "max messages") {
			t.Errorf("change %+v: Lowers %v, want it only on max messages", c, c.Lowers)
		}
	}
	if err := streams.Apply(ctx, js, plans); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config; got.MaxMsgs != 10 || got.Description != "new" {
		t.Errorf("after applying the lowering plan: max msgs %d, description %q; want 10, new", got.MaxMsgs, got.Description)
	}
}

func hasChange(changes []streams.Change, setting, from, to string) bool {
	return slices.ContainsFunc(changes, func(c streams.Change) bool { return c.Setting == setting && c.From == from && c.To == to })
}
