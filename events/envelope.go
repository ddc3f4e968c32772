package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// SpecVersion is the CloudEvents version choreo speaks.
const SpecVersion = "1.0"

// ContentTypeJSON is the only data content type choreo produces and accepts.
const ContentTypeJSON = "application/json"

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
	if e.ID == "" {
		problems = append(problems, "id is missing")
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
