package consumer_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events/consumer"
)

// FuzzMatchSubject: subject matching never panics and, on subjects NATS
// could deliver (no empty token), agrees with a token-by-token reading of
// NATS wildcards.
func FuzzMatchSubject(f *testing.F) {
	for _, s := range [][2]string{
		{"orders.>", "orders.placed.o-1"}, {"*.*.o-1", "orders.placed.o-1"}, {"cmd.orders.place", "cmd.orders.place"},
		{">", ""}, {"orders.*", "orders"}, {"a..b", "a..b"}, {"*", "."}, {"orders.>", "orders."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, subject string) {
		got := consumer.MatchSubject(pattern, subject)
		if slices.Contains(strings.Split(subject, "."), "") {
			return // no such subject is ever delivered (">" matches it, harmlessly)
		}
		if want := matchTokens(strings.Split(pattern, "."), strings.Split(subject, ".")); got != want {
			t.Fatalf("MatchSubject(%q, %q) = %v, want %v", pattern, subject, got, want)
		}
	})
}

// matchTokens is the reference: '*' is one non-empty token, a final '>'
// one or more, any other token matches itself and must not be empty.
func matchTokens(p, s []string) bool {
	for i, pt := range p {
		if pt == ">" && i == len(p)-1 {
			return len(s) > i && s[i] != ""
		}
		if i >= len(s) || s[i] == "" || (pt != "*" && pt != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}
