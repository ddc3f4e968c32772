package events_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/choreo-dev/choreo/events"
)

func validEnvelope() events.Envelope {
	return events.Envelope{
		SpecVersion: events.SpecVersion,
		ID:          "0193a5c2-7c1e-7000-8000-000000000001",
		Source:      "choreo/orders",
		Type:        "choreo.orders.placed.v1",
		Subject:     "order-1",
		Time:        time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.UTC),
		Data:        json.RawMessage(`{"order_id":"order-1","total":1299}`),
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	in := validEnvelope()
	b, err := events.Encode(in)
	if err != nil {
		t.Fatalf("Encode: got error %v, want nil", err)
	}
	out, err := events.Decode(b)
	if err != nil {
		t.Fatalf("Decode(%s): got error %v, want nil", b, err)
	}
	if out.DataContentType != events.ContentTypeJSON {
		t.Errorf("datacontenttype: got %q, want %q (Encode sets the default)", out.DataContentType, events.ContentTypeJSON)
	}
	if !out.Time.Equal(in.Time) {
		t.Errorf("time: got %s, want %s", out.Time, in.Time)
	}
	if !bytes.Equal(out.Data, in.Data) {
		t.Errorf("data: got %s, want %s", out.Data, in.Data)
	}
	type attrs struct{ specVersion, id, source, typ, subject string }
	got := attrs{out.SpecVersion, out.ID, out.Source, out.Type, out.Subject}
	want := attrs{in.SpecVersion, in.ID, in.Source, in.Type, in.Subject}
	if got != want {
		t.Errorf("round trip attributes: got %+v, want %+v", got, want)
	}
}

func TestEncodeWireFormat(t *testing.T) {
	b, err := events.Encode(validEnvelope())
	if err != nil {
		t.Fatalf("Encode: got error %v, want nil", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	for _, attr := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"} {
		if _, ok := m[attr]; !ok {
			t.Errorf("attribute %q: got absent, want present in %s", attr, b)
		}
	}
	if got, want := m["time"], "2025-03-01T12:30:00.123456789Z"; got != want {
		t.Errorf("time: got %v, want %v (RFC 3339)", got, want)
	}
	if _, ok := m["data"].(map[string]any); !ok {
		t.Errorf("data: got %T, want a JSON object embedded as is (structured mode)", m["data"])
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	e := validEnvelope()
	e.ID = ""
	if _, err := events.Encode(e); !events.IsPermanent(err) || !strings.Contains(err.Error(), "id is missing") {
		t.Errorf("Encode without id: got %v, want a permanent error naming the id", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	base := func(mut func(m map[string]any)) []byte {
		m := map[string]any{
			"specversion": "1.0",
			"id":          "e-1",
			"source":      "choreo/test",
			"type":        "choreo.test.v1",
			"time":        "2025-03-01T12:30:00Z",
			"data":        map[string]any{"a": 1},
		}
		mut(m)
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		return b
	}
	tests := []struct {
		name  string
		input []byte
		want  []string // substrings of the error message
	}{
		{"MalformedJSON", []byte(`{"specversion":"1.0",`), []string{"malformed cloudevent"}},
		{"NotAnObject", []byte(`[1,2,3]`), []string{"malformed cloudevent"}},
		{"TrailingGarbage", append(base(func(map[string]any) {}), []byte(` x`)...), []string{"malformed cloudevent"}},
		{"Empty", []byte(``), []string{"malformed cloudevent"}},
		{"Null", []byte(`null`), []string{"id is missing", "source is missing", "type is missing", "data is missing"}},
		{"MissingID", base(func(m map[string]any) { delete(m, "id") }), []string{"id is missing"}},
		{"MissingSource", base(func(m map[string]any) { delete(m, "source") }), []string{"source is missing"}},
		{"MissingType", base(func(m map[string]any) { delete(m, "type") }), []string{"type is missing"}},
		{"MalformedTime", base(func(m map[string]any) { m["time"] = "yesterday" }), []string{"malformed cloudevent"}},
		{"MissingData", base(func(m map[string]any) { delete(m, "data") }), []string{"data is missing"}},
		{"NullData", base(func(m map[string]any) { m["data"] = nil }), []string{"data is missing"}},
		{"WrongSpecVersion", base(func(m map[string]any) { m["specversion"] = "0.3" }), []string{`specversion is "0.3", want "1.0"`}},
		{"MissingSpecVersion", base(func(m map[string]any) { delete(m, "specversion") }), []string{`specversion is ""`}},
		{"WrongContentType", base(func(m map[string]any) { m["datacontenttype"] = "text/xml" }), []string{`datacontenttype is "text/xml"`}},
		{"JSONInAnotherCharset", base(func(m map[string]any) { m["datacontenttype"] = "application/json; charset=latin1" }), []string{`has charset "latin1", want utf-8`}},
		{"NotAMediaType", base(func(m map[string]any) { m["datacontenttype"] = "application/json;;" }), []string{"is not a media type"}},
		{"RelativeDataSchema", base(func(m map[string]any) { m["dataschema"] = "schemas/x.json" }), []string{`dataschema is "schemas/x.json", want an absolute URI`}},
		{"DataAndDataBase64", base(func(m map[string]any) { m["data_base64"] = "e30=" }), []string{"data and data_base64 are both set"}},
		{"DataBase64NotBase64", base(func(m map[string]any) { delete(m, "data"); m["data_base64"] = "{}" }), []string{"data_base64 is not base64"}},
		{"DataBase64NotJSON", base(func(m map[string]any) { delete(m, "data"); m["data_base64"] = "aGVsbG8=" }), []string{"data_base64 is not JSON"}},
		{"SeveralProblemsAtOnce", base(func(m map[string]any) { delete(m, "id"); delete(m, "type") }), []string{"id is missing", "type is missing"}},
		// Two values for one attribute: which one a consumer sees must not
		// depend on its JSON library, so neither is taken.
		{"DuplicateAttribute", []byte(`{"specversion":"1.0","id":"e-1","id":"e-2","source":"s","type":"t","data":{}}`), []string{"malformed cloudevent", "duplicate"}},
		// CloudEvents attribute names are lower-case; "ID" is another
		// (extension) attribute, not the id.
		{"AttributeNameInAnotherCase", []byte(`{"specversion":"1.0","ID":"e-1","source":"s","type":"t","data":{}}`), []string{"id is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Decode(tt.input)
			if err == nil {
				t.Fatalf("Decode(%s): got nil error, want one", tt.input)
			}
			if !events.IsPermanent(err) {
				t.Errorf("IsPermanent(%v): got false, want true (the same bytes never decode on a retry)", err)
			}
			if got := events.KindOf(err); got != events.KindPermanent {
				t.Errorf("KindOf(%v): got %s, want %s", err, got, events.KindPermanent)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error message: got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDecodeAcceptsUnknownAttributes(t *testing.T) {
	// CloudEvents extensions are attributes we do not know; they must not
	// make an event undecodable.
	b := []byte(`{"specversion":"1.0","id":"e-1","source":"s","type":"t","time":"2025-03-01T12:30:00Z","data":{},"partitionkey":"x"}`)
	if _, err := events.Decode(b); err != nil {
		t.Errorf("Decode with an extension attribute: got %v, want nil", err)
	}
}

func TestDecodeData(t *testing.T) {
	type payload struct {
		OrderID  string `json:"order_id"`
		Quantity int    `json:"quantity"`
	}
	t.Run("Valid", func(t *testing.T) {
		var p payload
		if err := events.DecodeData([]byte(" {\"order_id\":\"o-1\",\"quantity\":2}\n"), &p); err != nil {
			t.Fatalf("DecodeData: got %v, want nil", err)
		}
		if want := (payload{OrderID: "o-1", Quantity: 2}); p != want {
			t.Errorf("DecodeData: got %+v, want %+v", p, want)
		}
	})
	rejects := []struct {
		name, input, want string
	}{
		{"UnknownField", `{"order_id":"o-1","quantity":2,"qty":3}`, `unknown field "qty"`},
		{"FieldNameInAnotherCase", `{"Order_ID":"o-1"}`, `unknown field "Order_ID"`},
		{"DuplicateField", `{"order_id":"o-1","quantity":2,"quantity":3}`, "duplicate"},
		{"TrailingValue", `{"order_id":"o-1"} {"order_id":"o-2"}`, "trailing content"},
		{"TrailingGarbage", `{"order_id":"o-1"} garbage`, "trailing content"},
		{"TrailingCloseBrace", `{"order_id":"o-1"}}`, "trailing content"},
		{"TrailingCloseBracket", `{"order_id":"o-1"}]`, "trailing content"},
		{"WrongType", `{"quantity":"two"}`, "malformed data"},
		{"WrongTypeBeforeTrailingContent", `{"quantity":"two"} x`, "cannot unmarshal"},
		{"Truncated", `{"order_id":`, "malformed data"},
		{"Empty", ``, "malformed data"},
	}
	for _, tt := range rejects {
		t.Run(tt.name, func(t *testing.T) {
			var p payload
			err := events.DecodeData([]byte(tt.input), &p)
			if err == nil {
				t.Fatalf("DecodeData(%s): got nil error, want one containing %q", tt.input, tt.want)
			}
			if !events.IsPermanent(err) {
				t.Errorf("IsPermanent(%v): got false, want true", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error message: got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLooksLikeCloudEvent(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"specversion":"1.0","data":{}}`, true},
		{`{"specversion":""}`, true},
		{`{"order_id":"o-1"}`, false},
		{`{"specversion":null}`, false},
		{`not json`, false},
		{`[]`, false},
		// Still a CloudEvent, whose decoding then says what is wrong with
		// it, not a bare command with unknown fields.
		{`{"specversion":"1.0","id":"e-1","id":"e-2","data":{}}`, true},
	}
	for _, tt := range tests {
		if got := events.LooksLikeCloudEvent([]byte(tt.in)); got != tt.want {
			t.Errorf("LooksLikeCloudEvent(%s): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestOutgoingEnvelope(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	o := events.Outgoing{
		ID:      "e-1",
		Subject: "orders.placed.order-1",
		Type:    "choreo.orders.placed.v1",
		Source:  "choreo/orders",
		Time:    at,
		Data:    map[string]int{"total": 1299},
	}
	env, err := o.Envelope()
	if err != nil {
		t.Fatalf("Envelope: got %v, want nil", err)
	}
	if err := env.Validate(); err != nil {
		t.Errorf("Validate: got %v, want nil", err)
	}
	if env.Subject != "order-1" {
		t.Errorf("subject attribute: got %q, want %q (the key of the NATS subject)", env.Subject, "order-1")
	}
	if !env.Time.Equal(at) || env.Time.Location() != time.UTC {
		t.Errorf("time: got %s, want %s in UTC", env.Time, at.UTC())
	}
	if string(env.Data) != `{"total":1299}` {
		t.Errorf("data: got %s, want %s", env.Data, `{"total":1299}`)
	}

	o.Time = time.Time{}
	env, err = o.Envelope()
	if err != nil || env.Time.IsZero() {
		t.Errorf("Envelope without a time: got time %s, err %v; want now and nil", env.Time, err)
	}

	o.Data = make(chan int)
	if _, err := o.Envelope(); err == nil {
		t.Error("Envelope with unmarshallable data: got nil error, want one")
	}
}

func TestIDs(t *testing.T) {
	a, b := events.NewID(), events.NewID()
	if a == b || len(a) != 36 {
		t.Errorf("NewID: got %q and %q, want two distinct UUIDs", a, b)
	}
	if got, want := events.DerivedID("cause-1", "reserved"), events.DerivedID("cause-1", "reserved"); got != want {
		t.Errorf("DerivedID twice: got %q, want %q (stable)", got, want)
	}
	if events.DerivedID("cause-1", "reserved") == events.DerivedID("cause-1", "released") {
		t.Error("DerivedID for two kinds: got the same id, want distinct ids")
	}
	if events.DerivedID("cause-1", "reserved") == events.DerivedID("cause-2", "reserved") {
		t.Error("DerivedID for two causes: got the same id, want distinct ids")
	}
	// Any cause but a UUID v7: a name-based UUID v5, as it always was.
	if got, want := events.DerivedID("cause-1", "reserved"), uuid.NewSHA1(uuid.NameSpaceOID, []byte("cause-1/reserved")).String(); got != want {
		t.Errorf("DerivedID of a plain cause: got %s, want the UUID v5 %s", got, want)
	}
}

// Ids derived from a time-ordered cause keep its time: they sort as their
// causes do (the stores' inbox and outbox keys then grow at one end), and
// stay stable, distinct and valid UUIDs.
func TestDerivedIDsKeepTheirCauseOrder(t *testing.T) {
	var causes []string
	for range 50 {
		causes = append(causes, events.NewID())
		time.Sleep(time.Millisecond) // a later millisecond: v7 orders by it
	}
	seen := map[string]bool{}
	var prev string
	for i, cause := range causes {
		for _, kind := range []string{"orders.placed", "orders.confirmed", "inventory.reserved"} {
			id := events.DerivedID(cause, kind)
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 8 || u.Variant() != uuid.RFC4122 {
				t.Fatalf("DerivedID(%s, %s) = %s: want a UUID v8 of the RFC 9562 variant (err %v)", cause, kind, id, err)
			}
			if id[:13] != cause[:13] {
				t.Errorf("DerivedID(%s, %s) = %s: want the cause's timestamp %s first", cause, kind, id, cause[:13])
			}
			if id != events.DerivedID(cause, kind) {
				t.Errorf("DerivedID(%s, %s) is not stable", cause, kind)
			}
			if seen[id] {
				t.Errorf("DerivedID(%s, %s) = %s twice", cause, kind, id)
			}
			seen[id] = true
			if i > 0 && id[:13] <= prev[:13] {
				t.Errorf("DerivedID(%s, …) = %s sorts before an id of the earlier cause (%s)", cause, id, prev)
			}
		}
		prev = events.DerivedID(cause, "orders.placed")
	}
	if len(seen) != 3*len(causes) {
		t.Errorf("distinct ids: got %d, want %d", len(seen), 3*len(causes))
	}
}

// FuzzDecode checks that Decode never panics, that whatever it accepts is
// valid, and that it survives an Encode/Decode round trip. Plain `go test`
// runs the seeds only.
func FuzzDecode(f *testing.F) {
	good, err := events.Encode(validEnvelope())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2025-03-01T12:30:00Z","data":{}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2025-03-01T12:30:00+02:00","data":[1,"x",null]}`))
	f.Add([]byte(`{"specversion":"0.3"}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`{"time":"0000-01-01T00:00:00Z"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Add([]byte(`"\ud800"`))
	f.Add([]byte{})
	for _, s := range envelopeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = events.LooksLikeCloudEvent(b)
		env, err := events.Decode(b)
		if err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("Decode(%q): got non-permanent error %v, want every error permanent", b, err)
			}
			return
		}
		// Never decoded with replacement characters, never an id that
		// cannot be an inbox key or a Nats-Msg-Id header.
		if !utf8.Valid(b) {
			t.Fatalf("Decode accepted invalid UTF-8 %q", b)
		}
		if len(env.ID) > events.MaxEnvelopeIDBytes || strings.ContainsAny(env.ID, "\x00\r\n") {
			t.Fatalf("Decode accepted id %q", env.ID)
		}
		if err := env.Validate(); err != nil {
			t.Fatalf("Decode(%q) accepted an envelope that does not validate: %v", b, err)
		}
		again, err := events.Encode(env)
		if err != nil {
			// A time outside what JSON can encode is the only known way to
			// get here; it must still be reported as an error, not a panic.
			return
		}
		env2, err := events.Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))): got %v, want nil", b, err)
		}
		if env2.ID != env.ID || env2.Type != env.Type || env2.Source != env.Source || !env2.Time.Equal(env.Time) {
			t.Fatalf("round trip: got %+v, want %+v", env2, env)
		}
	})
}

// TestEncodeWithoutTimeOmitsIt: time is optional in CloudEvents; an event
// that has none encodes without one, not as the year 1.
func TestEncodeWithoutTimeOmitsIt(t *testing.T) {
	e := validEnvelope()
	e.Time = time.Time{}
	b, err := events.Encode(e)
	if err != nil {
		t.Fatalf("Encode: got %v, want nil", err)
	}
	if strings.Contains(string(b), `"time"`) {
		t.Errorf("Encode without a time: got %s, want no time attribute", b)
	}
}
