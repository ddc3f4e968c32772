package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/choreo-dev/choreo/notifications/sender"
)

// serviceFlags are the service settings both up and serve accept, each
// also read from the environment.
type serviceFlags struct {
	orderTimeout time.Duration
	providerURL  string
	smtpAddr     string
	smtpFrom     string
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
	return f, nil
}

func (f *serviceFlags) options() (serviceOptions, error) {
	if f.orderTimeout < 0 {
		return serviceOptions{}, fmt.Errorf("%w: --order-timeout %s is negative", errUsage, f.orderTimeout)
	}
	opts := serviceOptions{orderDeadline: f.orderTimeout, providerURL: f.providerURL}
	if f.smtpAddr != "" {
		opts.smtp = &sender.SMTPConfig{Addr: f.smtpAddr, From: f.smtpFrom}
	}
	return opts, nil
}
