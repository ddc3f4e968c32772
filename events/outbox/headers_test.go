package outbox

import (
	"maps"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"pgregory.net/rapid"
)

// TestHeadersRoundTrip checks that what Add stores is what the relay sends,
// for any header a NATS message can carry.
func TestHeadersRoundTrip(t *testing.T) {
	token := rapid.StringMatching(`[A-Za-z][A-Za-z0-9-]{0,20}`)
	value := rapid.StringMatching(`[ -~]{0,60}`) // printable ASCII, as NATS headers are
	rapid.Check(t, func(t *rapid.T) {
		want := nats.Header{}
		for k, vs := range rapid.MapOf(token, rapid.SliceOfN(value, 1, 3)).Draw(t, "headers") {
			for _, v := range vs {
				want.Add(k, v)
			}
		}
		got := nats.Header{}
		setHeaders(got, encodeHeaders(want))
		if !maps.EqualFunc(got, want, func(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }) {
			t.Fatalf("round trip of %v: got %v", want, got)
		}
	})
}

func TestHeadersDropLineBreaksAndIgnoreJunk(t *testing.T) {
	got := nats.Header{}
	setHeaders(got, encodeHeaders(nats.Header{"traceparent": {"00-a\r\n-b"}}))
	if v := got.Get("traceparent"); v != "00-a-b" {
		t.Errorf("traceparent: got %q, want line breaks dropped", v)
	}
	for _, col := range []string{"", "\n", "no colon\n", ": no key\n", "{}"} {
		h := nats.Header{}
		setHeaders(h, col)
		if len(h) != 0 {
			t.Errorf("setHeaders(%q): got %v, want no header", col, h)
		}
	}
}
