package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/ceiling"
	"github.com/choreo-dev/choreo/cmd/choreo/internal/loadgen"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/sqldb"
)

// Per saga on the happy path: the publishes (the command and seven
// events), and the transactions of the four services (eight deliveries,
// plus payments recording the provider's answer and notifications
// recording the delivery). The ceiling's minimal saga has the same shape;
// the limits are divided by these to compare them with sagas/s.
const (
	publishesPerSaga    = 8
	transactionsPerSaga = 10
)

type benchConfig struct {
	natsURL   string
	tool      *toolFlags // how to connect: --nats-url, --nats-creds
	embedded  bool
	dbURL     string
	durable   bool
	batch     int
	dataDir   string
	inflight  int
	rate      float64
	duration  time.Duration
	warmup    time.Duration
	mix       loadgen.Mix
	ceiling   bool
	rounds    int
	pid       int
	natsPID   int
	json      bool
	quiet     bool
	choreoBin string
	stderr    io.Writer
}

const benchSynopsis = `bench [--embedded [--db postgres://…] [--durable] [--consumer-batch N]] [--inflight N | --rate R] [--duration D] [--rounds N] [--mix happy=90,…] [--json]

Drives the saga with generated orders (cmd.orders.place over NATS) and
prints sagas/s, placed→final latency percentiles, CPU per saga and memory,
each beside the machine's limits measured first in the same run on the same
NATS server and storage: the JetStream async publish rate, the store's
two-row commit rate, and a minimal saga of the same shape with no domain
logic (the ceiling). With --embedded it starts choreo up as a child process
on a fresh data directory and measures that process (the OTEL_* variables,
GOGC, GOMEMLIMIT, GOMAXPROCS and GODEBUG reach it: measure tracing on with
OTEL_TRACES_SAMPLER=always_on and an OTLP endpoint); otherwise it drives
the system behind --nats-url (pass --pid to measure its process, and
--nats-pid to count its NATS server's CPU and see its memory when that
runs as a process of its own).`

func parseBench(args []string, stderr io.Writer, getenv func(string) string) (benchConfig, error) {
	c := benchConfig{stderr: stderr}
	t := newToolFlags("bench", benchSynopsis,
		"choreo bench --embedded --duration 30s --inflight 64 --mix happy=90,out_of_stock=5,declined=5", stderr, getenv)
	fs := t.fs
	fs.BoolVar(&c.embedded, "embedded", false, "start choreo up as a child process (embedded NATS, fresh data) and measure it")
	fs.StringVar(&c.dbURL, "db", "", "with --embedded: keep the services in PostgreSQL (a postgres:// URL of a server; bench creates a fresh database and drops it afterwards)")
	fs.BoolVar(&c.durable, "durable", false, "with --embedded: the durable profile (NATS fsync always, SQLite FULL, PostgreSQL synchronous commit)")
	fs.IntVar(&c.batch, "consumer-batch", defaultConsumerBatch, "with --embedded: messages a consumer applies per transaction (1: batching off); also the ceiling's batch")
	fs.StringVar(&c.dataDir, "data", "", "directory for the run's files (default: a temporary directory, removed afterwards)")
	fs.IntVar(&c.inflight, "inflight", 64, "sagas kept in flight (closed loop)")
	fs.Float64Var(&c.rate, "rate", 0, "place this many sagas per second whatever the system's pace (open loop; overrides --inflight)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "length of the measured window")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "load before the window, not counted")
	mix := fs.String("mix", "happy=100", "saga paths by weight: happy, out_of_stock, declined, cancel")
	noCeiling := fs.Bool("no-ceiling", false, "skip measuring the machine's limits")
	fs.IntVar(&c.rounds, "rounds", 1, "run the minimal saga and the load this many times, alternating, and take the medians of their ratios: on a noisy machine two runs a minute apart can differ by a quarter")
	fs.IntVar(&c.pid, "pid", 0, "without --embedded: the process id of the choreo you started, to measure its CPU and memory")
	fs.IntVar(&c.natsPID, "nats-pid", 0, "with --pid: the process id of the NATS server the system uses, when it runs on its own; its CPU counts in CPU per saga (as the embedded server's does) and its memory is shown apart")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress bar")
	fs.StringVar(&c.choreoBin, "choreo-bin", "", "the choreo binary --embedded starts (default: this one)")
	if _, err := t.parse(args); err != nil {
		return c, err
	}
	c.natsURL, c.json, c.tool = t.natsURL, t.json, t
	c.ceiling = !*noCeiling
	var err error
	if c.mix, err = loadgen.ParseMix(*mix); err != nil {
		return c, fmt.Errorf("%w: --mix: %v", errUsage, err)
	}
	switch {
	case c.inflight < 1:
		return c, fmt.Errorf("%w: --inflight %d < 1", errUsage, c.inflight)
	case c.rate < 0:
		return c, fmt.Errorf("%w: --rate %g < 0", errUsage, c.rate)
	case c.duration <= 0:
		return c, fmt.Errorf("%w: --duration must be positive", errUsage)
	case c.batch < 1:
		return c, fmt.Errorf("%w: --consumer-batch %d < 1", errUsage, c.batch)
	case c.rounds < 1:
		return c, fmt.Errorf("%w: --rounds %d < 1", errUsage, c.rounds)
	case c.rounds > 1 && !c.ceiling:
		return c, fmt.Errorf("%w: --rounds alternates the minimal saga with the load; it cannot go with --no-ceiling", errUsage)
	case c.dbURL != "" && !c.embedded:
		return c, fmt.Errorf("%w: --db needs --embedded (a running system keeps its own store)", errUsage)
	case c.durable && !c.embedded:
		return c, fmt.Errorf("%w: --durable needs --embedded (a running system has its own profile)", errUsage)
	case c.dbURL != "" && !isPostgresURL(c.dbURL):
		return c, fmt.Errorf("%w: --db must be a postgres:// URL", errUsage)
	case c.pid != 0 && c.embedded:
		return c, fmt.Errorf("%w: --pid is for a system you started; --embedded measures its own", errUsage)
	case c.natsPID != 0 && c.pid == 0:
		return c, fmt.Errorf("%w: --nats-pid goes with --pid (the choreo process whose server it is)", errUsage)
	}
	return c, nil
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// benchReport is what bench prints, and its --json form.
type benchReport struct {
	Setup    benchSetup     `json:"setup"`
	Limits   *benchLimits   `json:"limits,omitempty"`
	Sagas    benchSagas     `json:"sagas"`
	Latency  benchLatency   `json:"latency_ms"`
	CPU      benchCPU       `json:"cpu"`
	Memory   *benchMemory   `json:"memory,omitempty"`
	Ratios   map[string]any `json:"ratios"`
	Outcomes map[string]int `json:"outcomes"`
	// Rounds pairs each run of the minimal saga with the load window that
	// followed it (--rounds); the limits' minimal saga figures and the
	// ratios to it are the medians of these. Absent without the ceiling.
	Rounds []benchRound `json:"rounds,omitempty"`
}

// benchRound is one run of the minimal saga and the load window after it.
type benchRound struct {
	MinimalSagaPerSec float64 `json:"minimal_saga_per_sec"`
	MinimalSagaCPUms  float64 `json:"minimal_saga_cpu_ms_per_saga"`
	PerSec            float64 `json:"per_sec"`
	SystemMsPerSaga   float64 `json:"system_ms_per_saga"` // 0 when no process is measured
	ToMinimalSaga     float64 `json:"to_minimal_saga"`
	CPUToMinimalSaga  float64 `json:"cpu_to_minimal_saga"` // 0 when no process is measured
}

type benchSetup struct {
	Target        string  `json:"target"` // "embedded" or the NATS URL
	Engine        string  `json:"engine"` // sqlite, postgres, or "" when unknown
	Profile       string  `json:"profile"`
	ConsumerBatch int     `json:"consumer_batch"`
	Inflight      int     `json:"inflight"`
	Rate          float64 `json:"rate"`
	Mix           string  `json:"mix"`
	WindowSeconds float64 `json:"window_seconds"`
	WarmupSeconds float64 `json:"warmup_seconds"`
}

type benchLimits struct {
	JetStreamPublishPerSec float64 `json:"jetstream_publish_per_sec"`
	StoreCommitPerSec      float64 `json:"store_commit_per_sec"`
	MinimalSagaPerSec      float64 `json:"minimal_saga_per_sec"`
	MinimalSagaBatch       int     `json:"minimal_saga_batch"`
	MinimalSagaCPUms       float64 `json:"minimal_saga_cpu_ms_per_saga"`
	MinimalSagaP99ms       float64 `json:"minimal_saga_p99_ms"`
}

type benchSagas struct {
	PerSec     float64 `json:"per_sec"`
	Placed     int     `json:"placed"`
	Completed  int     `json:"completed"`
	Lost       int     `json:"lost"`
	Unexpected int     `json:"unexpected"`
}

type benchLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type benchCPU struct {
	// SystemMsPerSaga is the CPU time of the measured processes per
	// completed saga: choreo's, and its NATS server's when that is a
	// process of its own (--nats-pid). 0 when there is none to measure.
	SystemMsPerSaga float64 `json:"system_ms_per_saga"`
	// NATSServerMsPerSaga is the part of SystemMsPerSaga that the separate
	// NATS server used (absent without --nats-pid: embedded, the server's
	// CPU is in choreo's process).
	NATSServerMsPerSaga float64 `json:"nats_server_ms_per_saga,omitempty"`
	// GeneratorMsPerSaga is bench's own CPU per saga (the load generator).
	GeneratorMsPerSaga float64 `json:"generator_ms_per_saga"`
	Measured           bool    `json:"measured"`
}

type benchMemory struct {
	// PeakRSSBytes and FinalRSSBytes are the choreo process's (with the
	// embedded server, the server's memory is in it).
	PeakRSSBytes  int64 `json:"peak_rss_bytes"`
	FinalRSSBytes int64 `json:"final_rss_bytes"`
	// NATSServer is the separate NATS server's (--nats-pid).
	NATSServer *benchRSS `json:"nats_server,omitempty"`
}

type benchRSS struct {
	PeakRSSBytes  int64 `json:"peak_rss_bytes"`
	FinalRSSBytes int64 `json:"final_rss_bytes"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseBench(args, stderr, getenv)
	if err != nil {
		return err
	}
	dataDir := cfg.dataDir
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "choreo-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
	}
	rep := benchReport{Setup: benchSetup{
		Target: cfg.natsURL, Profile: "default", ConsumerBatch: cfg.batch, Inflight: cfg.inflight, Rate: cfg.rate,
		Mix: cfg.mix.String(), WindowSeconds: cfg.duration.Seconds(), WarmupSeconds: cfg.warmup.Seconds(),
	}, Ratios: map[string]any{}}
	if cfg.durable {
		rep.Setup.Profile = "durable"
	}

	natsURL := cfg.natsURL
	pid := cfg.pid
	dbURL := cfg.dbURL
	var child *benchChild
	if cfg.embedded {
		rep.Setup.Target = "embedded"
		rep.Setup.Engine = "sqlite"
		if dbURL != "" {
			rep.Setup.Engine = "postgres"
			fresh, drop, err := freshBenchDatabase(ctx, dbURL)
			if err != nil {
				return err
			}
			defer drop()
			dbURL = fresh
		}
		child, err = startBenchChild(ctx, cfg, dataDir, dbURL)
		if err != nil {
			return err
		}
		defer child.stop()
		natsURL, pid = child.natsURL, child.pid
		// The ceiling measurements create streams of their own: the
		// operator's user of the child's embedded server may.
		cfg.tool.natsURL, cfg.tool.creds = natsURL, natsauth.KeyFile(embeddedCredsDir(child.dataDir), catalog.RoleOperator)
	}
	nc, js, err := cfg.tool.connect()
	if err != nil {
		return fmt.Errorf("%w (or use --embedded)", err)
	}
	defer nc.Close()

	say := func(format string, a ...any) {
		if !cfg.json {
			fmt.Fprintf(stdout, format, a...)
		}
	}
	say("choreo bench: %s window after %s warm-up, %s, mix %s, %s\n", cfg.duration, cfg.warmup, loadShape(cfg), cfg.mix, describeTarget(rep.Setup))
	open := ceilingStores(cfg, dataDir, dbURL)
	var minimal []minimalRun
	if cfg.ceiling {
		say("measuring the machine's limits on the same server and storage…\n")
		lim, first, err := measureLimits(ctx, js, nc, cfg, open, pid, cfg.natsPID)
		if err != nil {
			return fmt.Errorf("measure limits: %w", err)
		}
		rep.Limits, minimal = lim, []minimalRun{first}
		say("  JetStream async publish  %s msg/s\n", thousands(lim.JetStreamPublishPerSec))
		say("  store commit (2 rows)    %s tx/s\n", thousands(lim.StoreCommitPerSec))
		say("  minimal saga (ceiling)   %s sagas/s at batch %d, %.2f ms CPU per saga, p99 %.1f ms\n",
			thousands(first.PerSec), lim.MinimalSagaBatch, first.CPUms, first.P99ms)
	}

	var (
		cpuMu            sync.Mutex
		genStart, genCPU time.Duration
		system           = watchProcess(pid)
		server           = watchProcess(cfg.natsPID)
		bar              *progressbar.ProgressBar
		lastLine         time.Time
		showBar          = !cfg.quiet && !cfg.json && isTerminal(stderr)
		showLines        = !cfg.quiet && !cfg.json && !showBar
		windowSecs       = int64(math.Ceil(cfg.duration.Seconds()))
		processCPU       = func() time.Duration { return selfCPU() }
	)
	lg := loadgen.Config{
		NC: nc, JS: js, Inflight: cfg.inflight, Rate: cfg.rate, Warmup: cfg.warmup, Duration: cfg.duration, Mix: cfg.mix,
		OnWindow: func(open bool) {
			cpuMu.Lock()
			defer cpuMu.Unlock()
			g := processCPU()
			system.sample(open)
			server.sample(open)
			if open {
				genStart = g
			} else {
				genCPU += g - genStart
			}
		},
		Progress: func(p loadgen.Progress) {
			desc := fmt.Sprintf("%6s sagas/s, %d in flight", thousands(p.RecentRate), p.InFlight)
			if p.Elapsed < 0 {
				desc = "warm-up: " + desc
			}
			switch {
			case bar != nil:
				bar.Describe(desc)
				_ = bar.Set64(min(windowSecs, max(0, int64(p.Elapsed.Seconds()))))
			case showLines && time.Since(lastLine) >= 5*time.Second:
				lastLine = time.Now()
				fmt.Fprintf(stderr, "bench: %5.0fs  %d completed  %s\n", p.Elapsed.Seconds(), p.Completed, desc)
			}
		},
	}
	if cfg.quiet || cfg.json {
		lg.Progress = nil
	}
	var res loadgen.Result
	for round := 1; round <= cfg.rounds; round++ {
		if round > 1 {
			say("round %d of %d: the minimal saga again, then the load…\n", round, cfg.rounds)
			m, err := measureMinimal(ctx, js, nc, cfg, open, pid, cfg.natsPID)
			if err != nil {
				return fmt.Errorf("measure limits, round %d: %w", round, err)
			}
			minimal = append(minimal, m)
		}
		if showBar {
			bar = progressbar.NewOptions64(windowSecs, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("warm-up"),
				progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
		}
		systemBefore, serverBefore := system.cpu, server.cpu
		one, err := loadgen.Run(ctx, lg)
		if bar != nil {
			_ = bar.Finish()
		}
		if err != nil {
			return err
		}
		res = mergeResults(res, one)
		if len(minimal) == round {
			r := benchRound{MinimalSagaPerSec: minimal[round-1].PerSec, MinimalSagaCPUms: minimal[round-1].CPUms,
				PerSec: one.Rate, ToMinimalSaga: ratio(one.Rate, minimal[round-1].PerSec)}
			if system.ok && one.CompletedInWindow > 0 {
				cpu := system.cpu - systemBefore
				if server.ok {
					cpu += server.cpu - serverBefore
				}
				r.SystemMsPerSaga = ms(cpu) / float64(one.CompletedInWindow)
				r.CPUToMinimalSaga = ratio(r.SystemMsPerSaga, r.MinimalSagaCPUms)
			}
			rep.Rounds = append(rep.Rounds, r)
		}
	}
	if child != nil {
		// The final memory is read after the drain: what the process holds
		// once the load is over.
		if ps, err := loadgen.ReadProcStat(child.pid); err == nil {
			system.mem = benchRSS{PeakRSSBytes: max(system.mem.PeakRSSBytes, ps.PeakRSS), FinalRSSBytes: ps.RSS}
		}
	}

	rep.Sagas = benchSagas{PerSec: res.Rate, Placed: res.Placed, Completed: res.Completed, Lost: res.Lost, Unexpected: res.Unexpected}
	rep.Latency = benchLatency{
		P50: usToMs(res.Latency.ValueAtQuantile(50)), P90: usToMs(res.Latency.ValueAtQuantile(90)),
		P99: usToMs(res.Latency.ValueAtQuantile(99)), Max: usToMs(res.Latency.Max()),
	}
	rep.Outcomes = res.Outcomes
	if n := res.CompletedInWindow; n > 0 {
		rep.CPU.GeneratorMsPerSaga = ms(genCPU) / float64(n)
		if system.ok {
			rep.CPU.Measured = true
			rep.CPU.SystemMsPerSaga = ms(system.cpu) / float64(n)
			if server.ok {
				rep.CPU.NATSServerMsPerSaga = ms(server.cpu) / float64(n)
				rep.CPU.SystemMsPerSaga += rep.CPU.NATSServerMsPerSaga
			}
		}
	}
	if system.ok {
		rep.Memory = &benchMemory{PeakRSSBytes: system.mem.PeakRSSBytes, FinalRSSBytes: system.mem.FinalRSSBytes}
		if server.ok {
			rep.Memory.NATSServer = &server.mem
		}
	}
	if l := rep.Limits; l != nil {
		// One round: the ratios of the run's figures. More: the medians
		// of the rounds' ratios, each of a window to the minimal saga just
		// before it, and the minimal saga's medians as its figures.
		l.MinimalSagaPerSec = median(minimal, func(m minimalRun) float64 { return m.PerSec })
		l.MinimalSagaCPUms = median(minimal, func(m minimalRun) float64 { return m.CPUms })
		l.MinimalSagaP99ms = median(minimal, func(m minimalRun) float64 { return m.P99ms })
		rep.Ratios["to_minimal_saga"] = median(rep.Rounds, func(r benchRound) float64 { return r.ToMinimalSaga })
		rep.Ratios["to_jetstream_publish"] = ratio(res.Rate, l.JetStreamPublishPerSec/publishesPerSaga)
		rep.Ratios["to_store_commit"] = ratio(res.Rate, l.StoreCommitPerSec/transactionsPerSaga)
		if rep.CPU.Measured && l.MinimalSagaCPUms > 0 {
			rep.Ratios["cpu_to_minimal_saga"] = median(rep.Rounds, func(r benchRound) float64 { return r.CPUToMinimalSaga })
		}
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printBench(stdout, rep)
	if res.Lost > 0 {
		return fmt.Errorf("%d sagas placed in the window did not end within 30s", res.Lost)
	}
	return nil
}

func loadShape(cfg benchConfig) string {
	if cfg.rate > 0 {
		return fmt.Sprintf("open loop at %g sagas/s", cfg.rate)
	}
	return fmt.Sprintf("%d in flight", cfg.inflight)
}

func describeTarget(s benchSetup) string {
	if s.Target != "embedded" {
		return "the system behind " + s.Target
	}
	return fmt.Sprintf("embedded choreo up (%s, %s profile, consumer batch %d)", s.Engine, s.Profile, s.ConsumerBatch)
}

func printBench(w io.Writer, r benchReport) {
	fmt.Fprintf(w, "result:\n")
	line := fmt.Sprintf("  sagas/s       %s", thousands(r.Sagas.PerSec))
	if v, ok := r.Ratios["to_minimal_saga"]; ok {
		line += fmt.Sprintf("  = %.2f of the minimal saga, %.2f of the publish limit, %.2f of the commit limit",
			v, r.Ratios["to_jetstream_publish"], r.Ratios["to_store_commit"])
	}
	fmt.Fprintln(w, line)
	fmt.Fprintf(w, "  latency       p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms (placed → final)\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	if r.CPU.Measured {
		line = fmt.Sprintf("  CPU per saga  %.2f ms", r.CPU.SystemMsPerSaga)
		if r.CPU.NATSServerMsPerSaga > 0 {
			line += fmt.Sprintf(" (%.2f ms of it the NATS server's)", r.CPU.NATSServerMsPerSaga)
		}
		if r.Limits != nil {
			line += fmt.Sprintf(" (minimal saga %.2f ms: %.1f×)", r.Limits.MinimalSagaCPUms, r.Ratios["cpu_to_minimal_saga"])
		}
		fmt.Fprintf(w, "%s; load generator %.2f ms\n", line, r.CPU.GeneratorMsPerSaga)
	} else {
		fmt.Fprintf(w, "  CPU per saga  not measured (pass --pid of the choreo process, or use --embedded); load generator %.2f ms\n", r.CPU.GeneratorMsPerSaga)
	}
	if r.Memory != nil {
		line = fmt.Sprintf("  memory        peak RSS %s, final RSS %s", mib(r.Memory.PeakRSSBytes), mib(r.Memory.FinalRSSBytes))
		if s := r.Memory.NATSServer; s != nil {
			line += fmt.Sprintf("; the NATS server: peak RSS %s, final RSS %s", mib(s.PeakRSSBytes), mib(s.FinalRSSBytes))
		}
		fmt.Fprintln(w, line)
	}
	var outcomes []string
	for k, v := range r.Outcomes {
		outcomes = append(outcomes, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(outcomes)
	fmt.Fprintf(w, "  sagas         %d placed, %d completed, %d lost, %d unexpected: %s\n",
		r.Sagas.Placed, r.Sagas.Completed, r.Sagas.Lost, r.Sagas.Unexpected, strings.Join(outcomes, ", "))
	if len(r.Rounds) > 1 {
		fmt.Fprintf(w, "rounds (the ratios above are their medians; the other figures cover every window):\n")
		for i, rd := range r.Rounds {
			line := fmt.Sprintf("  %d  minimal saga %s sagas/s, then %s sagas/s = %.2f", i+1, thousands(rd.MinimalSagaPerSec), thousands(rd.PerSec), rd.ToMinimalSaga)
			if rd.SystemMsPerSaga > 0 {
				line += fmt.Sprintf("; CPU per saga %.2f ms against %.2f ms: %.1f×", rd.SystemMsPerSaga, rd.MinimalSagaCPUms, rd.CPUToMinimalSaga)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

func usToMs(us int64) float64    { return float64(us) / 1000 }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) string         { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// thousands formats a rate with a thousands separator and no decimals.
func thousands(f float64) string {
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// processWatch follows a measured process over the windows: the CPU it
// used between each window's opening and closing, summed, and its memory.
type processWatch struct {
	pid        int
	ok         bool // there is a process, and it could be read every time
	start, cpu time.Duration
	mem        benchRSS
}

func watchProcess(pid int) processWatch { return processWatch{pid: pid, ok: pid != 0} }

// sample reads the process at the window's opening (open) or closing.
func (w *processWatch) sample(open bool) {
	if !w.ok {
		return
	}
	ps, err := loadgen.ReadProcStat(w.pid)
	if err != nil {
		w.ok = false
		return
	}
	w.mem = benchRSS{PeakRSSBytes: ps.PeakRSS, FinalRSSBytes: ps.RSS}
	if open {
		w.start = ps.CPU
	} else {
		w.cpu += ps.CPU - w.start
	}
}

// cpuOf is the CPU time the processes pids have used (0 counts for none,
// nor does one that cannot be read).
func cpuOf(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		if ps, err := loadgen.ReadProcStat(pid); err == nil {
			sum += ps.CPU
		}
	}
	return sum
}

// selfCPU is the CPU time bench itself has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ceilingStores opens the ceiling's stores where the run keeps its own:
// the SQLite files under dataDir, or fresh schemas of the PostgreSQL
// database dbURL.
func ceilingStores(cfg benchConfig, dataDir, dbURL string) ceiling.Opener {
	return func(ctx context.Context, name string) (*sqldb.DB, error) {
		if dbURL != "" {
			return openScratchSchema(ctx, dbURL, name)
		}
		return sqldb.Open(ctx, filepath.Join(dataDir, "ceiling", name+".db"), sqldb.WithDurable(cfg.durable))
	}
}

// measureLimits measures the machine's limits on the server and storage
// the run uses: the publish and commit rates, and a first run of the
// minimal saga.
func measureLimits(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, cfg benchConfig, open ceiling.Opener, pids ...int) (*benchLimits, minimalRun, error) {
	pub, err := ceiling.PublishRate(ctx, js, ceiling.PublishOptions{})
	if err != nil {
		return nil, minimalRun{}, err
	}
	commit, err := ceiling.CommitRate(ctx, open, ceiling.CommitOptions{})
	if err != nil {
		return nil, minimalRun{}, err
	}
	saga, err := measureMinimal(ctx, js, nc, cfg, open, pids...)
	if err != nil {
		return nil, minimalRun{}, err
	}
	lim := &benchLimits{
		JetStreamPublishPerSec: pub.PerSec,
		StoreCommitPerSec:      commit.PerSec,
		MinimalSagaPerSec:      saga.PerSec,
		MinimalSagaBatch:       saga.Batch,
		MinimalSagaCPUms:       saga.CPUms,
		MinimalSagaP99ms:       saga.P99ms,
	}
	return lim, saga, nil
}

// minimalRun is one run of the minimal saga.
type minimalRun struct {
	PerSec, CPUms, P99ms float64
	Batch                int
}

// measureMinimal runs the minimal saga once. Its CPU counts bench (where
// its four services run) and the measured processes: choreo's (where the
// NATS server runs when embedded) and the separate NATS server's, as the
// choreo figure counts them.
func measureMinimal(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, cfg benchConfig, open ceiling.Opener, pids ...int) (minimalRun, error) {
	before := selfCPU() + cpuOf(pids)
	saga, err := ceiling.MinimalSaga(ctx, js, nc, open, ceiling.SagaOptions{
		Duration: min(cfg.duration, 10*time.Second), Inflight: cfg.inflight, Batch: cfg.batch,
	})
	if err != nil {
		return minimalRun{}, err
	}
	cpu := selfCPU() + cpuOf(pids) - before
	m := minimalRun{PerSec: saga.PerSec, Batch: saga.Batch}
	if saga.Ops > 0 {
		m.CPUms = ms(cpu) / float64(saga.Ops)
	}
	if len(saga.Latency) > 0 {
		lat := append([]time.Duration(nil), saga.Latency...)
		slices.Sort(lat)
		m.P99ms = ms(lat[(len(lat)*99)/100])
	}
	return m, nil
}

// median is the median of f over xs (the mean of the middle two of an
// even number), 0 for none.
func median[T any](xs []T, f func(T) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = f(x)
	}
	slices.Sort(vs)
	mid := len(vs) / 2
	if len(vs)%2 == 0 {
		return (vs[mid-1] + vs[mid]) / 2
	}
	return vs[mid]
}

// mergeResults adds the load window b to the windows of a: counts add up,
// latencies join one histogram, and the rate is over all the windows.
func mergeResults(a, b loadgen.Result) loadgen.Result {
	if a.Latency == nil {
		return b
	}
	a.Placed += b.Placed
	a.Completed += b.Completed
	a.Lost += b.Lost
	a.Unexpected += b.Unexpected
	for k, v := range b.Outcomes {
		a.Outcomes[k] += v
	}
	a.Window += b.Window
	a.CompletedInWindow += b.CompletedInWindow
	if a.Window > 0 {
		a.Rate = float64(a.CompletedInWindow) / a.Window.Seconds()
	}
	a.Latency.Merge(b.Latency)
	return a
}

// benchChild is choreo up running as a child process for the run.
type benchChild struct {
	cmd     *exec.Cmd
	pid     int
	natsURL string
	dataDir string
	done    chan struct{}
}

// startBenchChild starts `choreo up` on a fresh data directory with an
// embedded NATS server on a random port, and returns once it printed its
// addresses.
func startBenchChild(ctx context.Context, cfg benchConfig, dataDir, dbURL string) (*benchChild, error) {
	bin := cfg.choreoBin
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the choreo binary: %w", err)
		}
	}
	systemDir := filepath.Join(dataDir, "system")
	args := []string{"up", "--data", systemDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--log-level", "warn"}
	if cfg.batch != defaultConsumerBatch {
		args = append(args, "--consumer-batch", strconv.Itoa(cfg.batch))
	}
	if dbURL != "" {
		args = append(args, "--db", dbURL)
	}
	if cfg.durable {
		args = append(args, "--durable")
	}
	cmd := exec.Command(bin, args...)
	// Only what choreo up needs — the caller's NATS_URL must not send the
	// child to another server — and what a measurement may vary: the
	// OpenTelemetry settings (tracing off vs on) and the Go runtime's.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "OTEL_") || slices.Contains([]string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"}, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	logFile, err := os.Create(filepath.Join(dataDir, "choreo-up.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s up: %w", bin, err)
	}
	c := &benchChild{cmd: cmd, pid: cmd.Process.Pid, dataDir: systemDir, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(60 * time.Second)
	for c.natsURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				c.stop()
				return nil, fmt.Errorf("choreo up exited before it was ready; see %s", filepath.Join(dataDir, "choreo-up.log"))
			}
			if m := upNATSLine.FindStringSubmatch(l); m != nil {
				c.natsURL = m[1]
			}
		case <-timeout:
			c.stop()
			return nil, errors.New("choreo up did not print its NATS address within a minute")
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		}
	}
	go func() {
		for range lines {
		}
	}()
	return c, nil
}

// stop interrupts the child as Ctrl-C would and waits for its clean stop.
func (c *benchChild) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// freshBenchDatabase creates a database of its own for the run on the
// server at base and returns its URL and a function that drops it.
func freshBenchDatabase(ctx context.Context, base string) (string, func(), error) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, fmt.Errorf("--db: %w", err)
	}
	name := fmt.Sprintf("choreo_bench_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("--db: create database %s on %s: %w", name, sqldb.Mask(base), err)
	}
	u, err := url.Parse(base)
	if err != nil {
		admin.Close()
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	}
	return u.String(), drop, nil
}

// openScratchSchema opens a schema of its own in the database at base, for
// the ceiling's scratch tables.
func openScratchSchema(ctx context.Context, base, name string) (*sqldb.DB, error) {
	admin, err := sqldb.Open(ctx, base)
	if err != nil {
		return nil, err
	}
	_, err = admin.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+name)
	admin.Close()
	if err != nil {
		return nil, fmt.Errorf("create schema %s: %w", name, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return sqldb.Open(ctx, u.String())
}

// upNATSLine finds the NATS URL in what choreo up prints.
var upNATSLine = regexp.MustCompile(`^\s+NATS\s+(nats://\S+)`)
