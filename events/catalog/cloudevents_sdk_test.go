package catalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
)

// sdkMessage is the NATS message the CloudEvents Go SDK's JetStream
// binding publishes for ev: binary mode (ce- headers, data as the body),
// its default, or structured mode.
func sdkMessage(t *testing.T, subject string, ev cloudevents.Event, structured bool) *consumer.Message {
	t.Helper()
	ctx := binding.WithForceBinary(context.Background())
	if structured {
		ctx = binding.WithForceStructured(context.Background())
	}
	var body bytes.Buffer
	header, err := cejs.WriteMsg(ctx, binding.ToMessage(&ev), &body)
	if err != nil {
		t.Fatal(err)
	}
	return &consumer.Message{Subject: subject, Header: header, Data: body.Bytes(), Stream: "S", Sequence: 1, Time: storedAt}
}

// storedAt stands for the time the stream stored a message.
var storedAt = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// sdkEvent is an event as a CloudEvents SDK user builds it: no time, data
// set from a Go value (JSON) or from bytes (data_base64 in structured mode).
func sdkEvent(t *testing.T, typ, source, contentType string, data any) cloudevents.Event {
	t.Helper()
	ev := cloudevents.NewEvent()
	ev.SetID("sdk-1")
	ev.SetType(typ)
	ev.SetSource(source)
	if err := ev.SetData(contentType, data); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestSDKMessagesDecode: what the SDK sends, in either content mode, with
// no time, a charset or data as base64, decodes as a command or an event.
func TestSDKMessagesDecode(t *testing.T) {
	restock := catalog.Restock{CommandID: "r-1", SKU: "SKU-1", Quantity: 3}
	placed := catalog.PaymentCaptured{OrderID: "o-1", PaymentID: "p-1", Amount: catalog.Money{Amount: 5, Currency: "EUR"}}
	for _, mode := range []struct {
		name       string
		structured bool
	}{{"Binary", false}, {"Structured", true}} {
		for _, ct := range []string{"application/json", "application/json; charset=utf-8"} {
			for _, asBytes := range []bool{false, true} {
				name := mode.name + "/" + ct
				restockData, eventData := any(restock), any(placed)
				if asBytes {
					name += "/bytes"
					restockData, eventData = mustJSON(t, restock), mustJSON(t, placed)
				}
				t.Run(name, func(t *testing.T) {
					m := sdkMessage(t, catalog.SubjectRestock, sdkEvent(t, "com.example.restock", "/warehouse", ct, restockData), mode.structured)
					if mode.structured && asBytes && !strings.Contains(string(m.Data), `"data_base64"`) {
						t.Fatalf("the SDK sent no data_base64: %s", m.Data)
					}
					cmd, err := catalog.CommandOf[catalog.Restock](m)
					if err != nil {
						t.Fatalf("CommandOf: %v", err)
					}
					if want := catalog.SubjectRestock + ":r-1"; cmd.Body != restock || cmd.Key != want {
						t.Errorf("command %+v key %q, want %+v key %q", cmd.Body, cmd.Key, restock, want)
					}

					m = sdkMessage(t, "payments.captured.o-1", sdkEvent(t, catalog.TypePaymentCaptured, catalog.Source(catalog.Payments), ct, eventData), mode.structured)
					ev, err := catalog.EventOf[catalog.PaymentCaptured](catalog.TypePaymentCaptured)(m)
					if err != nil {
						t.Fatalf("EventOf: %v", err)
					}
					if ev.Data != placed || ev.Envelope.ID != "sdk-1" || !ev.Envelope.Time.Equal(storedAt) {
						t.Errorf("event %+v at %s, want %+v at the stored time %s", ev.Data, ev.Envelope.Time, placed, storedAt)
					}
				})
			}
		}
	}
	t.Run("BinaryModeWithoutIDIsRefusedSayingSo", func(t *testing.T) {
		m := sdkMessage(t, catalog.SubjectRestock, sdkEvent(t, "com.example.restock", "/warehouse", "application/json", restock), false)
		m.Header.Del("ce-id")
		_, err := catalog.CommandOf[catalog.Restock](m)
		if !events.IsPermanent(err) || !strings.Contains(err.Error(), "ce-id is missing") {
			t.Errorf("CommandOf: got %v, want a permanent error saying ce-id is missing", err)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
