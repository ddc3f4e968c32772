package events_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events"
)

// storedAt stands for the time a stream stored a message.
var storedAt = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// binaryHeader is a binary-mode CloudEvent's headers as the CloudEvents Go
// SDK writes them, with mut applied.
func binaryHeader(mut func(h nats.Header)) nats.Header {
	h := nats.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", "e-1")
	h.Set("ce-source", "/choreo/orders")
	h.Set("ce-type", "choreo.orders.placed.v1")
	h.Set("ce-subject", "order-1")
	h.Set("ce-datacontenttype", "application/json")
	h.Set("Nats-Msg-Id", "e-1")
	if mut != nil {
		mut(h)
	}
	return h
}

func TestDecodeMessageBinaryMode(t *testing.T) {
	body := []byte(`{"order_id":"order-1"}`)
	t.Run("AttributesFromHeadersDataFromBody", func(t *testing.T) {
		h := binaryHeader(func(h nats.Header) {
			h.Set("ce-time", "2026-11-30T10:00:00.5Z")
			h.Set("ce-dataschema", "https://choreo.dev/schemas/orders.placed.json")
			h.Set("ce-traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
			h.Set("ce-causationid", "c-1")
			h.Set("ce-partitionkey", "an extension choreo does not know")
		})
		env, err := events.DecodeMessage(h, body, storedAt)
		if err != nil {
			t.Fatalf("DecodeMessage: got %v, want nil", err)
		}
		want := events.Envelope{SpecVersion: "1.0", ID: "e-1", Source: "/choreo/orders", Type: "choreo.orders.placed.v1", Subject: "order-1",
			Time: time.Date(2026, 11, 30, 10, 0, 0, 5e8, time.UTC), DataContentType: "application/json",
			DataSchema: "https://choreo.dev/schemas/orders.placed.json", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			CausationID: "c-1", Data: body}
		if !reflect.DeepEqual(env, want) {
			t.Errorf("got %+v, want %+v", env, want)
		}
	})
	t.Run("NoTimeTakesTheStoredTime", func(t *testing.T) {
		env, err := events.DecodeMessage(binaryHeader(nil), body, storedAt)
		if err != nil {
			t.Fatalf("DecodeMessage: got %v, want nil", err)
		}
		if !env.Time.Equal(storedAt) {
			t.Errorf("time: got %s, want the stored time %s", env.Time, storedAt)
		}
	})
	t.Run("HeaderNamesAnyCase", func(t *testing.T) {
		h := nats.Header{"CE-SpecVersion": {"1.0"}, "Ce-Id": {"e-1"}, "CE-SOURCE": {"s"}, "ce-Type": {"t"}}
		env, err := events.DecodeMessage(h, body, storedAt)
		if err != nil || env.ID != "e-1" || env.Source != "s" || env.Type != "t" {
			t.Errorf("DecodeMessage: got %+v, %v; want id e-1, source s, type t", env, err)
		}
	})
	t.Run("ContentTypeHeaderWithoutCEDataContentType", func(t *testing.T) {
		h := binaryHeader(func(h nats.Header) {
			h.Del("ce-datacontenttype")
			h.Set("content-type", "application/json; charset=utf-8")
		})
		env, err := events.DecodeMessage(h, body, storedAt)
		if err != nil || env.DataContentType != "application/json; charset=utf-8" {
			t.Errorf("DecodeMessage: got datacontenttype %q, %v; want the Content-Type header's", env.DataContentType, err)
		}
	})
	t.Run("PercentEncodedAndQuotedValues", func(t *testing.T) {
		h := binaryHeader(func(h nats.Header) {
			h.Set("ce-id", "Euro%20%E2%82%AC%20%f0%9f%98%80")
			h.Set("ce-source", `"/a \"quoted\" source"`)
		})
		env, err := events.DecodeMessage(h, body, storedAt)
		if err != nil {
			t.Fatalf("DecodeMessage: got %v, want nil", err)
		}
		if env.ID != "Euro € 😀" || env.Source != `/a "quoted" source` {
			t.Errorf("got id %q, source %q; want %q, %q", env.ID, env.Source, "Euro € 😀", `/a "quoted" source`)
		}
	})
	rejects := []struct {
		name string
		h    nats.Header
		body string
		want []string
	}{
		{"MissingID", binaryHeader(func(h nats.Header) { h.Del("ce-id") }), string(body), []string{"ce-id is missing"}},
		{"MissingSpecVersionAndType", binaryHeader(func(h nats.Header) { h.Del("ce-specversion"); h.Del("ce-type") }), string(body),
			[]string{`ce-specversion is "", want "1.0"`, "ce-type is missing"}},
		{"EmptyBody", binaryHeader(nil), "", []string{"data is missing"}},
		{"BadTime", binaryHeader(func(h nats.Header) { h.Set("ce-time", "yesterday") }), string(body), []string{`ce-time is "yesterday", not an RFC 3339 time`}},
		{"BadPercentEncoding", binaryHeader(func(h nats.Header) { h.Set("ce-id", "100%") }), string(body), []string{"ce-id: bad percent-encoding"}},
		{"OverlongUTF8", binaryHeader(func(h nats.Header) { h.Set("ce-id", "%C0%A0") }), string(body), []string{"ce-id: percent-encoding", "is not UTF-8"}},
		{"NotJSON", binaryHeader(func(h nats.Header) { h.Set("ce-datacontenttype", "text/plain") }), "hello",
			[]string{`ce-datacontenttype is "text/plain"`, "data (the message body) is not JSON"}},
		{"NotJSONWithoutContentType", binaryHeader(func(h nats.Header) { h.Del("ce-datacontenttype") }), "{oops", []string{"data (the message body) is not JSON"}},
		{"InvalidUTF8Body", binaryHeader(nil), "{\"a\":\"\xff\"}", []string{"invalid UTF-8"}},
	}
	for _, tt := range rejects {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.DecodeMessage(tt.h, []byte(tt.body), storedAt)
			if !events.IsPermanent(err) {
				t.Fatalf("DecodeMessage: got %v, want a permanent error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestDecodeMessageStructuredMode(t *testing.T) {
	structured := `{"specversion":"1.0","id":"e-1","source":"s","type":"t","data":{"a":1}}`
	t.Run("NoTimeTakesTheStoredTime", func(t *testing.T) {
		env, err := events.DecodeMessage(nil, []byte(structured), storedAt)
		if err != nil || !env.Time.Equal(storedAt) {
			t.Errorf("DecodeMessage: got time %s, %v; want %s", env.Time, err, storedAt)
		}
	})
	t.Run("CloudEventsContentTypeWinsOverCEHeaders", func(t *testing.T) {
		// The binding: a message whose Content-Type is application/cloudevents
		// is structured, whatever else its headers say.
		h := nats.Header{"Content-Type": {"application/cloudevents+json; charset=UTF-8"}, "ce-id": {"other"}}
		env, err := events.DecodeMessage(h, []byte(structured), storedAt)
		if err != nil || env.ID != "e-1" {
			t.Errorf("DecodeMessage: got %+v, %v; want the body's event e-1", env, err)
		}
	})
	t.Run("DataContentTypes", func(t *testing.T) {
		for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8", "application/vnd.acme.order+json", "application/cloudevents+json"} {
			b := strings.Replace(structured, `"data"`, `"datacontenttype":"`+ct+`","data"`, 1)
			if _, err := events.DecodeMessage(nil, []byte(b), storedAt); err != nil {
				t.Errorf("datacontenttype %q: got %v, want nil", ct, err)
			}
		}
	})
	t.Run("DataBase64OfJSON", func(t *testing.T) {
		b := `{"specversion":"1.0","id":"e-1","source":"s","type":"t","datacontenttype":"application/json","data_base64":"eyJhIjoxfQ=="}`
		env, err := events.DecodeMessage(nil, []byte(b), storedAt)
		if err != nil || string(env.Data) != `{"a":1}` {
			t.Errorf("DecodeMessage: got data %s, %v; want {\"a\":1}", env.Data, err)
		}
	})
	t.Run("AMessageWithOtherHeadersIsStructured", func(t *testing.T) {
		h := nats.Header{"Nats-Msg-Id": {"e-1"}, "traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
		if _, err := events.DecodeMessage(h, []byte(structured), storedAt); err != nil {
			t.Errorf("DecodeMessage: got %v, want nil", err)
		}
		if events.CarriesCloudEvent(h, []byte(`{"sku":"SKU-1"}`)) {
			t.Error("CarriesCloudEvent of a bare body: got true, want false")
		}
		if !events.CarriesCloudEvent(binaryHeader(nil), []byte(`{"sku":"SKU-1"}`)) {
			t.Error("CarriesCloudEvent of a binary-mode message: got false, want true")
		}
	})
}

// FuzzDecodeMessage: binary-mode decoding never panics, fails only with
// Permanent errors, and accepts only events that validate.
func FuzzDecodeMessage(f *testing.F) {
	f.Add("1.0", "e-1", "/choreo/orders", "t", "2026-11-30T10:00:00Z", "application/json", []byte(`{"a":1}`))
	f.Add("1.0", "e-1", "s", "t", "", "application/json; charset=utf-8", []byte(`{}`))
	f.Add("1.0", "", "s", "t", "", "", []byte(`{}`))
	f.Add("1.0", "%C0%A0", "\"q\\\"\"", "t", "yesterday", "text/plain", []byte("x"))
	f.Add("1.0", "e%", "s", "t", "", "application/json;;", []byte("\xff"))
	f.Add("0.3", "e\r\n", "s", "t", "0001-01-01T00:00:00Z", "application/x+json; charset=latin1", []byte(`null`))
	f.Fuzz(func(t *testing.T, specversion, id, source, typ, at, contentType string, body []byte) {
		h := nats.Header{"ce-specversion": {specversion}, "ce-id": {id}, "ce-source": {source}, "ce-type": {typ}, "ce-datacontenttype": {contentType}}
		if at != "" {
			h.Set("ce-time", at)
		}
		env, err := events.DecodeMessage(h, body, storedAt)
		if err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("DecodeMessage: got non-permanent error %v", err)
			}
			return
		}
		if err := env.Validate(); err != nil {
			t.Fatalf("DecodeMessage accepted an envelope that does not validate: %v", err)
		}
		if _, err := events.Encode(env); err != nil && events.KindOf(err) != events.KindPermanent {
			t.Fatalf("Encode of a decoded binary event: %v", err)
		}
	})
}
