package sender

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/notifications"
)

// messageIDDomain is the right-hand side of every Message-ID. It is fixed,
// not taken from the From address, so that changing the sender's address
// does not change the id of a message being retried.
const messageIDDomain = "choreo"

// placeholderDomain receives the placeholder recipients; see
// SMTPConfig.Recipient.
const placeholderDomain = "customers.invalid"

// maxFieldRunes caps each value of the notification copied into the
// message. Ids are at most 128 characters when they come through the
// catalog's validation; the cap is for whatever did not, and keeps every
// header line well under RFC 5322's 998 characters.
const maxFieldRunes = 200

// message is one email, ready for the SMTP conversation.
type message struct {
	rcpt      string // envelope recipient, a bare address
	messageID string
	data      []byte // RFC 5322, CRLF line endings
}

// compose writes n as an RFC 5322 message. Every value taken from n goes
// through headerText or bodyText, which drop line breaks and other control
// characters: a customer id or a reason carrying "\r\nBcc: …" cannot add
// a header or a recipient.
func (s *SMTP) compose(n notifications.Notification) (message, error) {
	if n.ID == "" {
		return message{}, errors.New("notification has no id")
	}
	if len(n.ID) > maxFieldRunes {
		// Truncating it would make two notifications one Message-ID.
		return message{}, fmt.Errorf("notification id is %d bytes, at most %d allowed", len(n.ID), maxFieldRunes)
	}
	if n.CustomerID == "" {
		return message{}, errors.New("notification has no customer id")
	}
	to, err := parseAddress(s.recipient(n.CustomerID))
	if err != nil {
		return message{}, fmt.Errorf("recipient of customer %q: %w", n.CustomerID, err)
	}
	// The Date is the notification's, not the attempt's, so that every
	// attempt writes the same bytes.
	date := n.CreatedAt
	if date.IsZero() {
		date = time.Now()
	}
	m := message{rcpt: to.Address, messageID: "<" + atext(n.ID) + "@" + messageIDDomain + ">"}

	body, encoding := encodeBody(bodyOf(n))
	var b bytes.Buffer
	header := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	header("Date", date.Format(time.RFC1123Z))
	header("From", s.from.String())
	header("To", to.String())
	header("Subject", headerText(subjectOf(n)))
	header("Message-ID", m.messageID)
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", encoding)
	// RFC 3834: a machine wrote this; out-of-office replies stay away.
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	b.Write(body)
	m.data = b.Bytes()
	return m, nil
}

func subjectOf(n notifications.Notification) string {
	id := clean(n.OrderID)
	if n.Status == catalog.StatusCancelled {
		return fmt.Sprintf("Your order %s was cancelled (%s)", id, reasonText(n.Reason))
	}
	if n.Status == catalog.StatusConfirmed {
		return fmt.Sprintf("Your order %s is confirmed", id)
	}
	return fmt.Sprintf("Your order %s is %s", id, strings.ToLower(clean(n.Status)))
}

// reasonText words a cancellation reason for a customer.
func reasonText(reason string) string {
	switch reason {
	case catalog.ReasonOutOfStock:
		return "out of stock"
	case catalog.ReasonPaymentDeclined:
		return "payment declined"
	case catalog.ReasonCustomerCancelled:
		return "at your request"
	case catalog.ReasonTimeout:
		return "not completed in time"
	case "":
		return "no reason given"
	}
	return strings.ReplaceAll(clean(reason), "_", " ")
}

func bodyOf(n notifications.Notification) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	line("Hello,")
	line("")
	switch n.Status {
	case catalog.StatusConfirmed:
		line("your order %s is confirmed. Thank you!", clean(n.OrderID))
	case catalog.StatusCancelled:
		line("we are sorry: your order %s was cancelled (%s).", clean(n.OrderID), reasonText(n.Reason))
		line("Any payment taken for it will be refunded.")
	default:
		line("your order %s is %s.", clean(n.OrderID), strings.ToLower(clean(n.Status)))
	}
	line("")
	line("Order:    %s", clean(n.OrderID))
	line("Customer: %s", clean(n.CustomerID))
	line("Status:   %s", clean(n.Status))
	if n.Reason != "" {
		line("Reason:   %s", clean(n.Reason))
	}
	line("Total:    %s", formatMoney(n.Total.Amount, n.Total.Currency))
	if len(n.Items) > 0 {
		line("")
		line("Items:")
		for _, it := range n.Items {
			line("  %d x %s at %s = %s", it.Quantity, clean(it.SKU),
				formatMoney(it.UnitPrice, n.Total.Currency),
				formatMoney(it.Quantity*it.UnitPrice, n.Total.Currency))
		}
	}
	line("")
	line("Notification %s", clean(n.ID))
	return b.String()
}

// encodeBody returns the body as it goes on the wire and its
// Content-Transfer-Encoding: 7bit when it is ASCII in short lines, as it
// is for the ids the catalog allows; quoted-printable otherwise, which
// needs no 8BITMIME from the server.
func encodeBody(body string) ([]byte, string) {
	plain := true
	for l := range strings.SplitSeq(body, "\r\n") {
		if len(l) > 998 {
			plain = false
		}
	}
	for i := 0; plain && i < len(body); i++ {
		plain = body[i] < utf8.RuneSelf
	}
	if plain {
		return []byte(body), "7bit"
	}
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(body)) // a bytes.Buffer does not fail
	_ = w.Close()
	return b.Bytes(), "quoted-printable"
}

// clean makes s safe to copy into a message: valid UTF-8, every control
// character (CR and LF among them) a space, at most maxFieldRunes runes.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxFieldRunes {
			b.WriteString("...")
			break
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// headerText returns s, already cleaned, as an unstructured header value:
// as it is when ASCII, else RFC 2047 encoded words, one per folded line.
func headerText(s string) string {
	enc := mime.QEncoding.Encode("utf-8", s)
	return strings.ReplaceAll(enc, "?= =?", "?=\r\n =?")
}

// parseAddress parses one RFC 5322 address and insists on an ASCII
// addr-spec: a UTF-8 address would need SMTPUTF8 from the server.
func parseAddress(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s, err)
	}
	for i := 0; i < len(a.Address); i++ {
		if a.Address[i] >= utf8.RuneSelf {
			return nil, fmt.Errorf("address %q is not ASCII", a.Address)
		}
	}
	return a, nil
}

// placeholderRecipient is the default SMTPConfig.Recipient.
func placeholderRecipient(customerID string) string {
	return atext(customerID) + "@" + placeholderDomain
}

// atext percent-encodes every byte of s outside [A-Za-z0-9_-]: the result
// is a valid dot-atom (for a local part or a Message-ID's left side), and
// distinct inputs stay distinct.
func atext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// minorUnits holds the ISO 4217 currencies whose minor unit is not the
// hundredth; every other currency has two decimals.
var minorUnits = map[string]int{
	// No minor unit.
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	// Thousandths.
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// formatMoney writes an amount in minor units with its currency: 2598 EUR
// is "EUR 25.98", 2598 JPY "JPY 2598", 2598 KWD "KWD 2.598".
func formatMoney(amount int64, currency string) string {
	currency = clean(currency)
	digits, ok := minorUnits[currency]
	if !ok {
		digits = 2
	}
	sign := ""
	u := uint64(amount)
	if amount < 0 {
		sign, u = "-", uint64(-amount) // two's complement: right for MinInt64 too
	}
	s := strconv.FormatUint(u, 10)
	if digits > 0 {
		if len(s) <= digits {
			s = strings.Repeat("0", digits-len(s)+1) + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	return strings.TrimSpace(currency + " " + sign + s)
}
