package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// SpecVersion is the CloudEvents version choreo speaks.
const SpecVersion = "1.0"

// ContentTypeJSON is the data content type choreo produces. It accepts
// application/json and any +json type, with no charset or charset utf-8
// (see checkDataContentType).
const ContentTypeJSON = "application/json"

// MaxEnvelopeIDBytes bounds a CloudEvent's id.
const MaxEnvelopeIDBytes = 256

// Envelope is a CloudEvents 1.0 event. choreo publishes every event in
// structured JSON mode, this struct encoded; DecodeMessage reads binary
// mode too.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time,omitzero"` // optional in CloudEvents; choreo always sets it
	DataContentType string          `json:"datacontenttype,omitempty"`
	DataSchema      string          `json:"dataschema,omitempty"` // the URI of data's JSON Schema: for choreo's events, the catalog schema's $id
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
// so that a dead letter's reason tells the whole story. The optional
// attributes (subject, time, datacontenttype, dataschema) may be absent.
func (e Envelope) Validate() error {
	return e.validate("")
}

// validate is Validate naming each attribute with prefix, so that a
// binary-mode message's problems name the headers it lacks ("ce-id is
// missing").
func (e Envelope) validate(prefix string) error {
	var problems []string
	if e.SpecVersion != SpecVersion {
		problems = append(problems, fmt.Sprintf("%sspecversion is %q, want %q", prefix, e.SpecVersion, SpecVersion))
	}
	switch {
	case e.ID == "":
		problems = append(problems, prefix+"id is missing")
	case len(e.ID) > MaxEnvelopeIDBytes:
		problems = append(problems, fmt.Sprintf("%sid is %d bytes long, at most %d allowed", prefix, len(e.ID), MaxEnvelopeIDBytes))
	case strings.IndexFunc(e.ID, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0:
		// The id is an inbox key and a Nats-Msg-Id header: a control
		// character or a replaced byte would be stored, or break the header.
		problems = append(problems, prefix+"id has a control character or invalid UTF-8")
	}
	if e.Source == "" {
		problems = append(problems, prefix+"source is missing")
	}
	if e.Type == "" {
		problems = append(problems, prefix+"type is missing")
	}
	if err := checkDataContentType(e.DataContentType); err != nil {
		problems = append(problems, prefix+err.Error())
	}
	if e.DataSchema != "" && !isAbsoluteURI(e.DataSchema) {
		problems = append(problems, fmt.Sprintf("%sdataschema is %q, want an absolute URI", prefix, e.DataSchema))
	}
	if len(bytes.TrimSpace(e.Data)) == 0 || bytes.Equal(bytes.TrimSpace(e.Data), []byte("null")) {
		problems = append(problems, "data is missing")
	}
	if len(problems) > 0 {
		return Permanent(fmt.Errorf("invalid cloudevent: %s", strings.Join(problems, "; ")))
	}
	return nil
}

// isAbsoluteURI reports whether s starts with an RFC 3986 scheme and a
// colon, and has no space or control character: what an absolute URI needs
// to be told from a relative reference, checked without url.Parse's
// allocation since every choreo event carries a dataschema.
func isAbsoluteURI(s string) bool {
	colon := strings.IndexByte(s, ':')
	if colon < 1 {
		return false
	}
	for i := 0; i < colon; i++ {
		c := s[i]
		letter := 'a' <= c|0x20 && c|0x20 <= 'z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) < 0
}

// checkDataContentType accepts what choreo can read as JSON: no content
// type (JSON is the CloudEvents JSON format's default), application/json
// or a +json type (application/vnd.acme.order+json), with no charset or
// charset utf-8 — RFC 8259 allows no other. The common exact value is
// compared first, so choreo's own events never reach the MIME parser.
func checkDataContentType(ct string) error {
	if ct == "" || ct == ContentTypeJSON {
		return nil
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("datacontenttype %q is not a media type: %v", ct, err)
	}
	if mediaType != ContentTypeJSON && !(strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json")) {
		return fmt.Errorf("datacontenttype is %q, want %q or a +json type", ct, ContentTypeJSON)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fmt.Errorf("datacontenttype %q has charset %q, want utf-8", ct, cs)
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

// Decode parses a structured CloudEvent and validates it; it is
// DecodeMessage of a message with no headers and no stored time. Every
// error it returns is Permanent: the same bytes will never decode on a
// retry.
func Decode(b []byte) (Envelope, error) {
	return decodeStructured(b, time.Time{})
}

// dataBase64Key is how a structured event with data_base64 says so.
var dataBase64Key = []byte(`"data_base64"`)

// decodeStructured parses a structured-mode CloudEvent. An event without
// time is given stored (see DecodeMessage).
func decodeStructured(b []byte, stored time.Time) (Envelope, error) {
	if err := checkUTF8(b); err != nil {
		return Envelope{}, Permanent(fmt.Errorf("malformed cloudevent: %w", err))
	}
	// jsonv2 (the engine of Go's coming encoding/json/v2) decodes at a
	// third of encoding/json's CPU with an eighth of its allocations
	// (BenchmarkDecodeMessage), and every message is decoded two or three
	// times. It is stricter where encoding/json is lax: member names match
	// exactly ("ID" is not "id") and a name given twice is an error.
	var e Envelope
	if err := jsonv2.Unmarshal(b, &e); err != nil {
		return Envelope{}, Permanent(fmt.Errorf("malformed cloudevent: %w", err))
	}
	// data_base64 is read in a second pass, only when the body names it:
	// choreo's own events never do, and a field for it in the first pass
	// costs every message an allocation.
	if bytes.Contains(b, dataBase64Key) {
		var probe struct {
			DataBase64 *string `json:"data_base64"`
		}
		if err := jsonv2.Unmarshal(b, &probe); err != nil {
			return Envelope{}, Permanent(fmt.Errorf("malformed cloudevent: %w", err))
		}
		if probe.DataBase64 != nil {
			data, err := decodeDataBase64(e.Data, *probe.DataBase64)
			if err != nil {
				return Envelope{}, err
			}
			e.Data = data
		}
	}
	if e.Time.IsZero() {
		e.Time = stored
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// decodeDataBase64 returns the bytes of a data_base64 attribute, which
// choreo reads only when they are JSON: the CloudEvents SDKs send JSON
// that way when it was given to them as bytes.
func decodeDataBase64(data json.RawMessage, b64 string) (json.RawMessage, error) {
	if d := bytes.TrimSpace(data); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		return nil, Permanent(errors.New("invalid cloudevent: data and data_base64 are both set"))
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, Permanent(fmt.Errorf("invalid cloudevent: data_base64 is not base64: %w", err))
	}
	if err := checkUTF8(raw); err != nil {
		return nil, Permanent(fmt.Errorf("invalid cloudevent: data_base64 is not JSON: %w", err))
	}
	if len(bytes.TrimSpace(raw)) > 0 && !json.Valid(raw) {
		return nil, Permanent(errors.New("invalid cloudevent: data_base64 is not JSON"))
	}
	return raw, nil
}

// LooksLikeCloudEvent reports whether b is a JSON object carrying a
// "specversion" attribute. Command consumers use it to accept both a bare
// JSON body and a CloudEvents envelope around it.
func LooksLikeCloudEvent(b []byte) bool {
	var probe struct {
		SpecVersion *string `json:"specversion"`
	}
	// Lenient on purpose: a CloudEvent with a duplicate attribute is still
	// one, and decoding it as such says what is wrong with it, where
	// decoding it as a bare command would only list its attributes as
	// unknown fields.
	if err := jsonv2.Unmarshal(b, &probe, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
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
	if err := jsonv2.Unmarshal(data, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return Permanent(fmt.Errorf("malformed data: %w", dataError(data, err)))
	}
	return nil
}

// dataError says in a sender's words what DecodeData's decoder found:
// the field nobody knows, or what follows the value.
func dataError(data []byte, err error) error {
	var serr *jsonv2.SemanticError
	if errors.As(err, &serr) && errors.Is(serr.Err, jsonv2.ErrUnknownName) {
		field := serr.JSONPointer.LastToken()
		if at := serr.JSONPointer.Parent(); at != "" {
			return fmt.Errorf("unknown field %q in %s", field, at)
		}
		return fmt.Errorf("unknown field %q", field)
	}
	var syntax *jsontext.SyntacticError
	if !errors.As(err, &syntax) {
		return err
	}
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if _, verr := dec.ReadValue(); verr == nil {
		if _, terr := dec.ReadToken(); !errors.Is(terr, io.EOF) {
			return errors.New("trailing content after the JSON value")
		}
	}
	return err
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
