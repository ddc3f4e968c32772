package events_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/choreo-dev/choreo/events"
)

// envelopeSeeds are more seeds for FuzzDecode (envelope_test.go): the
// shapes that break decoders (invalid UTF-8, NUL, a lone surrogate, nesting,
// duplicate keys, huge numbers).
var envelopeSeeds = []string{
	`{"specversion":"1.0","id":"e-1","source":"choreo/orders","type":"choreo.orders.placed.v1","subject":"o-1","time":"2025-03-01T12:00:00Z","datacontenttype":"application/json","data":{"order_id":"o-1"}}`,
	`{"specversion":"1.0","id":"e-\u0000","source":"s","type":"t","time":"2025-03-01T12:00:00Z","data":{}}`,
	"{\"specversion\":\"1.0\",\"id\":\"e-\xff\",\"source\":\"s\",\"type\":\"t\",\"time\":\"2025-03-01T12:00:00Z\",\"data\":{}}",
	`{"specversion":"1.0","id":"\ud800","source":"s","type":"t","time":"2025-03-01T12:00:00Z","data":{}}`,
	`{"specversion":"1.0","specversion":"0.3","id":"e","source":"s","type":"t","time":"2025-03-01T12:00:00Z","data":null}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","time":"0001-01-01T00:00:00Z","data":[[[[[[[[1e999]]]]]]]]}`,
	`{"specversion":1}`,
	// What the CloudEvents SDKs send: no time, a charset, data as base64.
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data":{"a":1}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","datacontenttype":"application/json; charset=utf-8","data":{}}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","datacontenttype":"application/json","data_base64":"eyJhIjoxfQ=="}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data_base64":"/w=="}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data":{},"data_base64":"e30="}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","dataschema":"https://choreo.dev/schemas/x.json","data":{}}`,
	`[]`, `null`, ``, `{`, `{"data":"x"}x`,
}

// FuzzDecodeData: the strict data decoder never panics and fails only
// with Permanent errors; it never accepts invalid UTF-8.
func FuzzDecodeData(f *testing.F) {
	for _, s := range []string{`{"sku":"SKU-1","quantity":2}`, `{"sku":"SKU-1"}{}`, `{"sku":"\u0000"}`, "{\"sku\":\"\xc3\"}", `{"qty":1}`, `{"sku":1}`, ` `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v struct {
			SKU      string `json:"sku"`
			Quantity int64  `json:"quantity"`
		}
		err := events.DecodeData(b, &v)
		if err != nil && events.KindOf(err) != events.KindPermanent {
			t.Fatalf("error %v is %v, want permanent", err, events.KindOf(err))
		}
		if err == nil && !utf8.Valid(b) {
			t.Fatalf("accepted invalid UTF-8 %q", b)
		}
	})
}

// FuzzSubject: a subject built from valid tokens splits back into exactly
// those tokens; anything else is refused.
func FuzzSubject(f *testing.F) {
	f.Add("orders", "placed", "o-1")
	f.Add("orders", "placed", "o.1")
	f.Add("orders", "placed", "*")
	f.Add("orders", "placed", ">")
	f.Add("orders", "placed", "o 1")
	f.Add("orders", "placed", "o\r\nPUB x 1")
	f.Add("orders", "placed", "o\u00a01")
	f.Add("orders", "placed", "o\xff")
	f.Add("", "placed", "o-1")
	f.Fuzz(func(t *testing.T, service, event, key string) {
		s, err := events.Subject(service, event, key)
		if err != nil {
			if events.KindOf(err) != events.KindPermanent {
				t.Fatalf("error %v is %v, want permanent", err, events.KindOf(err))
			}
			return
		}
		toks := strings.Split(s, ".")
		if len(toks) != 3 || toks[0] != service || toks[1] != event || toks[2] != key {
			t.Fatalf("Subject(%q, %q, %q) = %q: tokens %q", service, event, key, s, toks)
		}
		if strings.ContainsAny(s, "*> \t\r\n") || !utf8.ValidString(s) {
			t.Fatalf("Subject(%q, %q, %q) = %q holds a wildcard, whitespace or invalid UTF-8", service, event, key, s)
		}
		if events.SubjectKey(s) != key || events.SubjectTemplate(s) != service+"."+event+".*" {
			t.Fatalf("SubjectKey/SubjectTemplate(%q) = %q, %q", s, events.SubjectKey(s), events.SubjectTemplate(s))
		}
	})
}
