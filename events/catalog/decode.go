package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/inbox"
)

// Validator is implemented by every command and by the events whose
// consumers rely on particular fields.
type Validator interface{ Validate() error }

// DecodeCommand decodes a command body: a bare JSON object, or a CloudEvents
// structured envelope whose data is that object. Unknown fields are errors
// (a misspelt field is reported, not ignored). All errors are Permanent.
// It returns the envelope's id when there was one. CommandOf decodes a
// whole message, which may also be a binary-mode CloudEvent.
func DecodeCommand[T Validator](body []byte) (T, string, error) {
	return decodeCommand[T](nil, body, time.Time{})
}

// decodeCommand decodes the command a message with header and body
// carries: a bare JSON body, or a CloudEvent in either content mode whose
// data is that body (see events.DecodeMessage; stored is when the stream
// stored it).
func decodeCommand[T Validator](header nats.Header, body []byte, stored time.Time) (T, string, error) {
	var zero T
	data, envID := body, ""
	if events.CarriesCloudEvent(header, body) {
		env, err := events.DecodeMessage(header, body, stored)
		if err != nil {
			return zero, "", err
		}
		data, envID = env.Data, env.ID
	}
	// The Go checks run first so that their messages (which name the
	// problem in the domain's words) lead the reason; the schema's
	// violations follow.
	serr := schemaCheck(reflect.TypeFor[T](), data)
	var cmd T
	if err := events.DecodeData(data, &cmd); err != nil {
		return zero, "", withSchemaProblems(err, serr)
	}
	if err := joinProblems(cmd.Validate(), serr); err != nil {
		return zero, "", events.Permanent(fmt.Errorf("invalid command: %w", err))
	}
	return cmd, envID, nil
}

// DecodeEvent decodes a structured CloudEvent, checks its type, and
// unmarshals and validates its data into T. Unknown data fields are
// tolerated so that a producer can add a field before its consumers know
// it. All errors are Permanent. EventOf decodes a whole message, which may
// also be a binary-mode CloudEvent.
func DecodeEvent[T any](body []byte, wantType string) (events.Envelope, T, error) {
	return decodeEvent[T](nil, body, time.Time{}, wantType)
}

// decodeEvent is DecodeEvent of a message in either content mode (see
// events.DecodeMessage; stored is when the stream stored it).
func decodeEvent[T any](header nats.Header, body []byte, stored time.Time, wantType string) (events.Envelope, T, error) {
	var zero T
	env, err := events.DecodeMessage(header, body, stored)
	if err != nil {
		return events.Envelope{}, zero, err
	}
	if env.Type != wantType {
		return env, zero, events.Permanent(fmt.Errorf("event type %q, want %q", env.Type, wantType))
	}
	serr := schemaCheck(reflect.TypeFor[T](), env.Data)
	var v T
	if err := jsonv2.Unmarshal(env.Data, &v); err != nil {
		return env, zero, withSchemaProblems(events.Permanent(fmt.Errorf("malformed %s data: %w", env.Type, err)), serr)
	}
	var verr error
	if val, ok := any(v).(Validator); ok {
		verr = val.Validate()
	}
	if err := joinProblems(verr, serr); err != nil {
		return env, zero, events.Permanent(fmt.Errorf("invalid %s: %w", env.Type, err))
	}
	return env, v, nil
}

// schemaCheck validates data against the schema registered for Go type t.
// A type without a registered schema passes; data that is not JSON passes
// too, since the Go decoder reports it in its own words.
func schemaCheck(t reflect.Type, data []byte) error {
	name := schemaNameOf(t)
	if name == "" {
		return nil
	}
	if passed.has(name, data) {
		return nil
	}
	err := ValidateSchema(name, data)
	switch {
	case errors.Is(err, errMalformed):
		return nil
	case err == nil:
		passed.add(name, data)
	}
	return err
}

// passed remembers the data that passed its schema lately, so that the
// same bytes are validated once per process, not once per consumer: in
// choreo up an order's events reach two or three services, and a
// redelivery brings the same bytes again. Keys are a hash seeded at random
// per process, so nobody outside can craft bytes that collide with data
// known to be valid.
var passed = newMemo(1 << 13)

type memoKey struct {
	schema string
	hash   uint64
	size   int
}

// memo is a set of recent keys: two generations of at most max keys each,
// the older dropped whole when the newer fills up.
type memo struct {
	mu       sync.Mutex
	seed     maphash.Seed
	max      int
	cur, old map[memoKey]struct{}
}

func newMemo(max int) *memo {
	return &memo{seed: maphash.MakeSeed(), max: max, cur: make(map[memoKey]struct{}, max)}
}

func (m *memo) key(schema string, data []byte) memoKey {
	return memoKey{schema: schema, hash: maphash.Bytes(m.seed, data), size: len(data)}
}

func (m *memo) has(schema string, data []byte) bool {
	k := m.key(schema, data)
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.cur[k]
	if !ok {
		_, ok = m.old[k]
	}
	return ok
}

func (m *memo) add(schema string, data []byte) {
	k := m.key(schema, data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.cur) >= m.max {
		m.old, m.cur = m.cur, make(map[memoKey]struct{}, m.max)
	}
	m.cur[k] = struct{}{}
}

// withSchemaProblems appends the schema's violations to a decoding error,
// keeping it Permanent and on one line.
func withSchemaProblems(err, serr error) error {
	if serr == nil {
		return err
	}
	return events.Permanent(fmt.Errorf("%w; %v", err, serr))
}

// ErrUnknownSubject is returned (Permanent) for a message on a subject a
// consumer has no handler for.
var ErrUnknownSubject = consumer.ErrUnknownSubject

// Event is a decoded event: its CloudEvents envelope and its typed data.
type Event[T any] struct {
	Envelope events.Envelope
	Data     T
}

// EventOf returns a consumer.Decoder of events of CloudEvents type typ
// whose data is a T (see DecodeEvent).
func EventOf[T any](typ string) consumer.Decoder[Event[T]] {
	return func(m *consumer.Message) (Event[T], error) {
		// The route's type, even when the message turns out not to be
		// one: what was expected on its subject is what it is counted as.
		m.Type, m.KeyName = typ, keyNames[typ]
		env, v, err := decodeEvent[T](m.Header, m.Data, m.Time, typ)
		if env.ID != "" {
			m.ID, m.Key = env.ID, env.Subject
		}
		if err == nil {
			err = checkOrigin(m.Subject, env, v)
		}
		return Event[T]{Envelope: env, Data: v}, err
	}
}

// checkOrigin checks that an event says what its subject says: its
// CloudEvents source is the service the subject's first token names (only
// orders publishes orders.>: "/choreo/orders", or a path under it such as
// the "/choreo/orders/example" of `choreo events`), and the order it is about is the subject's
// key. Behind per-service NATS permissions this is defence in depth: on a
// misconfigured server anyone may publish anywhere, and a payments.captured
// claiming to come from elsewhere, or one on order A's subject about
// order B, is a forgery or a bug, never something to act on. Errors are
// Permanent.
func checkOrigin(subject string, env events.Envelope, data any) error {
	service, _, _ := strings.Cut(subject, ".")
	if want := Source(service); env.Source != want && !strings.HasPrefix(env.Source, want+"/") {
		return events.Permanent(fmt.Errorf("%s on %s has source %q, want %q: only %s publishes there", env.Type, subject, env.Source, want, service))
	}
	if oe, ok := data.(OrderEvent); ok {
		if key := events.SubjectKey(subject); oe.Order() != key {
			return events.Permanent(fmt.Errorf("%s on %s is about order %q, not the subject's %q", env.Type, subject, oe.Order(), key))
		}
	}
	return nil
}

// Command is a decoded command: its body and its idempotency key.
type Command[T any] struct {
	Body T
	// Key is the command's idempotency key: the Nats-Msg-Id header, else
	// its command_id, else its CloudEvents id (see
	// consumer.Message.CommandKey).
	Key string
	// Hash is CommandHash of Body: the key arriving again with another
	// hash is a conflict, not a duplicate (see inbox.ClaimKey).
	Hash string
	// Ref is where the command came from, "<stream>:<sequence>", so that
	// a conflict names the earlier command (`nats stream get COMMANDS 42`).
	Ref string
}

// InboxKey is the command's inbox claim for consumer: its key, with the
// hash of its body and where it came from.
func (c Command[T]) InboxKey(consumer string) inbox.Key {
	return inbox.Key{Consumer: consumer, EventID: c.Key, Hash: c.Hash, Ref: c.Ref}
}

// CommandHash returns a digest of what a command asks for: its body as
// decoded, encoded again, without its command_id — the id is the key, not
// the content, and a key may come from the Nats-Msg-Id header or an HTTP
// Idempotency-Key instead. A bare body and a CloudEvents envelope around
// it, or the same body spaced or ordered differently, hash the same; a
// different SKU, quantity, order or line does not.
func CommandHash(cmd commandBody) string {
	b, err := json.Marshal(cmd.withoutID())
	if err != nil { // cannot happen: commands are plain structs
		panic(fmt.Sprintf("catalog: hash command: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// commandBody is a command's Go type.
type commandBody interface {
	Validator
	commandID() string
	// key is what the command is about: an order id, a SKU.
	key() string
	// withoutID is the command with an empty command_id.
	withoutID() any
}

func (c PlaceOrder) withoutID() any  { c.CommandID = ""; return c }
func (c CancelOrder) withoutID() any { c.CommandID = ""; return c }
func (c Restock) withoutID() any     { c.CommandID = ""; return c }

func (c PlaceOrder) commandID() string  { return c.CommandID }
func (c CancelOrder) commandID() string { return c.CommandID }
func (c Restock) commandID() string     { return c.CommandID }
func (c PlaceOrder) key() string        { return c.OrderID }
func (c CancelOrder) key() string       { return c.OrderID }
func (c Restock) key() string           { return c.SKU }

// CommandOf is a consumer.Decoder of commands of type T (see
// DecodeCommand).
func CommandOf[T commandBody](m *consumer.Message) (Command[T], error) {
	m.Type = m.Subject
	body, envID, err := decodeCommand[T](m.Header, m.Data, m.Time)
	if err != nil {
		return Command[T]{}, err
	}
	// The header is a key like command_id, and meets the same rules
	// before it reaches the inbox table.
	if err := ValidKey("Nats-Msg-Id", m.Header.Get("Nats-Msg-Id")); err != nil {
		return Command[T]{}, err
	}
	c := Command[T]{Body: body, Key: m.CommandKey(body.commandID(), envID), Hash: CommandHash(body)}
	if m.Stream != "" {
		c.Ref = m.Stream + ":" + strconv.FormatUint(m.Sequence, 10)
	}
	m.ID, m.Key, m.KeyName = c.Key, body.key(), keyNames[m.Subject]
	return c, nil
}

// keyNames maps each event's CloudEvents type and each command's subject
// to what its key is, as a log attribute ("order_id", "sku"): the
// placeholder of its subject pattern ("orders.placed.<order-id>"), or for
// a command the field its key comes from.
var keyNames = func() map[string]string {
	names := map[string]string{
		SubjectPlaceOrder:  "order_id",
		SubjectCancelOrder: "order_id",
		SubjectRestock:     "sku",
	}
	for _, t := range registry {
		if t.Kind != KindEvent {
			continue
		}
		if i := strings.LastIndex(t.Subject, ".<"); i >= 0 {
			names[t.CloudEventsType] = strings.ReplaceAll(strings.Trim(t.Subject[i+1:], "<>"), "-", "_")
		}
	}
	return names
}()
