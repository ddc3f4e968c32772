package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/history"
	"github.com/choreo-dev/choreo/events/natstest"
)

// TestCloudEventsSDKBothWays is a user of the official CloudEvents Go SDK
// and its NATS JetStream binding against choreo up: commands sent the
// SDK's way take effect — binary mode (its default), structured mode,
// without time, with a charset in datacontenttype, with data_base64 — a
// binary-mode message without ce-id is dead-lettered saying so, and every
// event of the saga reads back through the SDK's receiver, valid, with
// its dataschema set.
func TestCloudEventsSDKBothWays(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	// The anonymous client of choreo up: it may send commands and read.
	nc, js := natstest.Connect(t, c.natsURL)

	send := func(t *testing.T, subject string, ev cloudevents.Event, structured bool) {
		t.Helper()
		sender, err := cejs.NewSenderFromConn(nc, catalog.StreamCommands, subject, nil)
		if err != nil {
			t.Fatal(err)
		}
		client, err := cloudevents.NewClient(sender)
		if err != nil {
			t.Fatal(err)
		}
		sendCtx := ctx
		if structured {
			sendCtx = binding.WithForceStructured(ctx)
		}
		if res := client.Send(sendCtx, ev); !cloudevents.IsACK(res) {
			t.Fatalf("SDK send on %s: %v", subject, res)
		}
	}
	// command is a command as an SDK user builds one: an id, a type and a
	// source, no time, and the command as data.
	command := func(t *testing.T, id, contentType string, data any) cloudevents.Event {
		t.Helper()
		ev := cloudevents.NewEvent()
		ev.SetID(id)
		ev.SetType("com.example.warehouse.command")
		ev.SetSource("/warehouse")
		if err := ev.SetData(contentType, data); err != nil {
			t.Fatal(err)
		}
		return ev
	}

	t.Run("BinaryModeRestock", func(t *testing.T) {
		send(t, catalog.SubjectRestock, command(t, "ce-restock-1", cloudevents.ApplicationJSON,
			catalog.Restock{CommandID: "ce-restock-1", SKU: "SKU-CE1", Quantity: 5}), false)
		wantStock(t, ctx, c, "SKU-CE1", 5, 0, 0)
	})
	t.Run("StructuredModeDataBase64Restock", func(t *testing.T) {
		data, err := json.Marshal(catalog.Restock{CommandID: "ce-restock-2", SKU: "SKU-CE2", Quantity: 7})
		if err != nil {
			t.Fatal(err)
		}
		// The SDK sends bytes as data_base64.
		send(t, catalog.SubjectRestock, command(t, "ce-restock-2", cloudevents.ApplicationJSON, data), true)
		wantStock(t, ctx, c, "SKU-CE2", 7, 0, 0)
	})
	t.Run("ReplayReadsBinaryMode", func(t *testing.T) {
		stdout, stderr, code := runTool(t, "replay", "--nats-url", c.natsURL, "--stream", catalog.StreamCommands, "--subject", catalog.SubjectRestock, "--json")
		if code != 0 {
			t.Fatalf("choreo replay: exit %d: %s", code, stderr)
		}
		var rows []replayed
		for line := range strings.Lines(stdout) {
			var r replayed
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("replay line %q: %v", line, err)
			}
			rows = append(rows, r)
		}
		if !slices.ContainsFunc(rows, func(r replayed) bool {
			return r.ID == "ce-restock-1" && r.Type == "com.example.warehouse.command"
		}) {
			t.Errorf("replay shows no binary-mode restock ce-restock-1 of type com.example.warehouse.command:\n%s", stdout)
		}
	})
	orderID := events.NewID()
	t.Run("StructuredModeCharsetPlaceOrder", func(t *testing.T) {
		send(t, catalog.SubjectPlaceOrder, command(t, "ce-place-1", "application/json; charset=utf-8",
			catalog.PlaceOrder{OrderID: orderID, CustomerID: "cust-ce", Currency: "EUR",
				Items: []catalog.LineItem{{SKU: "SKU-CE1", Quantity: 2, UnitPrice: 1000}}}), true)
		wantOrder(t, waitFinal(t, ctx, c, orderID), catalog.StatusConfirmed, "")
		wantStock(t, ctx, c, "SKU-CE1", 3, 0, 2)
	})
	t.Run("BinaryModeWithoutIDIsDeadLettered", func(t *testing.T) {
		// The SDK refuses to send an event without an id, so this is
		// the message a hand-rolled binary-mode producer would send.
		msg := nats.NewMsg(catalog.SubjectCancelOrder)
		msg.Header.Set("ce-specversion", "1.0")
		msg.Header.Set("ce-source", "/warehouse")
		msg.Header.Set("ce-type", "com.example.warehouse.command")
		msg.Data = []byte(`{"order_id":"` + orderID + `"}`)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		deadLetter(t, ctx, js, catalog.Orders, catalog.SubjectCancelOrder, "invalid cloudevent: ce-id is missing")
		wantOrder(t, getOrder(t, c, orderID), catalog.StatusConfirmed, "")
	})

	t.Run("SDKReceiverReadsEverySagaEvent", func(t *testing.T) {
		// The saga is over once the customer is notified.
		waitFor(t, ctx, "notifications.sent of "+orderID, func() (bool, string) {
			n, err := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent."+orderID)
			return err == nil && len(n) == 1, fmt.Sprint(n, err)
		})
		var types []string
		for _, stream := range []string{catalog.StreamOrders, catalog.StreamInventory, catalog.StreamPayments, catalog.StreamNotifications} {
			filter := "*.*." + orderID
			stored, err := countSubjects(ctx, js, stream, filter)
			if err != nil {
				t.Fatal(err)
			}
			var want int
			for _, n := range stored {
				want += int(n)
			}
			for _, ev := range receiveWithSDK(t, ctx, nc, stream, filter, want) {
				if err := ev.Validate(); err != nil {
					t.Errorf("%s %s: the SDK finds it invalid: %v", ev.Type(), ev.ID(), err)
				}
				if want := catalog.DataSchema(ev.Type()); want == "" || ev.DataSchema() != want {
					t.Errorf("%s %s: dataschema %q, want %q", ev.Type(), ev.ID(), ev.DataSchema(), want)
				}
				var data map[string]any
				if err := ev.DataAs(&data); err != nil || data["order_id"] != orderID {
					t.Errorf("%s %s: data %v (%v), want the order's", ev.Type(), ev.ID(), data, err)
				}
				types = append(types, ev.Type())
			}
		}
		for _, typ := range []string{catalog.TypeOrderPlaced, catalog.TypeStockReserved, catalog.TypePaymentCaptured,
			catalog.TypeOrderConfirmed, catalog.TypeReservationCommitted, catalog.TypeNotificationSent} {
			if !slices.Contains(types, typ) {
				t.Errorf("the SDK read no %s; it read %v", typ, types)
			}
		}
	})
}

// receiveWithSDK reads want events of stream on filter through the
// CloudEvents SDK's JetStream receiver and client, as an SDK user would.
func receiveWithSDK(t *testing.T, ctx context.Context, nc *nats.Conn, stream, filter string, want int) []cloudevents.Event {
	t.Helper()
	receiver, err := cejs.NewConsumerFromConn(nc, stream, filter, nil, []nats.SubOpt{nats.BindStream(stream), nats.DeliverAll()})
	if err != nil {
		t.Fatal(err)
	}
	client, err := cloudevents.NewClient(receiver)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []cloudevents.Event
	)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- client.StartReceiver(rctx, func(ev cloudevents.Event) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev)
		})
	}()
	waitFor(t, ctx, fmt.Sprintf("%d events of %s through the SDK", want, filter), func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= want, fmt.Sprintf("%d", len(got))
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("SDK receiver: %v", err)
	}
	if err := receiver.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestTraceReadsBinaryMode: choreo trace reads a binary-mode event and a
// binary-mode command as it reads structured ones, with the time the
// stream stored them when they carry none.
func TestTraceReadsBinaryMode(t *testing.T) {
	const orderID = "o-ce-1"
	stored := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	h := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"ev-1"}, "ce-source": {catalog.Source(catalog.Payments)},
		"ce-type": {catalog.TypePaymentCaptured}, "ce-causationid": {"cause-1"}, "ce-datacontenttype": {"application/json; charset=utf-8"}}
	row, ok := traceMakeRow(traceSource{stream: catalog.StreamPayments}, orderID, history.Message{Stream: catalog.StreamPayments, Sequence: 3,
		Subject: "payments.captured." + orderID, Time: stored, Header: h,
		Data: []byte(`{"order_id":"o-ce-1","payment_id":"p-1","amount":{"amount":2000,"currency":"EUR"}}`)})
	if !ok || row.Type != catalog.TypePaymentCaptured || row.ID != "ev-1" || row.CausationID != "cause-1" {
		t.Errorf("event row: got %+v, want %s ev-1 caused by cause-1", row, catalog.TypePaymentCaptured)
	}

	h = nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"cmd-1"}, "ce-source": {"/shop"}, "ce-type": {"com.example.cancel"}}
	row, ok = traceMakeRow(traceSource{stream: catalog.StreamCommands, byBody: true}, orderID, history.Message{Stream: catalog.StreamCommands, Sequence: 4,
		Subject: catalog.SubjectCancelOrder, Time: stored, Header: h, Data: []byte(`{"order_id":"o-ce-1"}`)})
	if !ok || row.Type != "command" || row.ID != "cmd-1" {
		t.Errorf("command row: got %+v, want a command with the ce-id cmd-1", row)
	}
}
