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
	"net/http"

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

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteProblem writes an RFC 9457 problem.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{
		Type:     "about:blank",
		Title:    title,
		Status:   status,
		Detail:   detail,
		Instance: r.URL.Path,
	})
}

// WriteError maps err's kind to a problem: permanent → 422, not found →
// 404, conflict → 409, anything else → 500 with a generic detail (the
// cause is logged, not shown).
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	switch events.KindOf(err) {
	case events.KindPermanent:
		WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid request", events.Detail(err))
	case events.KindNotFound:
		WriteProblem(w, r, http.StatusNotFound, "Not found", events.Detail(err))
	case events.KindConflict:
		WriteProblem(w, r, http.StatusConflict, "Conflict", events.Detail(err))
	default:
		if log != nil {
			log.Error("http: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		WriteProblem(w, r, http.StatusInternalServerError, "Internal error", "the request could not be completed; it is safe to retry")
	}
}

// DecodeJSON reads a JSON body of at most MaxBodyBytes into v, rejecting
// unknown fields and trailing content. On failure it has already written a
// 400 (malformed), 413 (too large) or 415 (not JSON) problem and returns
// false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		WriteProblem(w, r, http.StatusUnsupportedMediaType, "Unsupported media type", fmt.Sprintf("content type %q; send application/json", ct))
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

func isJSON(ct string) bool {
	for i := 0; i < len(ct); i++ {
		if ct[i] == ';' {
			ct = ct[:i]
			break
		}
	}
	// curl -d sends application/x-www-form-urlencoded unless told
	// otherwise; a JSON body under that label is what its user meant.
	return ct == "application/json" || ct == "application/cloudevents+json" || ct == "application/x-www-form-urlencoded"
}
