package events

import (
	"fmt"
	"strings"
)

// Subject builds "<service>.<event>.<key>", the subject of every domain
// event. The key is the aggregate's id (an order id, a SKU) so that
// `nats sub '*.*.<key>'` follows one aggregate across all streams.
func Subject(service, event, key string) (string, error) {
	for _, tok := range []struct{ name, v string }{{"service", service}, {"event", event}, {"key", key}} {
		if err := ValidToken(tok.v); err != nil {
			return "", fmt.Errorf("subject %s: %w", tok.name, err)
		}
	}
	return service + "." + event + "." + key, nil
}

// ValidToken reports whether s can be used as one token of a NATS subject:
// non-empty, and free of separators, wildcards and whitespace.
func ValidToken(s string) error {
	if s == "" {
		return Permanent(fmt.Errorf("empty subject token"))
	}
	if strings.ContainsAny(s, ".*> \t\r\n") {
		return Permanent(fmt.Errorf("subject token %q contains '.', '*', '>' or whitespace", s))
	}
	return nil
}

// SubjectKey returns the last token of a subject: the aggregate key of a
// domain event subject.
func SubjectKey(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return subject
}
