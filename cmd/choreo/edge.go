package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events/httpauth"
)

// Default per-client rate limit of the HTTP APIs: far above what a person
// or a storefront's checkout sends, far below a flood.
const (
	defaultRateLimit = 100 // requests a second
	defaultRateBurst = 200
)

// edgeOptions configure what guards the HTTP APIs: authentication (off
// unless a key source is given) and the per-client rate limit.
type edgeOptions struct {
	keyFile  string
	jwksURL  string
	issuer   string
	audience string
	refresh  time.Duration
	rate     float64
	burst    int
}

func addEdgeFlags(fs *flag.FlagSet, getenv func(string) string, e *envFlags, o *edgeOptions) error {
	fs.StringVar(&o.keyFile, "auth-key-file", getenv("CHOREO_AUTH_KEY_FILE"), "require a bearer JWT on the HTTP APIs, signed by a key in this file of PEM public keys or JWKS (env CHOREO_AUTH_KEY_FILE); off by default")
	fs.StringVar(&o.jwksURL, "auth-jwks-url", getenv("CHOREO_AUTH_JWKS_URL"), "require a bearer JWT on the HTTP APIs, signed by a key the identity provider publishes at this JWKS URL (env CHOREO_AUTH_JWKS_URL); off by default")
	fs.StringVar(&o.issuer, "auth-issuer", getenv("CHOREO_AUTH_ISSUER"), "when set, a token's iss must be this (env CHOREO_AUTH_ISSUER)")
	fs.StringVar(&o.audience, "auth-audience", getenv("CHOREO_AUTH_AUDIENCE"), "when set, a token's aud must include this (env CHOREO_AUTH_AUDIENCE)")
	e.duration(&o.refresh, "auth-refresh", "CHOREO_AUTH_REFRESH", httpauth.DefaultRefresh, "how often the key file or JWKS is read again")
	rate := strconv.FormatFloat(defaultRateLimit, 'g', -1, 64)
	if raw := getenv("CHOREO_RATE_LIMIT"); raw != "" {
		rate = raw
	}
	r, err := strconv.ParseFloat(rate, 64)
	if err != nil {
		return fmt.Errorf("%w: CHOREO_RATE_LIMIT: %v", errUsage, err)
	}
	fs.Float64Var(&o.rate, "rate-limit", r, "requests a second each HTTP client may send, beyond a burst; a client is its token's subject, else its IP address; 0 turns the limit off (env CHOREO_RATE_LIMIT)")
	burst := strconv.Itoa(defaultRateBurst)
	if raw := getenv("CHOREO_RATE_BURST"); raw != "" {
		burst = raw
	}
	b, err := strconv.Atoi(burst)
	if err != nil {
		return fmt.Errorf("%w: CHOREO_RATE_BURST: %v", errUsage, err)
	}
	fs.IntVar(&o.burst, "rate-burst", b, "requests an HTTP client may send at once before --rate-limit applies (env CHOREO_RATE_BURST)")
	return nil
}

func (o edgeOptions) validate() error {
	if o.keyFile != "" && o.jwksURL != "" {
		return fmt.Errorf("%w: --auth-key-file and --auth-jwks-url: choose one", errUsage)
	}
	if o.keyFile == "" && o.jwksURL == "" && (o.issuer != "" || o.audience != "") {
		return fmt.Errorf("%w: --auth-issuer and --auth-audience need --auth-key-file or --auth-jwks-url", errUsage)
	}
	if o.rate < 0 || o.burst < 1 {
		return fmt.Errorf("%w: --rate-limit %g must be 0 (off) or more and --rate-burst %d at least 1", errUsage, o.rate, o.burst)
	}
	return nil
}

// build returns the verifier (nil: authentication off) and the limiter
// (nil: no limit) of the HTTP APIs.
func (o edgeOptions) build(ctx context.Context, log *slog.Logger) (*httpauth.Verifier, *httpauth.Limiter, error) {
	limit := httpauth.NewLimiter(o.rate, o.burst)
	if o.keyFile == "" && o.jwksURL == "" {
		return nil, limit, nil
	}
	v, err := httpauth.New(ctx, httpauth.Config{KeyFile: o.keyFile, JWKSURL: o.jwksURL, Issuer: o.issuer, Audience: o.audience, Refresh: o.refresh, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	log.Info("http: bearer tokens required", "keys", v.Source(), "issuer", o.issuer, "audience", o.audience)
	return v, limit, nil
}

// scopeOf is the scope a route requires: "<service>:read" to read,
// "<service>:write" for anything else ("POST /orders" → orders:write).
func scopeOf(service, pattern string) string {
	method, _, _ := strings.Cut(pattern, " ")
	switch method {
	case http.MethodGet, http.MethodHead:
		return service + ":read"
	}
	return service + ":write"
}
