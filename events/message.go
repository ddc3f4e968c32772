package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Outgoing is an event a handler wants published. Handlers return them; the
// outbox stores them in the same transaction as the state change that caused
// them, and the relay publishes them later.
type Outgoing struct {
	// ID is the CloudEvents id and the Nats-Msg-Id. Handlers derive it
	// deterministically from their input where they can, so that replaying
	// the same input produces the same id and JetStream drops the copy.
	ID      string
	Subject string
	Type    string
	Source  string
	Time    time.Time
	// DataSchema is the URI of the JSON Schema Data adheres to, the
	// CloudEvents dataschema attribute; empty leaves it out.
	DataSchema string
	// Data is marshalled to JSON as the event's data.
	Data any
	// Headers are extra NATS headers, such as the Nats-Schedule headers
	// that make the server deliver the event later.
	Headers map[string]string
	// CausationID is the id of the message that caused the event; the
	// outbox fills it from the context when it is empty (see WithCause).
	CausationID string
}

// NewID returns a new time-ordered (UUID v7) id.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// DerivedID returns a stable id for the event of the given kind caused by the
// input with id cause: the same cause always yields the same id. It is how a
// redelivered or replayed input produces byte-identical output.
//
// When cause is a time-ordered id (UUID v7, as order ids and command ids
// are), the derived id keeps its 48-bit millisecond timestamp and is a
// UUID v8 whose other bits are the name's SHA-1: ids derived from one
// order sort together and after those of older orders. Every store keys
// its inbox and outbox by event id, and a B-tree takes time-ordered keys
// at its right edge, a few pages per batch, where random ones touch a page
// each anywhere in the tree (the README's "What makes choreo fast" gives
// the measured difference). Any other cause yields a name-based UUID v5.
func DerivedID(cause, kind string) string {
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(cause+"/"+kind))
	if c, err := uuid.Parse(cause); err == nil && c.Version() == 7 {
		copy(id[:6], c[:6])
		id[6] = id[6]&0x0f | 0x80 // version 8; the variant stays RFC 9562's
	}
	return id.String()
}

// Envelope turns o into a CloudEvent, marshalling its data.
func (o Outgoing) Envelope() (Envelope, error) {
	data, err := json.Marshal(o.Data)
	if err != nil {
		return Envelope{}, fmt.Errorf("marshal %s data: %w", o.Type, err)
	}
	t := o.Time
	if t.IsZero() {
		t = time.Now()
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              o.ID,
		Source:          o.Source,
		Type:            o.Type,
		Subject:         SubjectKey(o.Subject),
		Time:            t.UTC(),
		DataContentType: ContentTypeJSON,
		DataSchema:      o.DataSchema,
		Data:            data,
		CausationID:     o.CausationID,
	}, nil
}
