// Package openapitest checks HTTP traffic against the OpenAPI description
// the server itself serves at /openapi.json: a test's client sends its
// requests through a Transport, and every exchange with a watched server
// is validated (github.com/pb33f/libopenapi-validator, which implements
// OpenAPI 3.1 and JSON Schema 2020-12).
//
// The rules, for an exchange with a watched server:
//   - a request the description accepts must get a response the
//     description lists for it (status, headers, body);
//   - a request it refuses (a test sending a wrong body on purpose) must be
//     refused by the server too: a 4xx problem, which must be one the
//     operation lists;
//   - a request no operation describes must be answered 404 or 405 with a
//     problem: a route the server serves but the description lacks fails.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
)

// Reporter receives the mismatches: a *testing.T.
type Reporter interface {
	Errorf(format string, args ...any)
}

// Options say how a watched server runs.
type Options struct {
	// Auth is whether the server requires bearer tokens; when it does
	// not, the description's security requirements are not checked.
	Auth bool
}

// Transport is an http.RoundTripper that validates every exchange with a
// watched server and passes every other request through untouched.
type Transport struct {
	// Next sends the requests (nil: http.DefaultTransport).
	Next http.RoundTripper

	servers sync.Map // host:port → *server
}

type server struct {
	base     string
	reporter Reporter
	opts     Options
	checked  atomic.Int64

	once      sync.Once
	validator validator.Validator
	err       error
}

// Watch validates the exchanges with the server at base ("http://host:port")
// against the description it serves, reporting each mismatch to r, until
// stop is called. Call stop before r's test ends (t.Cleanup).
func (t *Transport) Watch(base string, r Reporter, opts Options) (stop func()) {
	u, err := url.Parse(base)
	if err != nil {
		r.Errorf("openapitest: %v", err)
		return func() {}
	}
	t.servers.Store(u.Host, &server{base: strings.TrimSuffix(base, "/"), reporter: r, opts: opts})
	return func() { t.servers.Delete(u.Host) }
}

// Checked returns how many exchanges with the server at base were
// validated so far.
func (t *Transport) Checked(base string) int64 {
	u, err := url.Parse(base)
	if err != nil {
		return 0
	}
	s, ok := t.servers.Load(u.Host)
	if !ok {
		return 0
	}
	return s.(*server).checked.Load()
}

func (t *Transport) next() http.RoundTripper {
	if t.Next != nil {
		return t.Next
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	v, ok := t.servers.Load(req.URL.Host)
	if !ok || req.URL.Path == "/openapi.json" {
		return t.next().RoundTrip(req)
	}
	s := v.(*server)
	val, err := s.load(t.next())
	if err != nil {
		s.reporter.Errorf("openapitest: %s: %v", s.base, err)
		return t.next().RoundTrip(req)
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	// The validator reads bodies; the request sent keeps its own.
	sent := req.Clone(req.Context())
	sent.Body = io.NopCloser(bytes.NewReader(body))
	if body == nil {
		sent.Body = http.NoBody
	}
	resp, err := t.next().RoundTrip(sent)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if problem := check(val, req, body, resp, respBody); problem != "" {
		s.reporter.Errorf("openapi: %s %s → %d %s: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, respBody, problem)
	}
	s.checked.Add(1)
	return resp, nil
}

// load fetches and parses the server's description, once.
func (s *server) load(next http.RoundTripper) (validator.Validator, error) {
	s.once.Do(func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.base+"/openapi.json", nil)
		resp, err := next.RoundTrip(req)
		if err != nil {
			s.err = fmt.Errorf("GET /openapi.json: %w", err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			s.err = fmt.Errorf("GET /openapi.json: %w", err)
			return
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != "application/json" {
			s.err = fmt.Errorf("GET /openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			return
		}
		s.validator, s.err = New(b, s.opts)
	})
	return s.validator, s.err
}

// New returns a validator of the description doc for a server that runs
// with opts.
func New(doc []byte, opts Options) (validator.Validator, error) {
	d, err := libopenapi.NewDocument(doc)
	if err != nil {
		return nil, fmt.Errorf("parsing the description: %w", err)
	}
	vopts := []config.Option{config.WithFormatAssertions(), config.WithStrictMode()}
	if !opts.Auth {
		vopts = append(vopts, config.WithoutSecurityValidation())
	}
	v, errs := validator.NewValidator(d, vopts...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("building the validator: %v", errs)
	}
	return v, nil
}

// check returns what is wrong with an exchange, or "".
func check(v validator.Validator, req *http.Request, body []byte, resp *http.Response, respBody []byte) string {
	withBody := func() *http.Request {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		return r
	}
	reqOK, reqErrs := v.ValidateHttpRequest(withBody())
	for _, e := range reqErrs {
		if e.IsPathMissingError() || e.IsOperationMissingError() {
			// No operation: the server must say there is no such route.
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
				return "no operation of the description is this request (" + e.Message + "), yet the server answered it"
			}
			return checkProblem(resp, respBody)
		}
	}
	if !reqOK && resp.StatusCode < 400 {
		return "the description refuses the request, the server accepted it: " + Errors(reqErrs)
	}
	if !reqOK && resp.StatusCode >= 500 {
		return "the description refuses the request, the server failed on it: " + Errors(reqErrs)
	}
	if ok, errs := v.ValidateHttpResponse(withBody(), resp); !ok {
		return "the response is not one the description lists: " + Errors(errs)
	}
	return ""
}

// checkProblem checks an answer no operation describes: an RFC 9457
// problem of the response's status.
func checkProblem(resp *http.Response, body []byte) string {
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/problem+json" {
		return "answered with " + resp.Header.Get("Content-Type") + ", not a problem"
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type == "" || p.Title == "" || p.Status != resp.StatusCode {
		return "not a problem of this status"
	}
	return ""
}

// Errors formats the validator's errors on one line each.
func Errors(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s: %s", f.FieldPath, f.Reason)
		}
	}
	return b.String()
}
