package catalog_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// badIDs are ids every edge must refuse: each would be stored changed,
// poison a database, break a header, or change the meaning of a subject.
var badIDs = map[string]string{
	"Empty":          "",
	"NUL":            "o-\x00-1",
	"ControlChar":    "o-\x1b[31m",
	"DEL":            "o-\x7f",
	"C1Control":      "o-\u0085",
	"InvalidUTF8":    "o-\xff\xfe",
	"TruncatedUTF8":  "o-\xc3",
	"Replacement":    "o-\ufffd",
	"BidiOverride":   "o-\u202e1",
	"ZeroWidthSpace": "o-\u200b",
	"Space":          "o 1",
	"NoBreakSpace":   "o\u00a01",
	"Tab":            "o\t1",
	"Newline":        "o\n1",
	"Dot":            "o.1",
	"Star":           "o*",
	"GreaterThan":    "o>",
	"TooLong":        strings.Repeat("a", catalog.MaxIDBytes+1),
	"TooLongInBytes": strings.Repeat("é", catalog.MaxIDBytes/2+1),
}

func TestValidIDRefuses(t *testing.T) {
	for name, id := range badIDs {
		t.Run(name, func(t *testing.T) {
			err := catalog.ValidID("order_id", id)
			if !errors.Is(err, catalog.ErrInvalidID) || events.KindOf(err) != events.KindPermanent {
				t.Fatalf("ValidID(%q): got %v, want a Permanent ErrInvalidID", id, err)
			}
			if strings.ContainsAny(err.Error(), "\x00\x1b\x7f\u202e") {
				t.Errorf("message %q repeats the offending bytes", err)
			}
		})
	}
}

func TestValidIDAccepts(t *testing.T) {
	for _, id := range []string{"0193b3c4-0000-7000-8000-000000000001", "cust-1", "SKU_9", "a:b@c+d=e~f", "Ärger-ß", "注文-1", "o/1", strings.Repeat("a", catalog.MaxIDBytes)} {
		if err := catalog.ValidID("order_id", id); err != nil {
			t.Errorf("ValidID(%q): %v", id, err)
		}
	}
	if err := catalog.ValidSKU(strings.Repeat("s", catalog.MaxSKUBytes+1)); err == nil {
		t.Errorf("ValidSKU of %d bytes: got nil, want an error", catalog.MaxSKUBytes+1)
	}
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"", "checkout 42", "r.1*>"} {
		if err := catalog.ValidKey("command_id", k); err != nil {
			t.Errorf("ValidKey(%q): %v", k, err)
		}
	}
	for _, k := range []string{"k\x00", "k\xff", "k\n", strings.Repeat("k", catalog.MaxKeyBytes+1)} {
		if err := catalog.ValidKey("command_id", k); !errors.Is(err, catalog.ErrInvalidID) {
			t.Errorf("ValidKey(%q): got %v, want ErrInvalidID", k, err)
		}
	}
}

// TestDecodeCommandRefusesBadIDs: every bad id, sent as JSON the way a
// client would (escaped or raw), is refused as Permanent by every
// command decoder and by the schema.
func TestDecodeCommandRefusesBadIDs(t *testing.T) {
	for name, id := range badIDs {
		t.Run(name, func(t *testing.T) {
			q := quoteRaw(id)
			bodies := map[string]func([]byte) error{
				`{"order_id":` + q + `,"customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":1}]}`: decode[catalog.PlaceOrder],
				`{"order_id":"o","customer_id":` + q + `,"currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":1}]}`: decode[catalog.PlaceOrder],
				`{"order_id":"o","customer_id":"c","currency":"EUR","items":[{"sku":` + q + `,"quantity":1,"unit_price":1}]}`: decode[catalog.PlaceOrder],
				`{"order_id":` + q + `}`:         decode[catalog.CancelOrder],
				`{"sku":` + q + `,"quantity":1}`: decode[catalog.Restock],
			}
			for body, dec := range bodies {
				if err := dec([]byte(body)); events.KindOf(err) != events.KindPermanent {
					t.Errorf("%q: got %v, want a Permanent error", body, err)
				}
			}
		})
	}
}

func decode[T catalog.Validator](b []byte) error {
	_, _, err := catalog.DecodeCommand[T](b)
	return err
}

// quoteRaw makes a JSON string of s with its bytes as they are (a
// control character escaped as JSON requires), so that invalid UTF-8
// reaches the decoder raw.
func quoteRaw(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&15])
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
