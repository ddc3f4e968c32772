package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SpecVersion is the CloudEvents version choreo speaks.
const SpecVersion = "1.0"

// ContentTypeJSON is the only data content type choreo produces and accepts.
const ContentTypeJSON = "application/json"

// MaxEnvelopeIDBytes bounds a CloudEvent's id.
const MaxEnvelopeIDBytes = 256

// Envelope is a CloudEvents 1.0 event in structured JSON mode. It is what
// every event on a choreo stream looks like on the wire.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data"`
	// TraceParent and TraceState are the CloudEvents distributed-tracing
	// extension: the W3C trace context of the event's creation, so that a
	// CloudEvents consumer that reads no NATS header keeps the trace.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	// CausationID is an extension attribute naming the id of the message
	// that caused this event (an event's id, or a command's idempotency
	// key): followed back, the causes make the saga's causal tree.
	CausationID string `json:"causationid,omitempty"`
}

// Validate reports every missing or malformed required attribute at once,
// so that a dead letter's reason tells the whole story.
func (e Envelope) Validate() error {
	var problems []string
	if e.SpecVersion != SpecVersion {
		problems = append(problems, fmt.Sprintf("specversion is %q, want %q", e.SpecVersion, SpecVersion))
	}
	switch {
	case e.ID == "":
		problems = append(problems, "id is missing")
	case len(e.ID) > MaxEnvelopeIDBytes:
		problems = append(problems, fmt.Sprintf("id is %d bytes long, at most %d allowed", len(e.ID), MaxEnvelopeIDBytes))
	case strings.IndexFunc(e.ID, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0:
		// The id is an inbox key and a Nats-Msg-Id header: a control
		// character or a replaced byte would be stored, or break the header.
		problems = append(problems, "id has a control character or invalid UTF-8")
	}
	if e.Source == "" {
		problems = append(problems, "source is missing")
	}
	if e.Type == "" {
		problems = append(problems, "type is missing")
	}
	if e.Time.IsZero() {
		problems = append(problems, "time is missing")
	}
	if e.DataContentType != "" && e.DataContentType != ContentTypeJSON {
		problems = append(problems, fmt.Sprintf("datacontenttype is %q, want %q", e.DataContentType, ContentTypeJSON))
	}
	if len(bytes.TrimSpace(e.Data)) == 0 || bytes.Equal(bytes.TrimSpace(e.Data), []byte("null")) {
		problems = append(problems, "data is missing")
	}
	if len(problems) > 0 {
		return Permanent(fmt.Errorf("invalid cloudevent: %s", strings.Join(problems, "; ")))
	}
	return nil
}

// Encode validates e and returns its structured JSON form.
func Encode(e Envelope) ([]byte, error) {
	if e.DataContentType == "" {
		e.DataContentType = ContentTypeJSON
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode cloudevent %s: %w", e.ID, err)
	}
	return b, nil
}

// Decode parses a structured CloudEvent and validates it. Every error it
// returns is Permanent: the same bytes will never decode on a retry.
func Decode(b []byte) (Envelope, error) {
	if err := checkUTF8(b); err != nil {
		return Envelope{}, Permanent(fmt.Errorf("malformed cloudevent: %w", err))
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, Permanent(fmt.Errorf("malformed cloudevent: %w", err))
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// LooksLikeCloudEvent reports whether b is a JSON object carrying a
// "specversion" attribute. Command consumers use it to accept both a bare
// JSON body and a CloudEvents envelope around it.
func LooksLikeCloudEvent(b []byte) bool {
	var probe struct {
		SpecVersion *string `json:"specversion"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return false
	}
	return probe.SpecVersion != nil
}

// DecodeData unmarshals data strictly into v: unknown fields and trailing
// garbage are errors, so a typo in a field name is reported, not ignored.
// Errors are Permanent.
func DecodeData(data []byte, v any) error {
	if err := checkUTF8(data); err != nil {
		return Permanent(fmt.Errorf("malformed data: %w", err))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Permanent(fmt.Errorf("malformed data: %w", err))
	}
	// dec.More reports false for a stray '}' or ']', so look for the end of
	// input instead: anything but io.EOF after the value is trailing content.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Permanent(errors.New("malformed data: trailing content after the JSON value"))
	}
	return nil
}

// checkUTF8 refuses input that is not valid UTF-8. encoding/json would
// replace each bad byte with U+FFFD, so the value stored and published
// would differ from the one sent, silently; RFC 8259 requires UTF-8.
func checkUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		}
		i += size
	}
	return errors.New("invalid UTF-8")
}
