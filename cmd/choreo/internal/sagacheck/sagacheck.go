// Package sagacheck checks PRODUCT.md's invariants on a quiet choreo from
// the outside, as a user would: through the services' HTTP APIs, the
// payment provider simulator's admin API, the JetStream streams, and each
// service's outbox. The in-process tests of cmd/choreo and the chaos test
// of separate processes share it, so both judge a run by the same rules.
package sagacheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Order is an order a test placed and what it did to it.
type Order struct {
	ID        string
	Customer  string
	SKU       string
	Qty       int64
	UnitPrice int64
	// CancelAsked: the customer asked to cancel it (over HTTP or NATS), so
	// it may end cancelled with reason customer_cancelled.
	CancelAsked bool
	// CancelAccepted: an HTTP cancel answered 200, so it must end cancelled.
	CancelAccepted bool
}

// Total is the order's amount in minor units.
func (o Order) Total() int64 { return o.Qty * o.UnitPrice }

// Declined reports whether the provider simulator declines the order's
// customer (its ids beginning with "decline"), so it can never be confirmed.
func (o Order) Declined() bool { return strings.HasPrefix(o.Customer, "decline") }

// System is a running choreo as the checker reads it. The URLs are base
// URLs (one process may serve them all, as choreo up does).
type System struct {
	OrdersURL, InventoryURL, PaymentsURL string
	// ProviderURL is the payment provider simulator, whose admin API says
	// what money really moved.
	ProviderURL string
	JS          jetstream.JetStream
	// Outbox returns the rows each service has not yet published.
	Outbox func(ctx context.Context) (map[string]int64, error)
	// Client is the HTTP client (nil: one with a 10 s timeout).
	Client *http.Client
}

// Report is the outcome of a check.
type Report struct {
	// Outcomes counts the orders by "confirmed" or their reason.
	Outcomes map[string]int
	// Violations lists every invariant broken, one sentence each.
	Violations []string
}

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

func (s System) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// OrderView is GET /orders/{id}.
type OrderView struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
}

// Final reports whether the order reached a final state.
func (o OrderView) Final() bool {
	return o.Status == catalog.StatusConfirmed || o.Status == catalog.StatusCancelled
}

// StockView is GET /inventory/{sku}.
type StockView struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
	Sold      int64  `json:"sold"`
}

// GetJSON decodes a 200 answer into v and returns the status code.
func GetJSON(ctx context.Context, client *http.Client, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %w", url, err)
		}
	}
	return resp.StatusCode, nil
}

// Order reads one order; a non-200 answer is reported as its status,
// "HTTP 404" for instance.
func (s System) Order(ctx context.Context, id string) (OrderView, error) {
	var o OrderView
	code, err := GetJSON(ctx, s.client(), s.OrdersURL+"/orders/"+id, &o)
	if err != nil {
		return o, err
	}
	if code != http.StatusOK {
		o.OrderID, o.Status = id, fmt.Sprintf("HTTP %d", code)
	}
	return o, nil
}

// Stock reads one SKU's stock.
func (s System) Stock(ctx context.Context, sku string) (StockView, error) {
	var v StockView
	code, err := GetJSON(ctx, s.client(), s.InventoryURL+"/inventory/"+sku, &v)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /inventory/%s: status %d", sku, code)
	}
	return v, err
}

// ProviderMoney is what the provider captured and refunded per
// idempotency key (an order id): the money that really moved.
func ProviderMoney(ctx context.Context, client *http.Client, providerURL string) (map[string][2]int64, error) {
	var states []struct {
		Key      string        `json:"key"`
		Captured catalog.Money `json:"captured"`
		Refunded catalog.Money `json:"refunded"`
	}
	code, err := GetJSON(ctx, client, providerURL+"/admin/captures", &states)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s/admin/captures: status %d", providerURL, code)
	}
	out := make(map[string][2]int64, len(states))
	for _, st := range states {
		out[st.Key] = [2]int64{st.Captured.Amount, st.Refunded.Amount}
	}
	return out, nil
}

// EventAmount is the amount a payments event carries.
func EventAmount(payload []byte) (int64, error) {
	var env events.Envelope
	var data struct {
		Amount catalog.Money `json:"amount"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return 0, fmt.Errorf("not an envelope: %w", err)
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return 0, fmt.Errorf("event %s: data: %w", env.ID, err)
	}
	return data.Amount.Amount, nil
}

// CountSubjects returns how many messages the stream holds per subject
// matching filter.
func CountSubjects(ctx context.Context, js jetstream.JetStream, stream, filter string) (map[string]uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// BusyConsumers says which consumers of streams still have messages
// pending or unacknowledged ("" when none). It reads every list to its
// end: a consumer list left half read blocks its goroutine.
func BusyConsumers(ctx context.Context, js jetstream.JetStream, streams ...string) string {
	var busy []string
	for _, stream := range streams {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err.Error()
		}
		l := s.ListConsumers(ctx)
		for ci := range l.Info() {
			if ci.NumPending+uint64(ci.NumAckPending) > 0 {
				busy = append(busy, fmt.Sprintf("%s/%s: %d pending, %d unacked", stream, ci.Name, ci.NumPending, ci.NumAckPending))
			}
		}
		if err := l.Err(); err != nil {
			return fmt.Sprintf("%s: %v", stream, err)
		}
	}
	return strings.Join(busy, "; ")
}

var backlogLine = regexp.MustCompile(`(?m)^choreo_outbox_backlog\{service="(\w+)"\} (\S+)$`)

// MetricsBacklog reads each service's outbox backlog from a /metrics
// page.
func MetricsBacklog(ctx context.Context, client *http.Client, metricsURL string) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", metricsURL, err)
	}
	out := map[string]int64{}
	for _, m := range backlogLine.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: backlog of %s: %w", metricsURL, m[1], err)
		}
		out[m[1]] = int64(v)
	}
	return out, nil
}

// eventStreams are the streams of domain events, each event once.
var eventStreams = []string{catalog.StreamOrders, catalog.StreamInventory, catalog.StreamPayments, catalog.StreamNotifications}

// Quiet reports whether the system has settled: every order final, every
// outbox empty, no consumer with work left. final caches the orders seen
// final, so that polling does not read them again.
func (s System) Quiet(ctx context.Context, orders []Order, final map[string]bool) (bool, string, error) {
	for _, o := range orders {
		if final[o.ID] {
			continue
		}
		v, err := s.Order(ctx, o.ID)
		if err != nil {
			return false, "", err
		}
		if !v.Final() {
			return false, fmt.Sprintf("order %s is %s", o.ID, v.Status), nil
		}
		final[o.ID] = true
	}
	backlog, err := s.Outbox(ctx)
	if err != nil {
		return false, "", err
	}
	for _, svc := range catalog.Services {
		if n, ok := backlog[svc]; !ok || n != 0 {
			return false, fmt.Sprintf("outbox backlog %v", backlog), nil
		}
	}
	if busy := BusyConsumers(ctx, s.JS, append(slices.Clone(eventStreams), catalog.StreamCommands)...); busy != "" {
		return false, busy, nil
	}
	return true, "", nil
}

// WaitQuiet polls Quiet until it holds or ctx ends. A transient error (a
// process restarting) is retried; the last one is returned when ctx ends.
func (s System) WaitQuiet(ctx context.Context, orders []Order) error {
	final := map[string]bool{}
	last := ""
	for {
		ok, why, err := s.Quiet(ctx, orders, final)
		if ok {
			return nil
		}
		if err != nil {
			why = err.Error()
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("not quiet: %s", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Settle waits for quiet, then checks until no invariant is broken or ctx
// ends — a check may race the last acks of a system that just went quiet
// — and returns the last report.
func (s System) Settle(ctx context.Context, orders []Order, received map[string]int64) (Report, error) {
	if err := s.WaitQuiet(ctx, orders); err != nil {
		return Report{}, err
	}
	for {
		r, err := s.Check(ctx, orders, received)
		if err == nil && len(r.Violations) == 0 {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(time.Second):
		}
	}
}

// streamScan is what the event streams hold, read once from start to end.
type streamScan struct {
	perSubject map[string]int   // messages per subject
	amount     map[string]int64 // the last amount per payments subject
	duplicates []string         // event ids found twice in one stream
}

// scanEvents reads every message of the event streams.
func scanEvents(ctx context.Context, js jetstream.JetStream) (streamScan, error) {
	sc := streamScan{perSubject: map[string]int{}, amount: map[string]int64{}}
	for _, name := range eventStreams {
		seen := map[string]uint64{}
		err := eachMessage(ctx, js, name, func(subject string, seq uint64, data []byte) error {
			if strings.HasPrefix(subject, catalog.SchedulePrefix+".") {
				return nil // a deadline not yet fired is no event
			}
			sc.perSubject[subject]++
			var env events.Envelope
			if err := json.Unmarshal(data, &env); err != nil || env.ID == "" {
				return fmt.Errorf("%s sequence %d (%s): not an event", name, seq, subject)
			}
			if first, dup := seen[env.ID]; dup {
				sc.duplicates = append(sc.duplicates, fmt.Sprintf("%s: event %s at sequences %d and %d (%s)", name, env.ID, first, seq, subject))
			} else {
				seen[env.ID] = seq
			}
			if name == catalog.StreamPayments {
				amount, err := EventAmount(data)
				if err != nil {
					return fmt.Errorf("%s sequence %d: %w", name, seq, err)
				}
				sc.amount[subject] = amount
			}
			return nil
		})
		if err != nil {
			return sc, err
		}
	}
	return sc, nil
}

// eachMessage calls fn for every message the stream holds, in order.
func eachMessage(ctx context.Context, js jetstream.JetStream, stream string, fn func(subject string, seq uint64, data []byte) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("stream %s: ordered consumer: %w", stream, err)
	}
	// Each fetch asks for no more than the stream holds and is read to its
	// end, so that no fetch is left waiting (a goroutine of the client's)
	// when this returns.
	total := info.State.Msgs
	for read := uint64(0); read < total; {
		batch, err := c.Fetch(int(min(1000, total-read)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("stream %s: fetch: %w", stream, err)
		}
		got := uint64(0)
		var failed error
		for m := range batch.Messages() {
			got++
			if failed != nil {
				continue
			}
			md, err := m.Metadata()
			if err != nil {
				failed = fmt.Errorf("stream %s: %w", stream, err)
				continue
			}
			failed = fn(m.Subject(), md.Sequence.Stream, m.Data())
		}
		if failed != nil {
			return failed
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("stream %s: fetch: %w", stream, err)
		}
		if got == 0 {
			return fmt.Errorf("stream %s: read %d of its %d messages, then no more came", stream, read, total)
		}
		read += got
	}
	return nil
}

var validReasons = map[string]bool{catalog.ReasonOutOfStock: true, catalog.ReasonPaymentDeclined: true,
	catalog.ReasonCustomerCancelled: true, catalog.ReasonTimeout: true}

// Check reads the quiet system once and reports every invariant of
// PRODUCT.md it breaks, for the orders placed and the stock received per
// SKU (the system must hold no other orders):
//   - every order is final, confirmed or cancelled with a valid reason; a
//     declining customer's never confirmed; customer_cancelled only when
//     the customer asked; cancelled when an HTTP cancel was accepted;
//   - per SKU, available + reserved + sold = received, nothing reserved,
//     sold = the confirmed quantities, nothing negative;
//   - per order, payments reached its terminal status, and captured −
//     refunded is the total if confirmed, else 0, both in the PAYMENTS
//     stream and at the provider;
//   - exactly one notification per order, at most one confirmed,
//     cancelled, captured, refunded and released event per order;
//   - no event id twice in a stream; every outbox empty; the DLQ empty.
func (s System) Check(ctx context.Context, orders []Order, received map[string]int64) (Report, error) {
	r := Report{Outcomes: map[string]int{}}
	sold := map[string]int64{}
	skus := map[string]bool{}
	for sku := range received {
		skus[sku] = true
	}
	provider, err := ProviderMoney(ctx, s.client(), s.ProviderURL)
	if err != nil {
		return r, err
	}
	scan, err := scanEvents(ctx, s.JS)
	if err != nil {
		return r, err
	}
	confirmed := 0
	for _, o := range orders {
		skus[o.SKU] = true
		v, err := s.Order(ctx, o.ID)
		if err != nil {
			return r, err
		}
		want := int64(0)
		terminal := map[string]bool{"REFUNDED": true, "VOIDED": true, "DECLINED": true}
		switch v.Status {
		case catalog.StatusConfirmed:
			confirmed++
			r.Outcomes["confirmed"]++
			sold[o.SKU] += o.Qty
			want = o.Total()
			terminal = map[string]bool{"CAPTURED": true}
			if o.Declined() {
				r.violate("order %s of declining customer %s was confirmed", o.ID, o.Customer)
			}
			if o.CancelAccepted {
				r.violate("order %s is confirmed, though its cancel was accepted", o.ID)
			}
		case catalog.StatusCancelled:
			r.Outcomes[v.Reason]++
			if !validReasons[v.Reason] {
				r.violate("order %s cancelled with reason %q", o.ID, v.Reason)
			}
			if v.Reason == catalog.ReasonCustomerCancelled && !o.CancelAsked {
				r.violate("order %s cancelled by the customer, who never asked", o.ID)
			}
		default:
			r.Outcomes[v.Status]++
			r.violate("order %s is %s, not final", o.ID, v.Status)
			continue
		}
		var p struct {
			Status string `json:"status"`
		}
		if _, err := GetJSON(ctx, s.client(), s.PaymentsURL+"/payments/"+o.ID, &p); err != nil {
			return r, err
		}
		if !terminal[p.Status] {
			r.violate("order %s is %s, its payment %q", o.ID, v.Status, p.Status)
		}
		captured, refunded := scan.amount["payments.captured."+o.ID], scan.amount["payments.refunded."+o.ID]
		if captured-refunded != want {
			r.violate("order %s is %s: events captured %d refunded %d, want net %d", o.ID, v.Status, captured, refunded, want)
		}
		if m := provider[o.ID]; m[0]-m[1] != want {
			r.violate("order %s is %s: the provider captured %d refunded %d, want net %d", o.ID, v.Status, m[0], m[1], want)
		}
		if n := scan.perSubject["notifications.sent."+o.ID]; n != 1 {
			r.violate("order %s: %d notifications, want 1", o.ID, n)
		}
	}
	for sku := range skus {
		st, err := s.Stock(ctx, sku)
		if err != nil {
			return r, err
		}
		if st.Available < 0 || st.Reserved < 0 || st.Sold < 0 {
			r.violate("%s: negative stock %+v", sku, st)
		}
		if st.Available+st.Reserved+st.Sold != received[sku] || st.Reserved != 0 || st.Sold != sold[sku] {
			r.violate("%s: stock %+v, want available %d, reserved 0, sold %d (received %d)",
				sku, st, received[sku]-sold[sku], sold[sku], received[sku])
		}
	}
	// At most one of each per order, and as many orders in each as the
	// outcomes say, so that an empty stream cannot pass.
	perOrder := map[string]int{}
	for subject, n := range scan.perSubject {
		for _, prefix := range []string{"orders.confirmed.", "orders.cancelled.", "payments.captured.", "payments.refunded.", "inventory.released.", "notifications.sent."} {
			if strings.HasPrefix(subject, prefix) {
				perOrder[prefix]++
				if n != 1 {
					r.violate("%s: %d messages, want at most 1", subject, n)
				}
			}
		}
	}
	for prefix, want := range map[string]int{
		"orders.confirmed.":   confirmed,
		"orders.cancelled.":   len(orders) - confirmed,
		"notifications.sent.": len(orders),
		"payments.captured.":  confirmed + perOrder["payments.refunded."],
	} {
		if perOrder[prefix] != want {
			r.violate("%s>: %d orders, want %d", prefix, perOrder[prefix], want)
		}
	}
	r.Violations = append(r.Violations, scan.duplicates...)
	backlog, err := s.Outbox(ctx)
	if err != nil {
		return r, err
	}
	for _, svc := range catalog.Services {
		if n, ok := backlog[svc]; !ok || n != 0 {
			r.violate("outbox of %s: %d rows unpublished (known: %t)", svc, n, ok)
		}
	}
	dead, err := CountSubjects(ctx, s.JS, catalog.StreamDLQ, ">")
	if err != nil {
		return r, err
	}
	for subject, n := range dead {
		r.violate("dead letters on %s: %d", subject, n)
	}
	slices.Sort(r.Violations)
	return r, nil
}
