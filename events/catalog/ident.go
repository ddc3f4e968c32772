package catalog

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/choreo-dev/choreo/events"
)

// Bounds of identifiers, in bytes: ids and SKUs become NATS subject tokens
// and database keys, so they are kept short.
const (
	MaxIDBytes  = 128
	MaxSKUBytes = 64
	// MaxKeyBytes bounds an idempotency key (command_id, Idempotency-Key,
	// Nats-Msg-Id).
	MaxKeyBytes = 128
)

// ErrInvalidID is wrapped by every error ValidID, ValidSKU and ValidKey
// return.
var ErrInvalidID = errors.New("invalid identifier")

// subjectSpecial are the characters NATS gives a meaning in a subject: a
// token separator and the two wildcards. An id carrying one would put its
// event on another subject, or make a subscription match others' orders.
const subjectSpecial = ".*>"

// ValidID reports why id, named name in the message ("order_id"), cannot
// be an order or customer id, or nil. An id is 1 to MaxIDBytes bytes of
// valid UTF-8 whose characters are all graphic (letters, marks, numbers,
// punctuation, symbols), with no whitespace, no control or format
// character, no U+FFFD (what a decoder puts for invalid UTF-8) and none of
// '.', '*', '>'. The errors wrap ErrInvalidID and are Permanent.
func ValidID(name, id string) error { return validToken(name, id, MaxIDBytes) }

// ValidSKU is ValidID for a SKU, which is at most MaxSKUBytes bytes.
func ValidSKU(sku string) error { return validToken("sku", sku, MaxSKUBytes) }

// ValidKey reports why key, named name, cannot be an idempotency key: it
// must be valid UTF-8 of at most MaxKeyBytes bytes without control or
// format characters and without U+FFFD. Unlike an id it never becomes a
// subject token, so '.', '*', '>' and inner spaces are allowed. The empty
// key is valid (no key). The errors wrap ErrInvalidID and are Permanent.
func ValidKey(name, key string) error {
	if len(key) > MaxKeyBytes {
		return events.Permanent(fmt.Errorf("%w: %s is %d bytes long, at most %d allowed", ErrInvalidID, name, len(key), MaxKeyBytes))
	}
	if i, what := firstBad(key, func(r rune) bool { return unicode.IsGraphic(r) && r != utf8.RuneError }); i >= 0 {
		return events.Permanent(fmt.Errorf("%w: %s %s at byte %d", ErrInvalidID, name, what, i))
	}
	return nil
}

func validToken(name, v string, max int) error {
	if v == "" {
		return events.Permanent(fmt.Errorf("%w: %s is missing", ErrInvalidID, name))
	}
	if len(v) > max {
		return events.Permanent(fmt.Errorf("%w: %s is %d bytes long, at most %d allowed", ErrInvalidID, name, len(v), max))
	}
	ok := func(r rune) bool {
		return unicode.IsGraphic(r) && !unicode.IsSpace(r) && r != utf8.RuneError && !strings.ContainsRune(subjectSpecial, r)
	}
	if i, what := firstBad(v, ok); i >= 0 {
		// The value is not quoted back: it may hold the very bytes
		// (NUL, escapes, invalid UTF-8) a log line or header must not.
		return events.Permanent(fmt.Errorf("%w: %s %s at byte %d; allowed: letters, digits, punctuation and symbols except '.', '*' and '>', no whitespace or control characters", ErrInvalidID, name, what, i))
	}
	return nil
}

// firstBad returns the byte offset of the first rune of s that ok refuses,
// with a description of it, or -1.
func firstBad(s string, ok func(rune) bool) (int, string) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return i, "has invalid UTF-8"
		case ok(r):
			i += size
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return i, fmt.Sprintf("has control character %U", r)
		case unicode.IsSpace(r):
			return i, fmt.Sprintf("has whitespace %U", r)
		default:
			return i, fmt.Sprintf("has character %U (%q)", r, r)
		}
	}
	return -1, ""
}
