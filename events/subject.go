package events

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
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
// non-empty valid UTF-8, free of separators, wildcards, whitespace and
// control characters (a CR or LF would end the protocol line that carries
// the subject).
func ValidToken(s string) error {
	if s == "" {
		return Permanent(fmt.Errorf("empty subject token"))
	}
	if !utf8.ValidString(s) {
		return Permanent(fmt.Errorf("subject token %q is not valid UTF-8", s))
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
	}) {
		return Permanent(fmt.Errorf("subject token %q contains '.', '*', '>', whitespace or a control character", s))
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
