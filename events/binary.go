package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// The CloudEvents NATS protocol binding carries an event in one of two
// content modes. In structured mode the message body is the whole event in
// the JSON event format, which is what choreo publishes. In binary mode
// each attribute is a header named for it with the ce- prefix
// ("ce-specversion", "ce-id", …), and the body is the event's data: what
// the CloudEvents SDKs send by default. A message whose Content-Type is an
// application/cloudevents type is structured whatever other headers it
// has; one with a ce- header is binary; any other is structured.
const (
	// HeaderPrefixCE prefixes each attribute's header in binary mode.
	HeaderPrefixCE = "ce-"
	// HeaderContentType names the message's content type: an
	// application/cloudevents type in structured mode; in binary mode the
	// data's, where ce-datacontenttype is absent (the CloudEvents Go SDK
	// reads it so).
	HeaderContentType = "Content-Type"
	// ContentTypeCloudEventsJSON is the Content-Type of a structured-mode
	// message in the JSON event format: the relay sets it on every event,
	// since by the binding a message without it is in binary mode.
	ContentTypeCloudEventsJSON = "application/cloudevents+json"
	// structuredContentType prefixes the content types of structured mode.
	structuredContentType = "application/cloudevents"
)

// DecodeMessage decodes the CloudEvent that a NATS message with header
// and body carries, in either content mode, and validates it. stored is
// when the stream stored the message: an event without a time attribute
// (it is optional in CloudEvents) is given that time, because it is when
// the event entered the system, and unlike the time of decoding it is the
// same on every redelivery, replay and trace of the message. Decoding
// leaves stored zero when there is none. Every error is Permanent: the
// same message never decodes on a retry.
func DecodeMessage(header nats.Header, body []byte, stored time.Time) (Envelope, error) {
	if !isBinaryMode(header) {
		return decodeStructured(body, stored)
	}
	return decodeBinary(header, body, stored)
}

// CarriesCloudEvent reports whether a message is a CloudEvent: a binary
// mode one by its headers, or a JSON object with a specversion attribute.
// Command consumers use it to accept a bare JSON body as well as a
// CloudEvent whose data is that body.
func CarriesCloudEvent(header nats.Header, body []byte) bool {
	return isBinaryMode(header) || LooksLikeCloudEvent(body)
}

// isBinaryMode reports whether header says binary mode. NATS header names
// are case-insensitive by the NATS design (ADR-4), but nats.Header is a
// case-sensitive map, hence the folding comparisons; a message has a
// handful of headers, so the walk costs little next to the JSON decoding.
func isBinaryMode(header nats.Header) bool {
	binary := false
	for k, vs := range header {
		switch {
		case hasPrefixFold(k, HeaderPrefixCE):
			binary = true
		case strings.EqualFold(k, HeaderContentType) && len(vs) > 0 && hasPrefixFold(strings.TrimSpace(vs[0]), structuredContentType):
			return false
		}
	}
	return binary
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// decodeBinary builds the event from the ce- headers and takes the body as
// its data. Extensions choreo does not know are ignored, as in structured
// mode.
func decodeBinary(header nats.Header, body []byte, stored time.Time) (Envelope, error) {
	var (
		e           Envelope
		problems    []string
		contentType string
		timeSet     bool
	)
	for k, vs := range header {
		if len(vs) == 0 {
			continue
		}
		if strings.EqualFold(k, HeaderContentType) {
			contentType = vs[0]
			continue
		}
		if !hasPrefixFold(k, HeaderPrefixCE) {
			continue
		}
		name := strings.ToLower(k[len(HeaderPrefixCE):])
		v, err := headerValue(vs[0])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s%s: %v", HeaderPrefixCE, name, err))
			continue
		}
		switch name {
		case "specversion":
			e.SpecVersion = v
		case "id":
			e.ID = v
		case "source":
			e.Source = v
		case "type":
			e.Type = v
		case "subject":
			e.Subject = v
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%stime is %q, not an RFC 3339 time", HeaderPrefixCE, v))
				continue
			}
			e.Time, timeSet = t, true
		case "datacontenttype":
			e.DataContentType = v
		case "dataschema":
			e.DataSchema = v
		case HeaderTraceParent:
			e.TraceParent = v
		case HeaderTraceState:
			e.TraceState = v
		case "causationid":
			e.CausationID = v
		}
	}
	if e.DataContentType == "" {
		e.DataContentType = strings.TrimSpace(contentType)
	}
	if !timeSet {
		e.Time = stored
	}
	if err := checkUTF8(body); err != nil {
		return Envelope{}, Permanent(fmt.Errorf("malformed cloudevent data: %w", err))
	}
	// choreo reads JSON data only; say so here, as structured mode's
	// parser does, rather than hand on bytes no decoder can read.
	if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
		problems = append(problems, "data (the message body) is not JSON")
	}
	e.Data = body
	verr := e.validate(HeaderPrefixCE)
	if len(problems) > 0 {
		if verr != nil {
			problems = append(problems, strings.TrimPrefix(verr.Error(), "invalid cloudevent: "))
		}
		return Envelope{}, Permanent(fmt.Errorf("invalid cloudevent: %s", strings.Join(problems, "; ")))
	}
	if verr != nil {
		return Envelope{}, verr
	}
	return e, nil
}

// headerValue decodes an attribute's header value as the NATS binding
// says: unquote an RFC 7230 quoted string (older senders quote), then
// percent-decode once; the result must be valid UTF-8. Values with neither
// a quote nor a percent sign, which is nearly all, are returned as they are.
func headerValue(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			if v[i] == '\\' && i+1 < len(v)-1 {
				i++
			}
			b.WriteByte(v[i])
		}
		v = b.String()
	}
	if !strings.Contains(v, "%") {
		if !utf8.ValidString(v) {
			return "", errors.New("invalid UTF-8")
		}
		return v, nil
	}
	d, err := url.PathUnescape(v)
	if err != nil {
		return "", fmt.Errorf("bad percent-encoding in %s", strconv.Quote(v))
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("percent-encoding of %s is not UTF-8", strconv.Quote(v))
	}
	return d, nil
}
