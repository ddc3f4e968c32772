package catalog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/consumer"
	"github.com/choreo-dev/choreo/events/streams"
)

func TestValidCurrency(t *testing.T) {
	for _, c := range []string{"EUR", "USD", "JPY", "GBP", "CHF"} {
		if !catalog.ValidCurrency(c) {
			t.Errorf("ValidCurrency(%q) = false, want true", c)
		}
	}
	for _, c := range []string{"", "eur", "EURO", "XXX", "ABC", "€"} {
		if catalog.ValidCurrency(c) {
			t.Errorf("ValidCurrency(%q) = true, want false", c)
		}
	}
}

func TestDecodeCommandAcceptsBareJSONAndCloudEvents(t *testing.T) {
	bare := `{"command_id":"r-1","sku":"SKU-1","quantity":5}`
	cmd, envID, err := catalog.DecodeCommand[catalog.Restock]([]byte(bare))
	if err != nil || cmd.SKU != "SKU-1" || cmd.Quantity != 5 || envID != "" {
		t.Fatalf("bare: got %+v, %q, %v", cmd, envID, err)
	}
	wrapped := `{"specversion":"1.0","id":"ce-1","source":"/warehouse","type":"restock","time":"2026-11-25T10:00:00Z","data":` + bare + `}`
	cmd, envID, err = catalog.DecodeCommand[catalog.Restock]([]byte(wrapped))
	if err != nil || cmd.SKU != "SKU-1" || envID != "ce-1" {
		t.Fatalf("cloudevent: got %+v, %q, %v", cmd, envID, err)
	}
}

func TestDecodeCommandRejectsBadInputPermanently(t *testing.T) {
	for name, body := range map[string]string{
		"malformed":        `{"sku":`,
		"unknown field":    `{"sku":"A","quantity":1,"qty":2}`,
		"negative":         `{"sku":"A","quantity":-1}`,
		"sku with a dot":   `{"sku":"A.B","quantity":1}`,
		"missing sku":      `{"quantity":1}`,
		"broken envelope":  `{"specversion":"1.0","data":{"sku":"A","quantity":1}}`,
		"float quantity":   `{"sku":"A","quantity":1.5}`,
		"trailing garbage": `{"sku":"A","quantity":1} x`,
	} {
		_, _, err := catalog.DecodeCommand[catalog.Restock]([]byte(body))
		if err == nil || !events.IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q spans lines; dead-letter reasons are one line", name, err)
		}
	}
}

func TestPlaceOrderReportsEveryProblemOnOneLine(t *testing.T) {
	err := catalog.PlaceOrder{Currency: "EURO", Items: []catalog.LineItem{{SKU: "A", Quantity: 0}, {SKU: "A", Quantity: 1}}}.Validate()
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	for _, want := range []string{"order_id is missing", "customer_id is missing", `currency "EURO"`, "items[0]: quantity 0", `items[1]: sku "A" appears on more than one line`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans lines", err)
	}
}

func TestDecodeEventChecksTypeAndTolerantData(t *testing.T) {
	out := events.Outgoing{ID: "e-1", Subject: "payments.captured.o-1", Type: catalog.TypePaymentCaptured, Source: "/test",
		Data: map[string]any{"order_id": "o-1", "payment_id": "p", "amount": map[string]any{"amount": 5, "currency": "EUR"}, "added_later": true}}
	env, err := out.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	body, err := events.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	_, e, err := catalog.DecodeEvent[catalog.PaymentCaptured](body, catalog.TypePaymentCaptured)
	if err != nil || e.OrderID != "o-1" || e.Amount.Amount != 5 {
		t.Fatalf("got %+v, %v; want the event, unknown data fields tolerated", e, err)
	}
	if _, _, err := catalog.DecodeEvent[catalog.PaymentCaptured](body, catalog.TypeOrderPlaced); !events.IsPermanent(err) {
		t.Errorf("wrong type: got %v, want a permanent error", err)
	}
}

func TestEveryStreamHasADistinctSubjectSpace(t *testing.T) {
	seen := map[string]string{}
	for _, s := range catalog.Streams {
		for _, subj := range s.Subjects {
			if other, ok := seen[subj]; ok {
				t.Errorf("%s and %s both capture %s", s.Name, other, subj)
			}
			seen[subj] = s.Name
		}
	}
	for _, svc := range catalog.Services {
		if _, ok := seen[svc+".>"]; !ok {
			t.Errorf("no stream captures %s.>", svc)
		}
	}
}

func TestStreamSpecsCarryTheRetention(t *testing.T) {
	r := catalog.Retention{
		Events: streams.Limits{MaxAge: time.Hour, MaxMsgs: 10},
		DLQ:    streams.Limits{MaxAge: 48 * time.Hour, MaxMsgs: 5},
	}
	specs := catalog.StreamSpecs(r)
	if len(specs) != len(catalog.Streams) {
		t.Fatalf("specs: got %d, want %d", len(specs), len(catalog.Streams))
	}
	for i, s := range specs {
		want := r.Events
		if s.Name == catalog.StreamDLQ {
			want = r.DLQ
		}
		if s.Limits != want || s.Name != catalog.Streams[i].Name {
			t.Errorf("%s: limits %+v, want %+v", s.Name, s.Limits, want)
		}
		if catalog.Streams[i].Limits != (streams.Limits{}) {
			t.Errorf("StreamSpecs changed catalog.Streams[%d]", i)
		}
	}
}

// An event is believed only when it says what its subject says: a forged
// payments.captured signed by another service, or one on order A's subject
// about order B, is dead-lettered (Permanent) before any handler sees it.
func TestEventOfChecksSourceAndSubject(t *testing.T) {
	event := func(source, orderID string) []byte {
		env, err := events.Outgoing{ID: "e-1", Subject: "payments.captured." + orderID, Type: catalog.TypePaymentCaptured, Source: source,
			Data: catalog.PaymentCaptured{OrderID: orderID, PaymentID: "p", Amount: catalog.Money{Amount: 5, Currency: "EUR"}}}.Envelope()
		if err != nil {
			t.Fatal(err)
		}
		b, err := events.Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	decode := catalog.EventOf[catalog.PaymentCaptured](catalog.TypePaymentCaptured)
	for _, tc := range []struct {
		name, subject string
		body          []byte
		wantErr       string
	}{
		{"from payments", "payments.captured.o-1", event(catalog.Source(catalog.Payments), "o-1"), ""},
		{"from a part of payments", "payments.captured.o-1", event(catalog.Source(catalog.Payments)+"/example", "o-1"), ""},
		{"from a look-alike", "payments.captured.o-1", event(catalog.Source(catalog.Payments)+"-fake", "o-1"), `source "/choreo/payments-fake"`},
		{"from another service", "payments.captured.o-1", event(catalog.Source(catalog.Orders), "o-1"), `source "/choreo/orders", want "/choreo/payments"`},
		{"from nowhere", "payments.captured.o-1", event("/attacker", "o-1"), `source "/attacker"`},
		{"about another order", "payments.captured.o-1", event(catalog.Source(catalog.Payments), "o-2"), `about order "o-2", not the subject's "o-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(&consumer.Message{Subject: tc.subject, Data: tc.body})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want the event", err)
			case tc.wantErr != "" && (!events.IsPermanent(err) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want a permanent error saying %s", err, tc.wantErr)
			}
		})
	}
}

// The default event streams stay under 32MiB: the NATS server then writes
// them in 4MiB blocks instead of 8MiB, and keeps two blocks of each busy
// stream in memory (the one it writes, the one it trims), so that choreo
// up's memory stays bounded and small (see DefaultRetention).
func TestDefaultRetentionFitsOneMachine(t *testing.T) {
	ev := catalog.DefaultRetention.Events
	if ev.MaxBytes <= 0 || ev.MaxBytes >= 32<<20 {
		t.Errorf("default stream max bytes %d, want above 0 and under 32MiB", ev.MaxBytes)
	}
	if ev.MaxMsgs <= 0 || ev.MaxAge <= 0 {
		t.Errorf("default stream limits %+v: want a count and an age limit too", ev)
	}
}
