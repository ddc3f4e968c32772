package sender

import (
	"math"
	"strings"
	"testing"
)

func TestFormatMoney(t *testing.T) {
	tests := []struct {
		amount   int64
		currency string
		want     string
	}{
		{2598, "EUR", "EUR 25.98"},
		{5, "EUR", "EUR 0.05"},
		{0, "USD", "USD 0.00"},
		{-1250, "GBP", "GBP -12.50"},
		{2598, "JPY", "JPY 2598"},
		{0, "KRW", "KRW 0"},
		{2598, "KWD", "KWD 2.598"},
		{7, "BHD", "BHD 0.007"},
		{math.MinInt64, "EUR", "EUR -92233720368547758.08"},
		{100, "", "1.00"},
	}
	for _, tt := range tests {
		if got := formatMoney(tt.amount, tt.currency); got != tt.want {
			t.Errorf("formatMoney(%d, %q): got %q, want %q", tt.amount, tt.currency, got, tt.want)
		}
	}
}

func TestCleanDropsControlsAndCaps(t *testing.T) {
	if got := clean("a\r\nb\tc\x00d\u2028e\xff"); got != "a  b c d e\uFFFD" {
		t.Errorf("got %q", got)
	}
	if got := clean(strings.Repeat("x", 500)); got != strings.Repeat("x", maxFieldRunes)+"..." {
		t.Errorf("got %d bytes, want the value capped at %d runes", len(got), maxFieldRunes)
	}
}

func TestPlaceholderRecipientIsInjective(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"cust-1", "cust.1", "cust%2E1", "cust 1", "cust@1", "Cust-1", "é", "cust-1\r\n"} {
		a := placeholderRecipient(id)
		if prev, ok := seen[a]; ok {
			t.Errorf("%q and %q both map to %s", prev, id, a)
		}
		seen[a] = id
		if _, err := parseAddress(a); err != nil {
			t.Errorf("placeholderRecipient(%q) = %q: %v", id, a, err)
		}
	}
}
