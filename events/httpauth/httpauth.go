// Package httpauth verifies the bearer JWTs of HTTP requests and limits
// each client's request rate.
//
// A Verifier trusts the public keys of a file (PEM or a JWKS document) or
// of a JWKS URL, both read again every Config.Refresh (and a JWKS URL also
// when a token names a key id it does not know yet, at most every
// minRefetch), so keys can be rotated without a restart. Only asymmetric
// algorithms are accepted (RS*, PS*, ES*, EdDSA): a verifier holds no
// secret that could sign a token, and an HMAC token "signed" with a public
// key is refused. Every token must expire.
//
// Scopes are OAuth 2.0 style: the space-separated "scope" claim (RFC 8693)
// or the "scp" claim (a string or an array). Require answers 401 with an
// RFC 9457 problem and a WWW-Authenticate header when the token is
// missing, malformed, expired or not signed by a trusted key, and 403
// when it lacks the route's scope.
package httpauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/choreo-dev/choreo/events/httpx"
)

// ErrInvalidConfig is wrapped by the errors New returns for a bad Config.
var ErrInvalidConfig = errors.New("httpauth: invalid config")

// DefaultRefresh is how often keys are read again unless told otherwise.
const DefaultRefresh = 5 * time.Minute

// minRefetch bounds how often an unknown key id makes the verifier fetch
// a JWKS URL again: a flood of tokens with made-up key ids must not turn
// into a flood of requests to the identity provider.
const minRefetch = 30 * time.Second

// Config says which keys to trust and what a token must say.
type Config struct {
	// KeyFile is a file of PEM public keys or certificates, or a JWKS
	// JSON document. Exactly one of KeyFile and JWKSURL is set.
	KeyFile string
	// JWKSURL is where the identity provider publishes its JWKS.
	JWKSURL string
	// Refresh is how often the keys are read again (default
	// DefaultRefresh).
	Refresh time.Duration
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// Client fetches JWKSURL (default: a client with a 10 s timeout).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a Config New cannot work with.
func (c Config) Validate() error {
	if (c.KeyFile == "") == (c.JWKSURL == "") {
		return fmt.Errorf("%w: set exactly one of a key file and a JWKS URL", ErrInvalidConfig)
	}
	if c.Refresh < 0 {
		return fmt.Errorf("%w: refresh %s is negative", ErrInvalidConfig, c.Refresh)
	}
	return nil
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser

	// mu guards keys, fetched and lastMiss; refreshing serialises the reloads, so
	// that requests keep verifying with the old keys while one request
	// reloads them.
	mu         sync.RWMutex
	keys       keySet
	fetched    time.Time
	lastMiss   time.Time // the last fetch for an unknown key id
	refreshing sync.Mutex
}

// New loads the keys once, so that a wrong file or URL is reported at
// start, and returns a Verifier.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithLeeway(30 * time.Second),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{cfg: cfg, parser: jwt.NewParser(opts...)}
	keys, err := v.load(ctx)
	if err != nil {
		return nil, err
	}
	v.keys, v.fetched = keys, cfg.Now()
	return v, nil
}

// Source says where the keys come from, for a start-up log line.
func (v *Verifier) Source() string {
	if v.cfg.KeyFile != "" {
		return "file " + v.cfg.KeyFile
	}
	return "JWKS " + v.cfg.JWKSURL
}

func (v *Verifier) load(ctx context.Context) (keySet, error) {
	if v.cfg.KeyFile != "" {
		return loadKeyFile(v.cfg.KeyFile)
	}
	return fetchJWKS(ctx, v.cfg.Client, v.cfg.JWKSURL)
}

// refresh reloads the keys if they are older than maxAge. A failed reload
// keeps the old keys (the identity provider being down for a moment must
// not lock every client out) and is logged.
func (v *Verifier) refresh(ctx context.Context, maxAge time.Duration) {
	v.mu.RLock()
	fresh := v.cfg.Now().Sub(v.fetched) < maxAge
	v.mu.RUnlock()
	if fresh || !v.refreshing.TryLock() {
		return
	}
	defer v.refreshing.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	keys, err := v.load(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.fetched = v.cfg.Now()
	if err != nil {
		// Retry a failed reload after minRefetch rather than a whole
		// Refresh later.
		if v.cfg.Refresh > minRefetch {
			v.fetched = v.fetched.Add(minRefetch - v.cfg.Refresh)
		}
		v.cfg.Logger.Warn("httpauth: reloading keys failed; keeping the ones loaded before", "source", v.Source(), "err", err)
		return
	}
	v.keys = keys
}

// Claims are what a verified token says about its bearer.
type Claims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope,omitempty"`
	// Scp is the scopes as some providers write them: a string or an
	// array of strings.
	Scp any `json:"scp,omitempty"`
}

// Scopes returns the token's scopes.
func (c Claims) Scopes() []string {
	out := strings.Fields(c.Scope)
	switch s := c.Scp.(type) {
	case string:
		out = append(out, strings.Fields(s)...)
	case []any:
		for _, e := range s {
			if str, ok := e.(string); ok {
				out = append(out, str)
			}
		}
	}
	return out
}

// Verify checks a compact JWT and returns its claims.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	v.refresh(ctx, v.cfg.Refresh)
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		keys := v.keysFor(kid)
		if len(keys) == 0 && kid != "" && v.cfg.JWKSURL != "" && v.mayRefetch() {
			// A key id never seen: the provider may have rotated.
			v.refresh(ctx, 0)
			keys = v.keysFor(kid)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("no trusted key with id %q", kid)
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	})
	if err != nil {
		return nil, err
	}
	return &claims, nil
}

// mayRefetch reports whether an unknown key id may fetch the JWKS now: at
// most once every minRefetch.
func (v *Verifier) mayRefetch() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	if !v.lastMiss.IsZero() && now.Sub(v.lastMiss) < minRefetch {
		return false
	}
	v.lastMiss = now
	return true
}

func (v *Verifier) keysFor(kid string) []jwt.VerificationKey {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.keys.lookup(kid)
}

type ctxKey struct{}

// SubjectOf returns the subject of the verified token of the request
// whose context ctx is, or "" when it carried none.
func SubjectOf(ctx context.Context) string {
	c, _ := ctx.Value(ctxKey{}).(*Claims)
	if c == nil {
		return ""
	}
	return c.Subject
}

// Require returns next behind a check of the request's bearer token: it
// must verify and carry scope. A nil Verifier checks nothing, which is
// how authentication is turned off.
func (v *Verifier) Require(scope string, next http.Handler) http.Handler {
	if v == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer scope="`+scope+`"`)
			httpx.WriteProblem(w, r, http.StatusUnauthorized, "Unauthorized", "send a bearer token: Authorization: Bearer <JWT>")
			return
		}
		claims, err := v.Verify(r.Context(), raw)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			httpx.WriteProblem(w, r, http.StatusUnauthorized, "Unauthorized", "the bearer token is not valid: "+err.Error())
			return
		}
		if !slices.Contains(claims.Scopes(), scope) {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+scope+`"`)
			httpx.WriteProblem(w, r, http.StatusForbidden, "Forbidden", "the token lacks scope "+scope)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, claims)))
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
