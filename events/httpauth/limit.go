package httpauth

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/choreo-dev/choreo/events/httpx"
)

// Limiter limits each client to a steady rate of requests with bursts: a
// token bucket (golang.org/x/time/rate) per client. A client is the
// subject of its verified token when the route requires one, else its
// remote IP address. Forwarded-For headers are not believed: anyone can
// write one. Behind a proxy every anonymous client shares the proxy's
// address, which is why authentication should be on there.
type Limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	swept   int
}

// NewLimiter returns a Limiter allowing perSecond requests a second to
// each client, with bursts of burst. A perSecond of 0 or less returns nil,
// which limits nothing.
func NewLimiter(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, now: time.Now, clients: map[string]*rate.Limiter{}}
}

// sweepAt is the number of clients past which the limiter forgets the
// idle ones (see sweep).
const sweepAt = 1024

// bucket returns client's bucket.
func (l *Limiter) bucket(client string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= max(sweepAt, 2*l.swept) {
			l.sweep(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.clients[client] = b
	}
	return b
}

// sweep drops the buckets that are full again: a client that comes back
// gets a full bucket, which is what it would have found. Memory thus
// follows the clients active within burst/limit seconds, not every
// address ever seen.
func (l *Limiter) sweep(now time.Time) {
	for c, b := range l.clients {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, c)
		}
	}
	l.swept = len(l.clients)
}

// Allow takes a token from client's bucket, or says how long until one
// is there.
func (l *Limiter) Allow(client string) (bool, time.Duration) {
	now := l.now()
	r := l.bucket(client, now).ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		// Refused requests take no token: a client that keeps hammering
		// is refused for as long as it keeps going over the rate, not
		// for ever.
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Wrap returns next behind the client's rate limit: over it, the request
// is answered 429 with Retry-After (whole seconds, at least 1). A nil
// Limiter limits nothing. Put it inside Verifier.Require so that it sees
// the token's subject.
func (l *Limiter) Wrap(next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := l.Allow(ClientOf(r))
		if !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			httpx.WriteProblem(w, r, http.StatusTooManyRequests, "Too many requests", "this client is over its rate limit; retry after the number of seconds in Retry-After")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ClientOf names the client of r for rate limiting: "sub:" and its
// token's subject, else "ip:" and its remote address.
func ClientOf(r *http.Request) string {
	if sub := SubjectOf(r.Context()); sub != "" {
		return "sub:" + sub
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}
