// Package idempotency gives HTTP routes the Idempotency-Key header of the
// IETF draft (draft-ietf-httpapi-idempotency-key-header): the first
// response to a request under a key is stored, and a retry with the same
// key and the same request gets that response again — the same status,
// header and body, byte for byte — whatever happened to the resource since.
// A retry while the first request is still being answered gets 409; the
// key used for another request gets 422.
//
// The responses live in the service's own database (one table, see
// Migrate), so that every replica of a service replays the same answer.
// The operation behind a route must be idempotent by itself as well (an
// order id derived from the key, an inbox claim): the stored response is
// written after the operation commits, so a crash in between leaves a
// claim with no response, which another request takes over once its lease
// runs out (see WithLease) and runs the operation again.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/httpauth"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/sqldb"
)

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

//go:embed migrations
var migrations embed.FS

// Migrate creates the table of responses in db if it does not exist yet.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	return sqldb.Migrate(ctx, db, "idempotency", sub)
}

// KeyOf reads the Idempotency-Key header of r as the draft defines it, a
// structured-field string ("K"); a bare K, as many clients send it, is the
// same key. keyed is false when there is no header. An empty, repeated or
// malformed key, or one valid refuses (valid gets the header's name and
// the key; nil accepts any), is a Permanent error.
func KeyOf(r *http.Request, valid func(name, key string) error) (key string, keyed bool, err error) {
	raw, keyed := r.Header[Header]
	if !keyed {
		return "", false, nil
	}
	if len(raw) != 1 {
		return "", false, events.Permanent(errors.New(Header + " is given more than once"))
	}
	key, err = sfString(strings.TrimSpace(raw[0]))
	if err != nil {
		return "", false, events.Permanent(fmt.Errorf("%s: %w", Header, err))
	}
	if key == "" {
		return "", false, events.Permanent(errors.New(Header + " is empty"))
	}
	if valid != nil {
		if err := valid(Header, key); err != nil {
			return "", false, err
		}
	}
	return key, true, nil
}

// sfString decodes an RFC 8941 string ("…" with \" and \\ escapes,
// printable ASCII); a value without quotes is taken as it is.
func sfString(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return v, nil
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) {
		return "", errors.New("a quoted key must end with a quote")
	}
	var b strings.Builder
	inner := v[1 : len(v)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\':
			i++
			if i == len(inner) || (inner[i] != '"' && inner[i] != '\\') {
				return "", errors.New(`only \" and \\ may be escaped`)
			}
			b.WriteByte(inner[i])
		case c == '"':
			return "", errors.New("an unescaped quote inside the key")
		case c < 0x20 || c > 0x7e:
			return "", errors.New("a quoted key holds printable ASCII only")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Defaults of a Store.
const (
	// DefaultLease is how long a request holds its key before another may
	// take it over: far longer than any request is served (the HTTP
	// server's write timeout ends it sooner), so only a request whose
	// process died loses its key.
	DefaultLease = 2 * time.Minute
	// DefaultRetention is how long a response is replayed; the draft
	// leaves the expiry to the server, and a client retrying a day later
	// is no longer retrying.
	DefaultRetention = 24 * time.Hour
)

// Store keeps the first response to each key. It is safe for concurrent
// use, by any number of replicas sharing the database.
type Store struct {
	db        *sqldb.DB
	log       *slog.Logger
	now       func() time.Time
	lease     time.Duration
	retention time.Duration
	// lastPurge is when expired responses were last deleted, in Unix ms.
	lastPurge atomic.Int64
}

// Option configures a Store.
type Option func(*Store)

// WithLease sets how long a request holds its key (default DefaultLease).
func WithLease(d time.Duration) Option { return func(s *Store) { s.lease = d } }

// WithRetention sets how long a response is replayed (default
// DefaultRetention).
func WithRetention(d time.Duration) Option { return func(s *Store) { s.retention = d } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLogger sets the logger of failures to store a response (default:
// discard).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New returns the Store of a database Migrate has prepared.
func New(db *sqldb.DB, opts ...Option) *Store {
	s := &Store{db: db, log: slog.New(slog.DiscardHandler), now: time.Now, lease: DefaultLease, retention: DefaultRetention}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Request identifies a request under a key.
type Request struct {
	// Key is the Idempotency-Key (see KeyOf).
	Key string
	// Fingerprint is what makes two requests the same request: the
	// request as the route decoded it (so that a body that differs only in
	// spacing or field order is the same request), its path parameters
	// included.
	Fingerprint []byte
}

// Serve answers r, which carries req.Key, on w:
//   - the first request under the key runs handle; its response is
//     stored unless it is a 5xx (a failure worth retrying, which a retry
//     then runs again), and written to w;
//   - a retry with the same fingerprint gets the stored response;
//   - a retry while the first request is still running gets 409;
//   - a request with another fingerprint gets 422 and runs nothing.
//
// A key belongs to the route (r.Pattern) and, with authentication on, to
// the client (the token's subject): the same key on another route or from
// another client is another key. When the store fails, the request is
// answered 503 and nothing runs.
func (s *Store) Serve(w http.ResponseWriter, r *http.Request, req Request, handle func(http.ResponseWriter)) {
	ctx := r.Context()
	keyHash := hashOf(r.Pattern, httpauth.SubjectOf(ctx), req.Key)
	fingerprint := hashOf(string(req.Fingerprint))
	claim, stored, err := s.begin(ctx, keyHash, fingerprint)
	switch {
	case err != nil:
		httpx.WriteError(w, r, s.log, events.Unavailable(fmt.Errorf("idempotency: %w", err)))
	case stored == nil:
		rec := &recorder{header: http.Header{}}
		s.run(ctx, keyHash, claim, rec, handle)
		s.finish(ctx, keyHash, claim, rec)
		rec.replay(w)
	case stored.fingerprint != fingerprint:
		first := ""
		if loc := stored.header.Get("Location"); loc != "" {
			first = ", answered with Location " + loc
		}
		httpx.WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid request",
			fmt.Sprintf("%s was used for a request with another body at %s%s; send a new key for a new request", Header, time.UnixMilli(stored.started).UTC().Format(time.RFC3339), first))
	case stored.status == 0:
		w.Header().Set("Retry-After", "1")
		httpx.WriteProblem(w, r, http.StatusConflict, "Request in progress",
			"a request with this "+Header+" is still being answered; retry later to get its response")
	default:
		stored.replay(w)
	}
}

// recorder keeps what a handler writes, to store it before it is sent.
type recorder struct {
	status      int
	header      http.Header
	body        bytes.Buffer
	fingerprint string
	started     int64
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (r *recorder) replay(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body.Bytes())
}

// hashOf hashes parts, each length-prefixed so that no two lists of parts
// hash the same bytes.
func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// errContended means the key's row changed under us too often.
var errContended = errors.New("key contended")

// begin claims keyHash for a request (stored nil, and claim the start
// time that identifies this claim), or returns the row another request
// left under it. An expired response, or a claim held past its lease, is
// taken over: its row is reset to this request, unless another request
// took it over first.
func (s *Store) begin(ctx context.Context, keyHash, fingerprint string) (claim int64, stored *recorder, err error) {
	now := s.now().UnixMilli()
	s.purge(ctx, now)
	for range 3 {
		res, err := s.db.In(nil).Exec(ctx, `INSERT INTO idempotent_responses (key_hash, fingerprint, started_unix_ms)
			VALUES (?, ?, ?) ON CONFLICT (key_hash) DO NOTHING`, keyHash, fingerprint, now)
		if err != nil {
			return 0, nil, fmt.Errorf("claim key: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return now, nil, err
		}
		row, err := s.load(ctx, keyHash)
		if errors.Is(err, sql.ErrNoRows) {
			continue // purged since: claim it again
		}
		if err != nil {
			return 0, nil, err
		}
		expired := row.started <= now-s.retention.Milliseconds()
		// A claim held past its lease is taken over by a retry of the same
		// request only: another request under the key is refused (422)
		// as it would be while the first one lived.
		abandoned := row.status == 0 && row.started <= now-s.lease.Milliseconds() && row.fingerprint == fingerprint
		if !expired && !abandoned {
			return 0, row, nil
		}
		res, err = s.db.In(nil).Exec(ctx, `UPDATE idempotent_responses SET fingerprint = ?, started_unix_ms = ?,
			status = 0, header = '', body = NULL WHERE key_hash = ? AND started_unix_ms = ?`, fingerprint, now, keyHash, row.started)
		if err != nil {
			return 0, nil, fmt.Errorf("take over key: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return now, nil, err
		}
	}
	return 0, nil, errContended
}

func (s *Store) load(ctx context.Context, keyHash string) (*recorder, error) {
	var (
		row    = &recorder{header: http.Header{}}
		header string
		body   []byte
	)
	err := s.db.In(nil).QueryRow(ctx, `SELECT fingerprint, started_unix_ms, status, header, body
		FROM idempotent_responses WHERE key_hash = ?`, keyHash).Scan(&row.fingerprint, &row.started, &row.status, &header, &body)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if row.status != 0 {
		if err := json.Unmarshal([]byte(header), &row.header); err != nil {
			return nil, fmt.Errorf("read key: corrupt header: %w", err)
		}
		row.body.Write(body)
	}
	return row, nil
}

// ServeCommand is Serve with cmd, the command as the handler decoded it,
// for the request's fingerprint: a body that differs only in spacing or
// field order is the same request.
func (s *Store) ServeCommand(w http.ResponseWriter, r *http.Request, key string, cmd any, handle func(http.ResponseWriter)) {
	fingerprint, err := json.Marshal(cmd)
	if err != nil {
		httpx.WriteError(w, r, s.log, fmt.Errorf("idempotency: fingerprint of the command: %w", err))
		return
	}
	s.Serve(w, r, Request{Key: key, Fingerprint: fingerprint}, handle)
}

// run calls handle. A handler that panics (net/http recovers the panic
// and answers nothing) must not leave the key claimed until its lease runs
// out, every retry a 409: the claim is released as for a 5xx before the
// panic goes on, and a retry runs the request again.
func (s *Store) run(ctx context.Context, keyHash string, claim int64, rec *recorder, handle func(http.ResponseWriter)) {
	defer func() {
		if p := recover(); p != nil {
			s.finish(ctx, keyHash, claim, &recorder{status: http.StatusInternalServerError, header: http.Header{}})
			panic(p)
		}
	}()
	handle(rec)
}

// finish stores rec as the response to the claim made at claim, or
// releases the key when rec is a 5xx. A claim taken over meanwhile (this
// request outlived its lease) is left to the request that took it. A
// failure is logged only: the response is sent all the same, and the key
// stays claimed until its lease runs out and a retry runs the request
// again.
func (s *Store) finish(ctx context.Context, keyHash string, claim int64, rec *recorder) {
	if rec.status == 0 {
		rec.status = http.StatusOK // a handler that wrote nothing
	}
	ctx = context.WithoutCancel(ctx) // the client leaving must not lose the response
	var err error
	if rec.status >= 500 {
		_, err = s.db.In(nil).Exec(ctx, `DELETE FROM idempotent_responses WHERE key_hash = ? AND started_unix_ms = ? AND status = 0`, keyHash, claim)
	} else {
		var header []byte
		if header, err = json.Marshal(rec.header); err == nil {
			_, err = s.db.In(nil).Exec(ctx, `UPDATE idempotent_responses SET status = ?, header = ?, body = ?
				WHERE key_hash = ? AND started_unix_ms = ? AND status = 0`, rec.status, string(header), rec.body.Bytes(), keyHash, claim)
		}
	}
	if err != nil {
		s.log.Error("idempotency: the response could not be stored; a retry runs the request again once the key's lease ends", "status", rec.status, "err", err)
	}
}

// purge deletes expired responses, at most once a minute per Store: the
// table holds a day of keys, and a client's retry finds its row by key
// whatever the purge did (an expired row is taken over, not replayed).
func (s *Store) purge(ctx context.Context, now int64) {
	last := s.lastPurge.Load()
	if now-last < time.Minute.Milliseconds() || !s.lastPurge.CompareAndSwap(last, now) {
		return
	}
	if _, err := s.db.In(nil).Exec(ctx, `DELETE FROM idempotent_responses WHERE started_unix_ms <= ?`, now-s.retention.Milliseconds()); err != nil {
		s.log.Warn("idempotency: expired responses could not be deleted; next time", "err", err)
	}
}
