package catalog

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/choreo-dev/choreo/events/consumer"
)

// ConsumerOf returns the consumer configuration of service, whose router
// r says what it handles: one durable consumer (named after the service)
// on each stream that holds subjects r routes, filtered on those
// subjects, handled by r, dead letters under DLQSubject(service). The
// routes are the one list of what a service reads; the filters cannot
// drift from them. One exception: a service that takes commands takes
// every command addressed to it (cmd.<service>.>), so that one it has no
// route for, a typo or a command from a newer client, is dead-lettered
// with the reason instead of waiting unread in the stream. A route no
// stream holds is a programming error, and panics.
func ConsumerOf(service string, r *consumer.Router, log *slog.Logger) consumer.Config {
	filters := map[string][]string{}
	commands := CommandSubject(service, ">")
	for _, pattern := range r.Patterns() {
		stream, ok := StreamOf(pattern)
		if !ok {
			panic(fmt.Sprintf("catalog: %s routes %q, which no stream holds", service, pattern))
		}
		if consumer.MatchSubject(commands, pattern) {
			pattern = commands
		}
		if !slices.Contains(filters[stream], pattern) {
			filters[stream] = append(filters[stream], pattern)
		}
	}
	cfg := consumer.Config{Handler: r.Handle, DLQSubject: DLQSubject(service), Logger: log}
	for _, s := range Streams { // in the catalog's order: a stable config
		if f, ok := filters[s.Name]; ok {
			cfg.Sources = append(cfg.Sources, consumer.Source{Stream: s.Name, Durable: service, FilterSubjects: f})
		}
	}
	return cfg
}

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
