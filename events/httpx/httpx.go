// Package httpx holds the HTTP conventions every choreo service shares:
// JSON responses, strictly decoded and size-limited request bodies, and RFC
// 9457 problem details whose status follows the events error kinds.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/choreo-dev/choreo/events"
)

// Mux is where a service registers its HTTP routes: an *http.ServeMux, or
// a wrapper that instruments each route (traces, metrics) before handing
// it to one.
type Mux interface {
	Handle(pattern string, handler http.Handler)
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

var _ Mux = (*http.ServeMux)(nil)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 64 << 10

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// ProblemBase prefixes the type URI of every problem choreo answers; the
// README's "API errors" lists them. A client tells problems apart by type,
// not by title or detail.
const ProblemBase = "https://choreo.dev/problems/"

// problemTypes names the problem type of each status choreo answers with.
// A status not listed gets "about:blank", which RFC 9457 defines as "the
// status code says it all".
var problemTypes = map[int]string{
	http.StatusBadRequest:            "malformed-request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not-found",
	http.StatusMethodNotAllowed:      "method-not-allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "body-too-large",
	http.StatusUnsupportedMediaType:  "unsupported-media-type",
	http.StatusUnprocessableEntity:   "invalid-request",
	http.StatusTooManyRequests:       "rate-limited",
	http.StatusInternalServerError:   "internal-error",
	http.StatusServiceUnavailable:    "unavailable",
}

// ProblemType returns the type URI of the problems answered with status.
func ProblemType(status int) string {
	if t, ok := problemTypes[status]; ok {
		return ProblemBase + t
	}
	return "about:blank"
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteProblem writes an RFC 9457 problem whose type is ProblemType(status).
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	// A handler may have set these for the body it meant to write.
	h.Del("Content-Length")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{
		Type:     ProblemType(status),
		Title:    title,
		Status:   status,
		Detail:   detail,
		Instance: r.URL.EscapedPath(),
	})
}

// WriteError maps err's kind to a problem: permanent → 422, not found →
// 404, conflict → 409, unavailable → 503, anything else → 500 with a
// generic detail (the cause is logged, not shown). A database's refusal of
// the data itself (see isDataError) is a 422 too: the same request would
// fail again, so it must not be answered as one worth retrying.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if events.KindOf(err) == events.KindTransient && isDataError(err) {
		if log != nil {
			log.Warn("http: request refused by the database", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid request", "the request holds data the store cannot keep")
		return
	}
	switch events.KindOf(err) {
	case events.KindPermanent:
		WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid request", events.Detail(err))
	case events.KindNotFound:
		WriteProblem(w, r, http.StatusNotFound, "Not found", events.Detail(err))
	case events.KindConflict:
		WriteProblem(w, r, http.StatusConflict, "Conflict", events.Detail(err))
	case events.KindUnavailable:
		w.Header().Set("Retry-After", "1")
		WriteProblem(w, r, http.StatusServiceUnavailable, "Service unavailable", "a dependency is down; retry later")
	default:
		if log != nil {
			log.Error("http: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		WriteProblem(w, r, http.StatusInternalServerError, "Internal error", "the request could not be completed; it is safe to retry")
	}
}

// isDataError reports whether err is PostgreSQL refusing the data itself:
// SQLSTATE class 22 (data exception: a NUL byte, an invalid encoding, a
// value too long) or 23 (integrity constraint violation). It looks for the
// SQLState method of pgx's error rather than importing a driver.
func isDataError(err error) bool {
	var pg interface{ SQLState() string }
	if !errors.As(err, &pg) {
		return false
	}
	code := pg.SQLState()
	return strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23")
}

// DecodeJSON reads a JSON body of at most MaxBodyBytes into v, rejecting
// unknown fields and trailing content. On failure it has already written a
// 400 (malformed), 413 (too large) or 415 (not JSON) problem and returns
// false.
//
// The body must be labelled application/json (or
// application/cloudevents+json): an HTML form can only send
// application/x-www-form-urlencoded, multipart/form-data or text/plain
// without a CORS preflight, so insisting on JSON keeps any web page from
// placing or cancelling orders with a visitor's browser.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if !RequireJSON(w, r) {
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteProblem(w, r, http.StatusRequestEntityTooLarge, "Request body too large", fmt.Sprintf("at most %d bytes", MaxBodyBytes))
			return false
		}
		WriteProblem(w, r, http.StatusBadRequest, "Unreadable request body", err.Error())
		return false
	}
	if err := events.DecodeData(body, v); err != nil {
		WriteProblem(w, r, http.StatusBadRequest, "Malformed JSON", err.Error())
		return false
	}
	return true
}

// RequireJSON answers 415 and returns false unless the request's
// Content-Type is application/json or application/cloudevents+json. A
// route that takes no body calls it too when a body or a Content-Type
// comes anyway: a cross-site form always sends one.
func RequireJSON(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		WriteProblem(w, r, http.StatusUnsupportedMediaType, "Unsupported media type", "no Content-Type; send application/json")
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && mt != "application/cloudevents+json") {
		WriteProblem(w, r, http.StatusUnsupportedMediaType, "Unsupported media type", fmt.Sprintf("content type %q; send application/json", ct))
		return false
	}
	return true
}

// RequireNoBody is for a POST route that takes no body: a request without
// one (and without a Content-Type) passes; one with a body passes only as
// application/json, which it then ignores. Otherwise it answers 415 and
// returns false.
func RequireNoBody(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return true
	}
	return RequireJSON(w, r)
}
