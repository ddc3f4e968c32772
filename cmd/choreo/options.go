package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/streams"
	"github.com/choreo-dev/choreo/notifications/sender"
)

// defaultConsumerBatch is the most messages a consumer applies in one
// transaction unless told otherwise: a commit costs far more than the
// statements before it, and a quiet consumer still applies each message at
// once, so batching costs no latency.
const defaultConsumerBatch = 64

// serviceFlags are the service settings both up and serve accept, each
// also read from the environment.
type serviceFlags struct {
	orderTimeout time.Duration
	providerURL  string
	smtpAddr     string
	smtpFrom     string
	durable      bool
	pprof        string
	batch        int
	streamFlags
	inboxKeep   time.Duration
	reorderWait time.Duration
	edge        edgeOptions
}

// streamFlags are the settings of choreo's streams: every service ensures
// them at start (creating a missing stream, never weakening one) and
// choreo streams plans and applies them.
type streamFlags struct {
	replicas  int
	retention catalog.Retention
	dupWindow time.Duration
}

// maxStreamReplicas is the most replicas JetStream gives a stream.
const maxStreamReplicas = 5

func addStreamFlags(e *envFlags, f *streamFlags) {
	def := catalog.DefaultRetention
	e.int(&f.replicas, "stream-replicas", "CHOREO_STREAM_REPLICAS", 1, "replicas of each stream: 1 for one server, 3 in a cluster")
	e.duration(&f.retention.Events.MaxAge, "stream-max-age", "CHOREO_STREAM_MAX_AGE", def.Events.MaxAge, "the event and command streams drop messages older than this (0: no age limit)")
	e.int64(&f.retention.Events.MaxMsgs, "stream-max-msgs", "CHOREO_STREAM_MAX_MSGS", def.Events.MaxMsgs, "each event and command stream keeps at most this many messages, the oldest dropped first (0: no limit); bounds the NATS server's memory")
	e.size(&f.retention.Events.MaxBytes, "stream-max-bytes", "CHOREO_STREAM_MAX_BYTES", def.Events.MaxBytes, "each event and command stream keeps at most this many bytes, e.g. 512MiB (0: no limit); a stream of under 32MiB stores its messages in 4MiB blocks instead of 8MiB, which the NATS server keeps in memory while it writes and trims them")
	e.duration(&f.retention.DLQ.MaxAge, "dlq-max-age", "CHOREO_DLQ_MAX_AGE", def.DLQ.MaxAge, "the dead-letter queue drops messages older than this (0: no age limit)")
	e.int64(&f.retention.DLQ.MaxMsgs, "dlq-max-msgs", "CHOREO_DLQ_MAX_MSGS", def.DLQ.MaxMsgs, "the dead-letter queue keeps at most this many messages (0: no limit)")
	e.duration(&f.dupWindow, "duplicate-window", "CHOREO_DUPLICATE_WINDOW", streams.DefaultDuplicateWindow, "how long the streams remember a message id to drop a copy published again")
}

func (f *streamFlags) validate() error {
	if f.replicas < 1 || f.replicas > maxStreamReplicas {
		return fmt.Errorf("%w: --stream-replicas %d: 1 to %d (1 for one server, 3 in a cluster)", errUsage, f.replicas, maxStreamReplicas)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--stream-max-age", f.retention.Events.MaxAge}, {"--dlq-max-age", f.retention.DLQ.MaxAge}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %s is negative", errUsage, d.name, d.v)
		}
	}
	if f.retention.Events.MaxMsgs < 0 || f.retention.DLQ.MaxMsgs < 0 || f.retention.Events.MaxBytes < 0 {
		return fmt.Errorf("%w: --stream-max-msgs and --dlq-max-msgs must be 0 (no limit) or more", errUsage)
	}
	if f.dupWindow < time.Second {
		return fmt.Errorf("%w: --duplicate-window %s: at least 1s", errUsage, f.dupWindow)
	}
	return nil
}

// declared returns the streams these settings declare and the options to
// ensure or plan them with.
func (f *streamFlags) declared() ([]streams.Spec, streams.Options) {
	return catalog.StreamSpecs(f.retention), streams.Options{Replicas: f.replicas, DuplicateWindow: f.dupWindow}
}

// envFlags defines flags whose defaults come from the environment, and
// remembers the first environment variable that does not parse.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	err    error
}

func (e *envFlags) duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	v := def
	if raw := e.getenv(env); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil && e.err == nil {
			e.err = fmt.Errorf("%w: %s: %v", errUsage, env, err)
		}
		v = d
	}
	e.fs.DurationVar(p, name, v, usage+" (env "+env+")")
}

func (e *envFlags) int(p *int, name, env string, def int, usage string) {
	v := def
	if raw := e.getenv(env); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil && e.err == nil {
			e.err = fmt.Errorf("%w: %s: %v", errUsage, env, err)
		}
		v = n
	}
	e.fs.IntVar(p, name, v, usage+" (env "+env+")")
}

func (e *envFlags) int64(p *int64, name, env string, def int64, usage string) {
	v := def
	if raw := e.getenv(env); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil && e.err == nil {
			e.err = fmt.Errorf("%w: %s: %v", errUsage, env, err)
		}
		v = n
	}
	e.fs.Int64Var(p, name, v, usage+" (env "+env+")")
}

// size is a byte count flag that also reads "32MiB", "1GiB", "500KB".
type size int64

// sizeUnits are the suffixes a size may carry, each a multiple of bytes:
// the binary ones first, largest first, as String prefers them; "B" last,
// since every other suffix ends with it.
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1000 * 1000 * 1000}, {"MB", 1000 * 1000}, {"KB", 1000},
	{"B", 1},
}

// String writes the size as -h shows its default: in the largest binary
// unit that divides it ("30MiB"), else in bytes.
func (s *size) String() string {
	n := int64(*s)
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%u.bytes == 0 {
			return strconv.FormatInt(n/u.bytes, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (s *size) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = size(n)
	return nil
}

// parseSize reads a byte count: a number, optionally followed by KB, MB,
// GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.bytes
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KB, MB, GB, KiB, MiB or GiB", v)
	}
	return n * mult, nil
}

func (e *envFlags) size(p *int64, name, env string, def int64, usage string) {
	v := size(def)
	if raw := e.getenv(env); raw != "" {
		if err := v.Set(raw); err != nil && e.err == nil {
			e.err = fmt.Errorf("%w: %s: %v", errUsage, env, err)
		}
	}
	*p = int64(v)
	e.fs.Var((*size)(p), name, usage+" (env "+env+")")
}

func addServiceFlags(fs *flag.FlagSet, getenv func(string) string, providerHelp string) (*serviceFlags, error) {
	f := &serviceFlags{}
	e := &envFlags{fs: fs, getenv: getenv}
	e.duration(&f.orderTimeout, "order-timeout", "CHOREO_ORDER_TIMEOUT", 2*time.Minute, "how long an order may stay pending before it is cancelled with reason timeout")
	addStreamFlags(e, &f.streamFlags)
	e.duration(&f.inboxKeep, "inbox-retention", "CHOREO_INBOX_RETENTION", 0, "how long a service remembers a message it handled, to skip it if it comes again (default: the DLQ's max age plus a day, so a dead letter retried late is still recognised)")
	e.duration(&f.reorderWait, "reorder-wait", "CHOREO_REORDER_WAIT", 5*time.Minute, "how long an event that came before one it follows (inventory.reserved before orders.placed, when a service is behind on a stream) is retried before it is dead-lettered")
	if err := addEdgeFlags(fs, getenv, e, &f.edge); err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, e.err
	}
	fs.StringVar(&f.providerURL, "provider-url", getenv("CHOREO_PROVIDER_URL"), providerHelp+" (env CHOREO_PROVIDER_URL)")
	fs.StringVar(&f.smtpAddr, "smtp-addr", getenv("CHOREO_SMTP_ADDR"), "send notifications by email through this SMTP server (host:port) instead of logging them (env CHOREO_SMTP_ADDR)")
	fs.StringVar(&f.smtpFrom, "smtp-from", envOr(getenv, "CHOREO_SMTP_FROM", "choreo@localhost"), "sender address of notification emails (env CHOREO_SMTP_FROM)")
	fs.BoolVar(&f.durable, "durable", envBool(getenv, "CHOREO_DURABLE"), "survive an OS crash or power loss too: SQLite synchronous=FULL, PostgreSQL synchronous_commit=on, and the embedded NATS server fsyncs every write (env CHOREO_DURABLE=1)")
	fs.StringVar(&f.pprof, "pprof", getenv("CHOREO_PPROF"), "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (env CHOREO_PPROF)")
	batch, err := strconv.Atoi(envOr(getenv, "CHOREO_CONSUMER_BATCH", strconv.Itoa(defaultConsumerBatch)))
	if err != nil {
		return nil, fmt.Errorf("%w: CHOREO_CONSUMER_BATCH: %v", errUsage, err)
	}
	fs.IntVar(&f.batch, "consumer-batch", batch, "most messages a consumer applies in one transaction; 1 turns batching off (env CHOREO_CONSUMER_BATCH)")
	return f, nil
}

func (f *serviceFlags) options() (serviceOptions, error) {
	if f.batch < 1 {
		return serviceOptions{}, fmt.Errorf("%w: --consumer-batch %d < 1", errUsage, f.batch)
	}
	if f.orderTimeout <= 0 {
		// 0 would mean no deadline, and an order whose saga stalls (a
		// provider down for good) would stay pending for ever.
		return serviceOptions{}, fmt.Errorf("%w: --order-timeout %s: must be more than 0, every order must end", errUsage, f.orderTimeout)
	}
	if err := f.streamFlags.validate(); err != nil {
		return serviceOptions{}, err
	}
	if f.inboxKeep < 0 {
		return serviceOptions{}, fmt.Errorf("%w: --inbox-retention %s is negative", errUsage, f.inboxKeep)
	}
	if f.reorderWait <= 0 {
		return serviceOptions{}, fmt.Errorf("%w: --reorder-wait %s: must be more than 0", errUsage, f.reorderWait)
	}
	if err := f.edge.validate(); err != nil {
		return serviceOptions{}, err
	}
	keep := f.inboxKeep
	if keep == 0 {
		keep = inboxRetentionFor(f.retention)
	}
	// The inbox must remember a message at least as long as the stream's
	// duplicate window does, or a copy the window lets through is applied
	// twice.
	if keep < f.dupWindow {
		return serviceOptions{}, fmt.Errorf("%w: --inbox-retention %s is shorter than --duplicate-window %s", errUsage, keep, f.dupWindow)
	}
	opts := serviceOptions{orderDeadline: f.orderTimeout, providerURL: f.providerURL, durable: f.durable, pprof: f.pprof, batch: f.batch,
		retention: f.retention, dupWindow: f.dupWindow, inboxRetention: keep, reorderWait: f.reorderWait, edge: f.edge}
	if f.smtpAddr != "" {
		opts.smtp = &sender.SMTPConfig{Addr: f.smtpAddr, From: f.smtpFrom}
	}
	return opts, nil
}

// inboxRetention is how long the inbox remembers a handled message by
// default: as long as a dead letter can wait to be retried (the DLQ's max
// age) and a day more — a retried dead letter is published again to every
// consumer of its subject, and the ones that handled it the first time
// must recognise it — and at least a week when the DLQ keeps messages for
// ever.
func inboxRetentionFor(r catalog.Retention) time.Duration {
	if r.DLQ.MaxAge == 0 {
		return 7 * 24 * time.Hour
	}
	return r.DLQ.MaxAge + 24*time.Hour
}

// envBool reads a boolean environment variable: "1", "true" or "yes"
// (any case) is true.
func envBool(getenv func(string) string, key string) bool {
	switch strings.ToLower(getenv(key)) {
	case "1", "true", "yes":
		return true
	}
	return false
}
