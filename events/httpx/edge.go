package httpx

import (
	"bytes"
	"net/http"
	"strings"
)

// Edge wraps a service's mux with what every request meets before a
// route: an unknown route (404) or a method the route does not take (405,
// with the Allow header) is answered as an RFC 9457 problem rather than
// the mux's plain text; a body labelled anything but JSON is refused with
// 415 whatever the route (the three content types an HTML form can send
// cross-site without a preflight are among them); and any other unsafe
// request a browser marks as cross-origin (Sec-Fetch-Site, Origin) — a
// bodiless fetch, say — is refused with 403. So no web page can make its
// visitor's browser place or cancel orders.
func Edge(mux *http.ServeMux) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, http.StatusForbidden, "Cross-origin request refused", "this API does not take unsafe requests from other origins")
	}))
	routes := cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route matched: the mux answers 404, 405 or a redirect to
		// the cleaned path. Keep a redirect as it is; turn the errors
		// into problems.
		rec := &statusRecorder{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusNotFound:
			WriteProblem(w, r, http.StatusNotFound, "Not found", "no route "+r.Method+" "+r.URL.EscapedPath())
		case http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			WriteProblem(w, r, http.StatusMethodNotAllowed, "Method not allowed", r.Method+" is not allowed here; allowed: "+strings.ReplaceAll(allow, ",", ", "))
		default:
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body.Bytes())
		}
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unsafeMethod(r.Method) && r.Header.Get("Content-Type") != "" && !RequireJSON(w, r) {
			return
		}
		routes.ServeHTTP(w, r)
	})
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// statusRecorder keeps what the mux answers when no route matched: a
// status, a few headers and a short body.
type statusRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *statusRecorder) Header() http.Header { return r.header }

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
