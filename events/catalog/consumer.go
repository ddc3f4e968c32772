package catalog

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/choreo-dev/choreo/events/consumer"
)

// ConsumerOf returns the consumer configuration of service, whose router
// r says what it handles: one durable consumer (named after the service)
// on each stream that holds subjects r routes, filtered on those
// subjects, handled by r, dead letters under DLQSubject(service). The
// routes are the one list of what a service reads; the filters cannot
// drift from them. A route no stream holds is a programming error, and
// panics.
//
// Commands are the exception, being what anyone may publish. Each command
// the service routes (cmd.orders.place) gets a durable consumer of its own,
// named "<service>-<action>" (CommandDurable), so that a flood of one kind
// being retried — 1,500 cancels of orders that do not exist, each retried
// for half a minute before its dead letter — fills that consumer's
// ack-pending limit and not the one placements wait behind. Beside them
// the durable "<service>" takes every other command addressed to the
// service (cmd.<service>.>, skipping the routed ones), so that one it has
// no route for, a typo or a command from a newer client, is dead-lettered
// with the reason instead of waiting unread in the stream.
func ConsumerOf(service string, r *consumer.Router, log *slog.Logger) consumer.Config {
	filters := map[string][]string{}
	commands := CommandSubject(service, ">")
	var kinds []consumer.Source // a durable per routed command
	for _, pattern := range r.Patterns() {
		stream, ok := StreamOf(pattern)
		if !ok {
			panic(fmt.Sprintf("catalog: %s routes %q, which no stream holds", service, pattern))
		}
		if consumer.MatchSubject(commands, pattern) {
			if action, ok := strings.CutPrefix(pattern, CommandSubject(service, "")); ok && !strings.ContainsAny(action, "*>") {
				kinds = append(kinds, consumer.Source{Stream: stream, Durable: CommandDurable(service, action), FilterSubjects: []string{pattern}})
			}
			pattern = commands
		}
		if !slices.Contains(filters[stream], pattern) {
			filters[stream] = append(filters[stream], pattern)
		}
	}
	cfg := consumer.Config{Handler: r.Handle, DLQSubject: DLQSubject(service), Logger: log}
	for _, s := range Streams { // in the catalog's order: a stable config
		f, ok := filters[s.Name]
		if !ok {
			continue
		}
		src := consumer.Source{Stream: s.Name, Durable: service, FilterSubjects: f}
		for _, k := range kinds {
			if k.Stream == s.Name {
				src.Skip = append(src.Skip, k.FilterSubjects...)
			}
		}
		cfg.Sources = append(cfg.Sources, src)
		for _, k := range kinds {
			if k.Stream == s.Name {
				cfg.Sources = append(cfg.Sources, k)
			}
		}
	}
	return cfg
}

// CommandDurable is the durable consumer through which service takes the
// commands cmd.<service>.<action> (see ConsumerOf).
func CommandDurable(service, action string) string { return service + "-" + action }

// StreamOf returns the stream that holds the messages of a subject or
// subject pattern.
func StreamOf(subject string) (string, bool) {
	for _, s := range Streams {
		for _, held := range s.Subjects {
			if consumer.MatchSubject(held, subject) {
				return s.Name, true
			}
		}
	}
	return "", false
}
