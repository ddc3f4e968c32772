// Package loadgen drives choreo's saga with generated orders, the way a
// storefront would: it places orders as cmd.orders.place commands over
// NATS and watches orders.confirmed.<id> and orders.cancelled.<id> to learn
// when each saga ends. It is the engine of `choreo bench`.
//
// It knows the system only through its public interface (PRODUCT.md):
// commands in, events out. It runs closed loop (a fixed number of sagas in
// flight) or open loop (a fixed rate of placements, latency measured from
// the intended start so that a stalled system cannot hide its queueing:
// no coordinated omission).
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Path is a way a saga can end that the generator can ask for.
type Path string

// The paths the generator drives.
const (
	// Happy: stock is available and the card is accepted: CONFIRMED.
	Happy Path = "happy"
	// OutOfStock: the SKU was never stocked: CANCELLED out_of_stock.
	OutOfStock Path = "out_of_stock"
	// Declined: the customer's card is declined: CANCELLED payment_declined.
	Declined Path = "declined"
	// Cancel: the customer cancels right after placing: CANCELLED
	// customer_cancelled, or CONFIRMED when the cancel comes too late.
	Cancel Path = "cancel"
)

var paths = []Path{Happy, OutOfStock, Declined, Cancel}

// Mix is how often each path is taken, as relative weights.
type Mix map[Path]int

// ParseMix reads "happy=90,out_of_stock=5,declined=5".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want path=weight", part)
		}
		p := Path(strings.TrimSpace(name))
		if !slices.Contains(paths, p) {
			return nil, fmt.Errorf("mix: unknown path %q (want %s)", name, joinPaths())
		}
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mix %q: weight must be a whole number >= 0", part)
		}
		m[p] += n
	}
	total := 0
	for _, n := range m {
		total += n
	}
	if total == 0 {
		return nil, errors.New("mix: every weight is 0")
	}
	return m, nil
}

func joinPaths() string {
	s := make([]string, len(paths))
	for i, p := range paths {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// String writes the mix back in ParseMix's form, paths in a fixed order.
func (m Mix) String() string {
	var parts []string
	for _, p := range paths {
		if m[p] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", p, m[p]))
		}
	}
	return strings.Join(parts, ",")
}

// pick returns a path chosen by weight.
func (m Mix) pick(r *rand.Rand) Path {
	total := 0
	for _, p := range paths {
		total += m[p]
	}
	n := r.IntN(total)
	for _, p := range paths {
		if n < m[p] {
			return p
		}
		n -= m[p]
	}
	return Happy
}

// Config describes one run.
type Config struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Inflight is the number of sagas kept in flight (closed loop).
	Inflight int
	// Rate, when above 0, places that many sagas per second whatever the
	// system's pace (open loop); Inflight is then only a safety bound.
	Rate float64
	// Warmup runs before the measured window; its sagas are not counted.
	Warmup time.Duration
	// Duration is the measured window.
	Duration time.Duration
	// Drain bounds the wait for sagas still in flight after the window
	// (default 30s); those that do not end are reported as lost.
	Drain time.Duration
	Mix   Mix
	// RunID makes the SKUs and ids of this run unique (default: random).
	RunID string
	// OnWindow is called when the measured window opens (true) and closes
	// (false), so the caller can sample CPU and memory at those instants.
	OnWindow func(open bool)
	// Progress, when set, is called about four times a second.
	Progress func(Progress)
}

// Progress is the state of a run while it goes.
type Progress struct {
	Elapsed   time.Duration // since the window opened (negative in warm-up)
	Window    time.Duration
	Placed    int
	Completed int
	InFlight  int
	// RecentRate is the completion rate over the last second or so.
	RecentRate float64
}

// Result is what a run measured in its window.
type Result struct {
	Placed    int // sagas placed in the window
	Completed int // of those, sagas that reached a final state
	Lost      int // placed in the window, no final state within Drain
	// Outcomes counts final states: "CONFIRMED", "CANCELLED/out_of_stock", …
	Outcomes map[string]int
	// Unexpected counts sagas that ended otherwise than their path says
	// (a happy order cancelled, say).
	Unexpected int
	// Window is the measured window's length; Rate = Completed / Window
	// counting only completions inside the window.
	Window            time.Duration
	CompletedInWindow int
	Rate              float64
	// Latency holds placed→final latency in microseconds of every saga
	// placed in the window.
	Latency *hdrhistogram.Histogram
}

// stockPerSKU is what the run restocks each of its SKUs with: the most
// one command may add.
const (
	stockPerSKU = 1_000_000
	skuCount    = 8
	unitPrice   = 1299
)

type saga struct {
	path     Path
	start    time.Time
	inWindow bool
}

type run struct {
	cfg       Config
	mu        sync.Mutex
	pending   map[string]saga
	res       Result
	windowOn  time.Time
	windowOff time.Time
	completed int // all completions, warm-up included
	placed    int
	slots     chan struct{}
	recent    []time.Time
}

// Run places sagas for Warmup+Duration, waits for those in flight, and
// reports the window. It returns an error when the system could not be
// driven at all (no NATS, no stream); sagas that never end are counted as
// Lost, not as an error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.NC == nil || cfg.JS == nil {
		return Result{}, errors.New("loadgen: no NATS connection")
	}
	if cfg.Inflight < 1 {
		cfg.Inflight = 64
	}
	if cfg.Rate > 0 && cfg.Inflight < 100_000 {
		// Open loop: the bound only stops a dead system from eating memory.
		cfg.Inflight = 100_000
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 30 * time.Second
	}
	if len(cfg.Mix) == 0 {
		cfg.Mix = Mix{Happy: 1}
	}
	if cfg.RunID == "" {
		cfg.RunID = strconv.FormatUint(rand.Uint64()%1e8, 36)
	}
	r := &run{
		cfg:     cfg,
		pending: map[string]saga{},
		slots:   make(chan struct{}, cfg.Inflight),
		res: Result{
			Outcomes: map[string]int{},
			Latency:  hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3),
		},
	}
	if err := r.restock(ctx); err != nil {
		return Result{}, err
	}
	subs, err := r.watch()
	if err != nil {
		return Result{}, err
	}
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	stopProgress := r.reportProgress()
	defer stopProgress()
	if err := r.place(ctx); err != nil {
		return Result{}, err
	}
	r.drain(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.pending {
		if s.inWindow {
			r.res.Lost++
		}
	}
	r.res.Window = r.windowOff.Sub(r.windowOn)
	if r.res.Window > 0 {
		r.res.Rate = float64(r.res.CompletedInWindow) / r.res.Window.Seconds()
	}
	return r.res, nil
}

func (r *run) sku(i int) string { return fmt.Sprintf("BENCH-%s-%d", r.cfg.RunID, i%skuCount) }

// restock gives every SKU of the run its stock and waits until inventory
// has applied it, so that the first orders find it.
func (r *run) restock(ctx context.Context) error {
	if r.cfg.Mix[Happy]+r.cfg.Mix[Declined]+r.cfg.Mix[Cancel] == 0 {
		return nil
	}
	done := make(chan string, skuCount)
	sub, err := r.cfg.NC.Subscribe(catalog.EventSubject(catalog.Inventory, catalog.EventRestocked, "*"), func(m *nats.Msg) {
		done <- events.SubjectKey(m.Subject)
	})
	if err != nil {
		return fmt.Errorf("loadgen: watch restocks: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	want := map[string]bool{}
	for i := range skuCount {
		sku := r.sku(i)
		want[sku] = true
		body, _ := json.Marshal(catalog.Restock{CommandID: "bench-restock-" + sku, SKU: sku, Quantity: stockPerSKU})
		if _, err := r.cfg.JS.Publish(ctx, catalog.SubjectRestock, body); err != nil {
			return fmt.Errorf("loadgen: restock %s: %w (is choreo running on this server?)", sku, err)
		}
	}
	timeout := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case sku := <-done:
			delete(want, sku)
		case <-timeout:
			return fmt.Errorf("loadgen: %d restocks not applied within 30s: is the inventory service running?", len(want))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// watch subscribes to the final events of every order. A core
// subscription sees each publish as it happens, before any consumer.
func (r *run) watch() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, ev := range []string{catalog.EventConfirmed, catalog.EventCancelled} {
		s, err := r.cfg.NC.Subscribe(catalog.EventSubject(catalog.Orders, ev, "*"), r.final)
		if err != nil {
			return subs, fmt.Errorf("loadgen: watch %s: %w", ev, err)
		}
		// A slow generator must not lose finals: hold them all.
		_ = s.SetPendingLimits(-1, -1)
		subs = append(subs, s)
	}
	return subs, nil
}

// final records the end of one saga. A saga ends once: a second final
// event for it (a re-published copy the stream dropped) is ignored.
func (r *run) final(m *nats.Msg) {
	now := time.Now()
	id := events.SubjectKey(m.Subject)
	outcome := catalog.StatusConfirmed
	if strings.HasPrefix(m.Subject, catalog.Orders+"."+catalog.EventCancelled+".") {
		var env struct {
			Data struct {
				Reason string `json:"reason"`
			} `json:"data"`
		}
		_ = json.Unmarshal(m.Data, &env)
		outcome = catalog.StatusCancelled + "/" + env.Data.Reason
	}
	r.mu.Lock()
	s, ok := r.pending[id]
	if !ok {
		r.mu.Unlock()
		return
	}
	delete(r.pending, id)
	r.completed++
	r.recent = append(r.recent, now)
	if s.inWindow {
		r.res.Completed++
		r.res.Outcomes[outcome]++
		if !expected(s.path, outcome) {
			r.res.Unexpected++
		}
		_ = r.res.Latency.RecordValue(max(1, now.Sub(s.start).Microseconds()))
	}
	if !r.windowOn.IsZero() && now.After(r.windowOn) && (r.windowOff.IsZero() || now.Before(r.windowOff)) {
		r.res.CompletedInWindow++
	}
	r.mu.Unlock()
	select {
	case <-r.slots:
	default:
	}
}

func expected(p Path, outcome string) bool {
	switch p {
	case Happy:
		return outcome == catalog.StatusConfirmed
	case OutOfStock:
		return outcome == catalog.StatusCancelled+"/"+catalog.ReasonOutOfStock
	case Declined:
		return outcome == catalog.StatusCancelled+"/"+catalog.ReasonPaymentDeclined
	case Cancel:
		return outcome == catalog.StatusConfirmed || outcome == catalog.StatusCancelled+"/"+catalog.ReasonCustomerCancelled
	}
	return false
}

// place runs the warm-up and the window.
func (r *run) place(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	begin := time.Now()
	windowOn := begin.Add(r.cfg.Warmup)
	end := windowOn.Add(r.cfg.Duration)
	opened := false
	var interval time.Duration
	if r.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.cfg.Rate)
	}
	next := begin
	for i := 0; ; i++ {
		now := time.Now()
		if !opened && !now.Before(windowOn) {
			opened = true
			r.openWindow(now)
		}
		if !now.Before(end) || ctx.Err() != nil {
			break
		}
		start := now
		if interval > 0 {
			// Open loop: wait for the slot's time and measure from it,
			// even when the publish itself is late.
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			start = next
			next = next.Add(interval)
		}
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			continue
		case <-time.After(time.Until(end)):
			continue
		}
		if err := r.placeOne(ctx, rng, i, start, opened); err != nil {
			return err
		}
	}
	if !opened {
		r.openWindow(time.Now())
	}
	r.mu.Lock()
	r.windowOff = time.Now()
	r.mu.Unlock()
	if r.cfg.OnWindow != nil {
		r.cfg.OnWindow(false)
	}
	return nil
}

func (r *run) openWindow(now time.Time) {
	r.mu.Lock()
	r.windowOn = now
	r.mu.Unlock()
	if r.cfg.OnWindow != nil {
		r.cfg.OnWindow(true)
	}
}

func (r *run) placeOne(ctx context.Context, rng *rand.Rand, i int, start time.Time, inWindow bool) error {
	path := r.cfg.Mix.pick(rng)
	id := events.NewID()
	cmd := catalog.PlaceOrder{OrderID: id, CustomerID: "bench-" + strconv.Itoa(i%1000), Currency: "EUR",
		Items: []catalog.LineItem{{SKU: r.sku(i), Quantity: 1, UnitPrice: unitPrice}}}
	switch path {
	case OutOfStock:
		cmd.Items[0].SKU = "BENCH-" + r.cfg.RunID + "-NONE"
	case Declined:
		cmd.CustomerID = "decline-bench-" + strconv.Itoa(i%1000)
	}
	body, _ := json.Marshal(cmd)
	r.mu.Lock()
	r.pending[id] = saga{path: path, start: start, inWindow: inWindow}
	r.placed++
	if inWindow {
		r.res.Placed++
	}
	r.mu.Unlock()
	msg := nats.NewMsg(catalog.SubjectPlaceOrder)
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, "bench-"+id)
	if _, err := r.cfg.JS.PublishMsgAsync(msg); err != nil {
		return fmt.Errorf("loadgen: place: %w", err)
	}
	if path == Cancel {
		c, _ := json.Marshal(catalog.CancelOrder{CommandID: "bench-cancel-" + id, OrderID: id})
		if _, err := r.cfg.JS.PublishAsync(catalog.SubjectCancelOrder, c); err != nil {
			return fmt.Errorf("loadgen: cancel: %w", err)
		}
	}
	return nil
}

// drain waits for the sagas still in flight, up to Drain.
func (r *run) drain(ctx context.Context) {
	select {
	case <-r.cfg.JS.PublishAsyncComplete():
	case <-time.After(r.cfg.Drain):
	case <-ctx.Done():
	}
	deadline := time.Now().Add(r.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r.mu.Lock()
		left := 0
		for _, s := range r.pending {
			if s.inWindow {
				left++
			}
		}
		r.mu.Unlock()
		if left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *run) reportProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	begin := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				r.mu.Lock()
				cut := now.Add(-time.Second)
				i := sort.Search(len(r.recent), func(i int) bool { return r.recent[i].After(cut) })
				r.recent = r.recent[i:]
				p := Progress{
					Elapsed:    now.Sub(begin) - r.cfg.Warmup,
					Window:     r.cfg.Duration,
					Placed:     r.placed,
					Completed:  r.completed,
					InFlight:   len(r.pending),
					RecentRate: float64(len(r.recent)),
				}
				r.mu.Unlock()
				r.cfg.Progress(p)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
