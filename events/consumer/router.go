package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/choreo-dev/choreo/events"
)

// ErrUnknownSubject is returned (Permanent) for a message on a subject no
// route matches.
var ErrUnknownSubject = errors.New("no handler for subject")

// Router sends each message to the handler of the first route whose
// subject pattern matches it. A route decodes the message into a typed
// value once, and its handler works on that value: the one place where a
// service says which messages it handles and how. The zero value is not
// usable; call NewRouter.
type Router struct {
	name   string
	routes []route
}

type route struct {
	pattern string
	handle  Handler
}

// NewRouter returns an empty router. name prefixes its errors (the
// service's name, say).
func NewRouter(name string) *Router { return &Router{name: name} }

// Decoder turns a message into the value its handler works on. Its errors
// should be Permanent: the same bytes never decode on a retry.
type Decoder[T any] func(m *Message) (T, error)

// Route adds a route: messages whose subject matches pattern (NATS
// wildcards: '*' one token, '>' the rest) are decoded with decode and
// handled by h. Routes are tried in the order they were added.
func Route[T any](r *Router, pattern string, decode Decoder[T], h func(ctx context.Context, m *Message, v T) (Work, error)) {
	if err := validPattern(pattern); err != nil {
		panic(fmt.Sprintf("consumer: route %q: %v", pattern, err)) // a programming error, caught by any test
	}
	r.routes = append(r.routes, route{pattern: pattern, handle: func(ctx context.Context, m *Message) (Work, error) {
		m.Route = pattern
		v, err := decode(m)
		if err != nil {
			return Work{}, err
		}
		return h(ctx, m, v)
	}})
}

// Handle is the router's Handler: it finds the route of m and returns what
// its handler decides. A subject no route matches is Permanent
// ErrUnknownSubject.
func (r *Router) Handle(ctx context.Context, m *Message) (Work, error) {
	for _, rt := range r.routes {
		if MatchSubject(rt.pattern, m.Subject) {
			return rt.handle(ctx, m)
		}
	}
	return Work{}, events.Permanent(fmt.Errorf("%s: %q: %w", r.name, m.Subject, ErrUnknownSubject))
}

// Patterns returns the routes' subject patterns, in order.
func (r *Router) Patterns() []string {
	out := make([]string, len(r.routes))
	for i, rt := range r.routes {
		out[i] = rt.pattern
	}
	return out
}

// MatchSubject reports whether subject matches pattern, where '*' stands
// for one token and a final '>' for one or more.
func MatchSubject(pattern, subject string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		if pt == ">" && !pmore {
			return subject != ""
		}
		st, srest, smore := strings.Cut(subject, ".")
		if st == "" || (pt != "*" && pt != st) {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

func validPattern(p string) error {
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return errors.New("empty token")
		case t == ">" && i != len(toks)-1:
			return errors.New("'>' must be the last token")
		case t != "*" && t != ">" && strings.ContainsAny(t, "*> \t\r\n"):
			return fmt.Errorf("token %q mixes wildcards or whitespace", t)
		}
	}
	return nil
}
