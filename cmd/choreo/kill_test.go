package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natstest"
)

// startProcess runs `choreo up` as a child process and returns it with its
// HTTP URL once it printed its addresses.
func startProcess(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	// No rate limit: the test polls for many orders from one address (see
	// startUp).
	cmd := exec.Command(bin, append([]string{"up", "--http", "127.0.0.1:0", "--provider-listen", "127.0.0.1:0", "--log-level", "warn", "--rate-limit", "0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	var printed strings.Builder
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if m := httpLine.FindStringSubmatch(printed.String()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, m[1]
		}
	}
	t.Fatalf("choreo up printed no HTTP address:\n%s", printed.String())
	return nil, ""
}

// The whole process is killed with SIGKILL in the middle of the flow — no
// drain, no flush — and started again on the same data: every saga
// completes, and no event is applied or published twice.
func TestKillDashNineMidFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it; skipped with -short")
	}
	bin := buildChoreo(t)
	srv := natstest.Start(t)
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	_, js := natstest.Connect(t, srv.URL)

	proc, httpURL := startProcess(t, bin, "--nats-url", srv.URL, "--data", data)
	c := &runningChoreo{httpURL: httpURL}
	restock(t, ctx, js, "SKU-K", 1000)

	const n = 150
	ids := make([]string, n)
	for i := range n {
		ids[i] = events.NewID()
		if _, err := js.PublishAsync(catalog.SubjectPlaceOrder, placeBody(ids[i], "SKU-K", 1)); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	// Kill once the saga is visibly under way but not finished.
	waitFor(t, ctx, "some orders confirmed", func() (bool, string) {
		got, err := countSubjects(ctx, js, catalog.StreamOrders, "orders.confirmed.>")
		return err == nil && len(got) >= 5, fmt.Sprintf("%d confirmed", len(got))
	})
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	confirmedAtKill, _ := countSubjects(ctx, js, catalog.StreamOrders, "orders.confirmed.>")
	t.Logf("killed with %d of %d orders confirmed", len(confirmedAtKill), n)

	_, httpURL = startProcess(t, bin, "--nats-url", srv.URL, "--data", data)
	c.httpURL = httpURL
	waitConfirmed(t, ctx, c, ids...)
	waitFor(t, ctx, "stock settled and everyone notified", func() (bool, string) {
		s := getStock(t, c, "SKU-K")
		sent, _ := countSubjects(ctx, js, catalog.StreamNotifications, "notifications.sent.>")
		return s.Sold == n && s.Reserved == 0 && s.Available == 1000-n && len(sent) == n,
			fmt.Sprintf("%+v, %d notified", s, len(sent))
	})
	for _, f := range []struct{ stream, filter string }{
		{catalog.StreamOrders, "orders.placed.>"},
		{catalog.StreamOrders, "orders.confirmed.>"},
		{catalog.StreamInventory, "inventory.reserved.>"},
		{catalog.StreamInventory, "inventory.committed.>"},
		{catalog.StreamPayments, "payments.captured.>"},
		{catalog.StreamNotifications, "notifications.sent.>"},
	} {
		got, err := countSubjects(ctx, js, f.stream, f.filter)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Errorf("%s: %d orders, want %d", f.filter, len(got), n)
		}
		for subj, k := range got {
			if k != 1 {
				t.Errorf("%s: %d messages, want exactly 1", subj, k)
			}
		}
	}
}
