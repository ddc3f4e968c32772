package catalog

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/choreo-dev/choreo/events"
)

// Validator is implemented by every command and by the events whose
// consumers rely on particular fields.
type Validator interface{ Validate() error }

// DecodeCommand decodes a command body: a bare JSON object, or a CloudEvents
// structured envelope whose data is that object. Unknown fields are errors
// (a misspelt field is reported, not ignored). All errors are Permanent.
// It returns the envelope's id when there was one.
func DecodeCommand[T Validator](body []byte) (T, string, error) {
	var zero T
	data, envID := body, ""
	if events.LooksLikeCloudEvent(body) {
		env, err := events.Decode(body)
		if err != nil {
			return zero, "", err
		}
		data, envID = env.Data, env.ID
	}
	var cmd T
	if err := events.DecodeData(data, &cmd); err != nil {
		return zero, "", err
	}
	if err := cmd.Validate(); err != nil {
		return zero, "", events.Permanent(fmt.Errorf("invalid command: %w", err))
	}
	return cmd, envID, nil
}

// DecodeEvent decodes a CloudEvent, checks its type, and unmarshals and
// validates its data into T. Unknown data fields are tolerated so that a
// producer can add a field before its consumers know it. All errors are
// Permanent.
func DecodeEvent[T any](body []byte, wantType string) (events.Envelope, T, error) {
	var zero T
	env, err := events.Decode(body)
	if err != nil {
		return events.Envelope{}, zero, err
	}
	if env.Type != wantType {
		return env, zero, events.Permanent(fmt.Errorf("event type %q, want %q", env.Type, wantType))
	}
	var v T
	if err := json.Unmarshal(env.Data, &v); err != nil {
		return env, zero, events.Permanent(fmt.Errorf("malformed %s data: %w", env.Type, err))
	}
	if val, ok := any(v).(Validator); ok {
		if err := val.Validate(); err != nil {
			return env, zero, events.Permanent(fmt.Errorf("invalid %s: %w", env.Type, err))
		}
	}
	return env, v, nil
}

// ErrUnknownSubject is returned (Permanent) for a message on a subject a
// consumer has no handler for.
var ErrUnknownSubject = errors.New("no handler for subject")
