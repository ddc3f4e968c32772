package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

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
}

func addServiceFlags(fs *flag.FlagSet, getenv func(string) string, providerHelp string) (*serviceFlags, error) {
	f := &serviceFlags{}
	timeout, err := time.ParseDuration(envOr(getenv, "CHOREO_ORDER_TIMEOUT", "2m"))
	if err != nil {
		return nil, fmt.Errorf("%w: CHOREO_ORDER_TIMEOUT: %v", errUsage, err)
	}
	fs.DurationVar(&f.orderTimeout, "order-timeout", timeout, "how long an order may stay pending before it is cancelled with reason timeout (env CHOREO_ORDER_TIMEOUT)")
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
	if f.orderTimeout < 0 {
		return serviceOptions{}, fmt.Errorf("%w: --order-timeout %s is negative", errUsage, f.orderTimeout)
	}
	opts := serviceOptions{orderDeadline: f.orderTimeout, providerURL: f.providerURL, durable: f.durable, pprof: f.pprof, batch: f.batch}
	if f.smtpAddr != "" {
		opts.smtp = &sender.SMTPConfig{Addr: f.smtpAddr, From: f.smtpFrom}
	}
	return opts, nil
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
