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
func DerivedID(cause, kind string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(cause+"/"+kind)).String()
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
