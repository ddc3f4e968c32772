package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/loadgen"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/sqltest"
)

// choreo bench at a tiny size, as a user runs it: it starts the real
// binary, measures the machine's limits, drives every saga path and
// prints JSON with every field of its report set.
func TestBenchEmbeddedJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a load; skipped with -short")
	}
	bin := buildChoreo(t)
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			args := []string{"bench", "--embedded", "--choreo-bin", bin, "--duration", "1s", "--warmup", "300ms",
				"--inflight", "8", "--mix", "happy=70,out_of_stock=10,declined=10,cancel=10", "--json"}
			// SQLite alternates two rounds of the minimal saga and the
			// load; PostgreSQL runs the default single round.
			rounds := 2
			if engine == "postgres" {
				args = append(args, "--db", sqltest.RequirePostgres(t))
				rounds = 1
			} else {
				args = append(args, "--rounds", "2")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			if code := run(ctx, args, &stdout, &stderr, func(string) string { return "" }); code != 0 {
				t.Fatalf("choreo bench exited %d; stderr:\n%s", code, stderr.String())
			}
			var rep benchReport
			dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rep); err != nil {
				t.Fatalf("bench --json: %v\n%s", err, stdout.String())
			}
			// Every field is present in the JSON…
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			// (but those of a NATS server that runs as a process of its own).
			checkFields(t, "", reflect.TypeOf(rep), raw, "cpu.nats_server_ms_per_saga", "memory.nats_server")
			// …and means something.
			if rep.Setup.Engine != engine || rep.Setup.Target != "embedded" || rep.Setup.Mix == "" {
				t.Errorf("setup: got %+v, want embedded %s with the mix", rep.Setup, engine)
			}
			if rep.Sagas.Completed == 0 || rep.Sagas.PerSec <= 0 || rep.Sagas.Lost != 0 || rep.Sagas.Unexpected != 0 {
				t.Errorf("sagas: got %+v, want some completed, none lost or unexpected", rep.Sagas)
			}
			if rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 || rep.Latency.Max < rep.Latency.P99 {
				t.Errorf("latency: got %+v, want 0 < p50 <= p99 <= max", rep.Latency)
			}
			if !rep.CPU.Measured || rep.CPU.SystemMsPerSaga <= 0 {
				t.Errorf("cpu: got %+v, want the child process measured", rep.CPU)
			}
			if rep.Memory == nil || rep.Memory.PeakRSSBytes <= 0 || rep.Memory.FinalRSSBytes <= 0 {
				t.Errorf("memory: got %+v, want peak and final RSS", rep.Memory)
			}
			if l := rep.Limits; l == nil || l.JetStreamPublishPerSec <= 0 || l.StoreCommitPerSec <= 0 || l.MinimalSagaPerSec <= 0 {
				t.Errorf("limits: got %+v, want every limit measured", rep.Limits)
			}
			for _, k := range []string{"to_minimal_saga", "to_jetstream_publish", "to_store_commit", "cpu_to_minimal_saga"} {
				if v, ok := rep.Ratios[k].(float64); !ok || v <= 0 {
					t.Errorf("ratio %s: got %v, want a positive number", k, rep.Ratios[k])
				}
			}
			if len(rep.Rounds) != rounds {
				t.Fatalf("rounds: got %d, want %d: %+v", len(rep.Rounds), rounds, rep.Rounds)
			}
			for i, r := range rep.Rounds {
				if r.MinimalSagaPerSec <= 0 || r.PerSec <= 0 || r.ToMinimalSaga <= 0 || r.SystemMsPerSaga <= 0 || r.CPUToMinimalSaga <= 0 {
					t.Errorf("round %d: got %+v, want every figure measured", i+1, r)
				}
			}
			if got, want := rep.Ratios["to_minimal_saga"], median(rep.Rounds, func(r benchRound) float64 { return r.ToMinimalSaga }); got != want {
				t.Errorf("ratio to_minimal_saga: got %v, want the rounds' median %v", got, want)
			}
			outcomes := strings.Join(mapKeys(rep.Outcomes), " ")
			for _, want := range []string{"CONFIRMED", "CANCELLED/out_of_stock", "CANCELLED/payment_declined"} {
				if rep.Outcomes[want] == 0 {
					t.Errorf("outcomes %s: no %s, want every path of the mix", outcomes, want)
				}
			}
		})
	}
}

// Against a system whose NATS server is a process of its own, bench counts
// that server's CPU in the CPU per saga (embedded, it is in choreo's) and
// shows its memory apart. The server here runs in the test's process;
// choreo up is a child.
func TestBenchCountsASeparateNATSServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a load; skipped with -short")
	}
	srv := natstest.Start(t)
	child, _ := startProcess(t, buildChoreo(t), "--nats-url", srv.URL, "--data", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"bench", "--nats-url", srv.URL, "--pid", strconv.Itoa(child.Process.Pid), "--nats-pid", strconv.Itoa(os.Getpid()),
		"--no-ceiling", "--duration", "1s", "--warmup", "300ms", "--inflight", "8", "--json"}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, args, &stdout, &stderr, func(string) string { return "" }); code != 0 {
		t.Fatalf("choreo bench exited %d; stderr:\n%s", code, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, stdout.String())
	}
	if c := rep.CPU; !c.Measured || c.NATSServerMsPerSaga <= 0 || c.SystemMsPerSaga <= c.NATSServerMsPerSaga {
		t.Errorf("cpu: got %+v, want the server's CPU per saga, and the total above it", c)
	}
	if m := rep.Memory; m == nil || m.PeakRSSBytes <= 0 || m.NATSServer == nil || m.NATSServer.PeakRSSBytes <= 0 || m.NATSServer.FinalRSSBytes <= 0 {
		t.Errorf("memory: got %+v, want choreo's RSS and the server's apart", m)
	}
	if rep.Sagas.Completed == 0 || rep.Sagas.Lost != 0 {
		t.Errorf("sagas: got %+v, want some completed, none lost", rep.Sagas)
	}
}

// checkFields fails for every field of t (a struct) missing from raw,
// descending into nested structs, but the fields named in absent (by
// their dotted path).
func checkFields(t *testing.T, prefix string, typ reflect.Type, raw map[string]json.RawMessage, absent ...string) {
	t.Helper()
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			if !slices.Contains(absent, prefix+name) {
				t.Errorf("bench --json: field %s%s missing", prefix, name)
			}
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.String() != "time.Time" {
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(v, &sub); err != nil {
				t.Errorf("bench --json: field %s%s: %v", prefix, name, err)
				continue
			}
			checkFields(t, prefix+name+".", ft, sub, absent...)
		}
	}
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--mix", "happy=1,teleport=2"},
		{"bench", "--mix", "happy=0"},
		{"bench", "--inflight", "0"},
		{"bench", "--db", "postgres://x/y"},
		{"bench", "--embedded", "--db", "/tmp/x.db"},
		{"bench", "--durable"},
		{"bench", "--embedded", "--pid", "1"},
		{"bench", "--nats-pid", "1"},
		{"bench", "--consumer-batch", "0"},
		{"bench", "--rounds", "0"},
		{"bench", "--rounds", "2", "--no-ceiling"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" }); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr: %s", args, code, stderr.String())
		}
	}
}

func TestMedian(t *testing.T) {
	id := func(v float64) float64 { return v }
	for _, tt := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{0.4}, 0.4},
		{[]float64{0.5, 0.1, 0.3}, 0.3},
		{[]float64{0.4, 0.1, 0.3, 0.2}, 0.25},
	} {
		if got := median(tt.in, id); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// Rounds' windows add up: counts, outcomes, latencies, and a rate over
// every window, not the mean of the rounds' rates.
func TestMergeResults(t *testing.T) {
	window := func(completed int, secs float64, outcome string, latUs ...int64) loadgen.Result {
		h := hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
		for _, v := range latUs {
			_ = h.RecordValue(v)
		}
		return loadgen.Result{Placed: completed, Completed: completed, CompletedInWindow: completed,
			Window: time.Duration(secs * float64(time.Second)), Rate: float64(completed) / secs,
			Outcomes: map[string]int{outcome: completed}, Latency: h}
	}
	var all loadgen.Result
	all = mergeResults(all, window(300, 1, "CONFIRMED", 1000, 2000))
	all = mergeResults(all, window(100, 3, "CANCELLED/out_of_stock", 9000))
	if all.Placed != 400 || all.Completed != 400 || all.CompletedInWindow != 400 || all.Window != 4*time.Second || all.Rate != 100 {
		t.Errorf("counts: got %+v, want 400 sagas over 4s, 100 sagas/s", all)
	}
	if len(all.Outcomes) != 2 || all.Outcomes["CONFIRMED"] != 300 || all.Outcomes["CANCELLED/out_of_stock"] != 100 {
		t.Errorf("outcomes: got %v, want both windows'", all.Outcomes)
	}
	if all.Latency.TotalCount() != 3 || all.Latency.Max() < 8990 {
		t.Errorf("latency: %d values, max %d; want the three of both windows", all.Latency.TotalCount(), all.Latency.Max())
	}
}
