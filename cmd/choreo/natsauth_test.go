package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/natstest"
)

// violations connects to c's server as the user whose credentials file is
// creds ("": anonymously) and returns the connection with the permission
// violations the server reports to it.
func violations(t *testing.T, c *runningChoreo, creds string) (*nats.Conn, jetstream.JetStream, <-chan error) {
	t.Helper()
	errs := make(chan error, 100)
	opts := []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			errs <- err
		}
	})}
	if creds != "" {
		opt, err := natsauth.CredentialsOption(creds)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, opt)
	}
	nc, js := natstest.Connect(t, c.natsURL, opts...)
	return nc, js, errs
}

// refused publishes subject on nc and fails the test unless the server
// answers with a permission violation naming it.
func refused(t *testing.T, nc *nats.Conn, errs <-chan error, subject string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), `"`+subject+`"`) {
			t.Errorf("publish %s: violation for another subject: %v", subject, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("publish %s: the server did not refuse it", subject)
	}
}

// Each service publishes only its own subjects, and nobody but a client or
// the operator sends commands; an anonymous client places orders and reads
// the streams but cannot forge an event — the forged capture is refused,
// the publisher sees why, and the order stays as it was.
func TestNATSPermissions(t *testing.T) {
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	creds := embeddedCredsDir(c.dataDir)
	id := events.NewID()

	t.Run("orders publishes only its subjects", func(t *testing.T) {
		nc, _, errs := violations(t, c, natsauth.KeyFile(creds, catalog.Orders))
		for _, subject := range []string{"inventory.reserved." + id, "payments.captured." + id, "notifications.sent." + id,
			"cmd.orders.place", "dlq.payments.x", "schedules.payments.x"} {
			refused(t, nc, errs, subject)
		}
	})
	t.Run("orders receives only replies and its requests", func(t *testing.T) {
		nc, _, errs := violations(t, c, natsauth.KeyFile(creds, catalog.Orders))
		if _, err := nc.SubscribeSync("payments.>"); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), `Subscription to "payments.>"`) {
				t.Errorf("violation for another subscription: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("orders subscribed to payments.> unrefused")
		}
	})
	t.Run("no service sends commands", func(t *testing.T) {
		for _, s := range catalog.Services {
			nc, _, errs := violations(t, c, natsauth.KeyFile(creds, s))
			refused(t, nc, errs, catalog.SubjectRestock)
		}
	})
	t.Run("no service touches another's consumer", func(t *testing.T) {
		nc, _, errs := violations(t, c, natsauth.KeyFile(creds, catalog.Payments))
		refused(t, nc, errs, "$JS.API.CONSUMER.MSG.NEXT."+catalog.StreamCommands+"."+catalog.Orders)
		refused(t, nc, errs, "$JS.API.STREAM.DELETE."+catalog.StreamPayments)
	})

	t.Run("anonymous places an order and cannot forge its capture", func(t *testing.T) {
		nc, js, errs := violations(t, c, "")
		_, op := c.operator(t)
		restock(t, ctx, js, "SKU-SEC", 5)
		// The provider is down: the order waits for its payment, the
		// moment a forged capture would confirm it.
		setProviderMode(t, c, "down", nil)
		if _, err := js.Publish(ctx, catalog.SubjectPlaceOrder, placeBody(id, "SKU-SEC", 1)); err != nil {
			t.Fatalf("anonymous place: %v", err)
		}
		waitFor(t, ctx, "stock reserved for "+id, func() (bool, string) {
			n, err := countSubjects(ctx, op, catalog.StreamInventory, "inventory.reserved."+id)
			return err == nil && n["inventory.reserved."+id] == 1, fmt.Sprint(n, err)
		})
		env := fmt.Sprintf(`{"specversion":"1.0","id":"%s","source":"/choreo/payments","type":"choreo.payments.captured.v1","subject":"%s","datacontenttype":"application/json","data":{"order_id":"%s","amount":{"amount":1,"currency":"EUR"}}}`, events.NewID(), id, id)
		// A JetStream publish gets no ack: the stream never sees it.
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := js.Publish(pctx, "payments.captured."+id, []byte(env))
		pcancel()
		if err == nil {
			t.Fatal("anonymous publish of payments.captured was acknowledged")
		}
		select {
		case v := <-errs:
			if !strings.Contains(v.Error(), "payments.captured."+id) {
				t.Errorf("violation for another subject: %v", v)
			}
		case <-time.After(30 * time.Second):
			t.Error("the server reported no permission violation to the publisher")
		}
		refused(t, nc, errs, "orders.cancelled."+id)
		refused(t, nc, errs, "orders.deadline."+id)
		if n, err := countSubjects(ctx, op, catalog.StreamPayments, "payments.captured."+id); err != nil || n["payments.captured."+id] != 0 {
			t.Errorf("PAYMENTS holds a capture of %s: %v %v", id, n, err)
		}
		// The order is unchanged: still waiting for its payment.
		if o := getOrder(t, c, id); o.Status != catalog.StatusPending {
			t.Errorf("order %s is %q after a forged capture, want PENDING", id, o.Status)
		}
		// Reading is allowed: the stream's last message, and a consumer
		// of its own (what nats stream view does).
		if _, err := js.Stream(ctx, catalog.StreamOrders); err != nil {
			t.Errorf("anonymous stream info: %v", err)
		}
		if _, err := js.OrderedConsumer(ctx, catalog.StreamOrders, jetstream.OrderedConsumerConfig{}); err != nil {
			t.Errorf("anonymous ordered consumer: %v", err)
		}
		// The provider comes back: the saga ends as usual.
		setProviderMode(t, c, "normal", nil)
		waitConfirmed(t, ctx, c, id)
	})
	t.Run("anonymous cannot take a service's messages", func(t *testing.T) {
		nc, _, errs := violations(t, c, "")
		refused(t, nc, errs, "$JS.API.CONSUMER.MSG.NEXT."+catalog.StreamCommands+"."+catalog.Orders)
		refused(t, nc, errs, "$JS.API.CONSUMER.DELETE."+catalog.StreamOrders+"."+catalog.Inventory)
		refused(t, nc, errs, "$JS.API.CONSUMER.CREATE."+catalog.StreamOrders+"."+catalog.Payments)
		refused(t, nc, errs, "$JS.ACK."+catalog.StreamCommands+"."+catalog.Orders+".1.1.1.1.0")
		refused(t, nc, errs, "$JS.API.STREAM.PURGE."+catalog.StreamOrders)
	})
}

// The operator tools find the operator's credentials of a choreo up
// started with the default data directory, with no flag: dlq retry
// republishes a dead-lettered event, which only the operator may. As an
// anonymous client the same retry is refused.
func TestToolsUseTheOperatorCredentialsByDefault(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	c := startUp(t, "--data", "./data")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	if _, err := os.Stat(filepath.Join(dir, "data", "nats", "creds", "operator.nk")); err != nil {
		t.Fatalf("choreo up wrote no operator credentials where the tools look: %v", err)
	}
	_, op := c.operator(t)
	// An event both inventory and payments dead-letter.
	if _, err := op.Publish(ctx, "orders.placed.sec-zzz", []byte(`{"specversion":"1.0"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "two dead letters", func() (bool, string) {
		out, _, _ := runTool(t, "dlq", "ls", "--nats-url", c.natsURL)
		return strings.Count(out, "orders.placed.sec-zzz") == 2, out
	})

	t.Run("anonymous retry is refused", func(t *testing.T) {
		// Elsewhere, the default credentials file does not exist.
		t.Chdir(t.TempDir())
		out, errOut, code := runTool(t, "dlq", "retry", "--all", "--nats-url", c.natsURL)
		if code == 0 || !strings.Contains(errOut, "Permissions Violation") || !strings.Contains(errOut, "--nats-creds") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("anonymous dlq retry of an event: exit %d, stderr %q; want one line saying what the server refused and naming --nats-creds\n%s", code, errOut, out)
		}
	})
	out, errOut, code := runTool(t, "dlq", "retry", "--all", "--nats-url", c.natsURL)
	if code != 0 {
		t.Fatalf("dlq retry with no credentials flag: exit %d\n%s%s", code, out, errOut)
	}
	// Republished once, dead-lettered again by each consumer.
	waitFor(t, ctx, "the retried event dead-lettered again", func() (bool, string) {
		n, err := countSubjects(ctx, op, catalog.StreamOrders, "orders.placed.sec-zzz")
		return err == nil && n["orders.placed.sec-zzz"] == 2, fmt.Sprint(n, err)
	})
	if out, errOut, code := runTool(t, "status", "--nats-url", c.natsURL); code != 0 {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}
}
