package ceiling

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SagaOptions configures MinimalSaga. Zero values take the defaults.
type SagaOptions struct {
	// Duration is how long to place sagas (default 10s); then MinimalSaga
	// waits up to 30s for the ones in flight.
	Duration time.Duration
	// Inflight is how many sagas are in flight at once (default 64): the
	// load is a closed loop, each completed saga placing the next.
	Inflight int
	// Batch is the most messages a consumer applies in one transaction
	// (default 1: one message per transaction). A consumer never waits to
	// fill a batch; it takes what has already arrived.
	Batch int
	// Replicas is the streams' replica count (default 1).
	Replicas int
}

func (o *SagaOptions) setDefaults() error {
	if o.Duration < 0 || o.Inflight < 0 || o.Batch < 0 || o.Replicas < 0 {
		return fmt.Errorf("%w: negative saga option %+v", ErrInvalidOption, *o)
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Inflight == 0 {
		o.Inflight = 64
	}
	if o.Batch == 0 {
		o.Batch = 1
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	return nil
}

const (
	// sagaPayloadBytes is the size of every message of the minimal saga,
	// about that of one of choreo's events.
	sagaPayloadBytes = 300
	// sagaWait bounds the wait for the sagas still in flight once placing
	// has stopped, and for their trailing events.
	sagaWait = 30 * time.Second
	// settlePoll is the pause between two checks that the services are idle.
	settlePoll = 5 * time.Millisecond
)

// MinimalSaga measures the ceiling of choreo's saga throughput: sagas of
// exactly the shape of choreo's happy path, with the same number of
// publishes (8), deliveries (8) and service transactions (10) per saga,
// spread over four services A, B, C and D with a database each, and nothing
// else. Per saga <id>, on subjects ceiling.<token>.…:
//
//  1. the load generator publishes cmd.<id>;
//  2. A applies cmd.<id> (inbox claim, state upsert, two outbox rows) and
//     its relay publishes a.placed.<id> and a.scheduled.<id> (which nobody
//     consumes);
//  3. B applies a.placed.<id> → b.reserved.<id>;
//  4. C applies a.placed.<id> and b.reserved.<id>, counting them in its
//     state; the transaction that counts the second is followed by a
//     second transaction (state update, outbox row), choreo's "record the
//     provider's answer" → c.captured.<id>;
//  5. A applies b.reserved.<id> (no event) and c.captured.<id> →
//     a.confirmed.<id>, the moment the saga is complete;
//  6. B applies a.confirmed.<id> → b.committed.<id>;
//  7. D applies a.confirmed.<id>, then a second transaction → d.sent.<id>.
//
// Each service's database is opened with open(ctx, "ceiling_a") …
// open(ctx, "ceiling_d") and gets an inbox, a state table and an outbox
// (named ceiling_<token>_<service>_…). Five temporary file-storage streams
// (CEILING_<TOKEN>_CMD, _A, _B, _C, _D) carry the commands and each
// service's events, read by durable pull consumers with explicit acks, one
// per stream a service reads. Each consumer's worker applies up to
// opts.Batch messages that have already arrived in one transaction and acks
// them after it commits; each service's relay, woken by a commit, publishes
// its outbox asynchronously and deletes the rows once acked.
//
// The load is a closed loop of opts.Inflight sagas: each completion places
// the next until opts.Duration is over; then MinimalSaga waits up to 30s for
// the rest and for their trailing events (b.committed, d.sent), which cost
// work as they do in choreo. Latency runs from just before cmd.<id> is
// published to the receipt of a.confirmed.<id> on a core NATS subscription
// through nc (js's own connection when nc is nil). The result counts
// completed sagas, from the first placement to the last completion; a saga
// that does not complete within the wait is not counted. Result.OutboxLeft
// and Result.Unacked say what work was still pending when it stopped.
//
// MinimalSaga returns an error when any publish, ack or transaction fails
// (after a few retries), when ctx is cancelled, or when fewer than 90% of
// the placed sagas completed — in that last case along with the Result.
// Before it returns, on success and on error alike, it stops its workers and
// relays, deletes its streams (and with them the consumers), drops its
// tables and closes the databases, with a fresh bounded context; no
// goroutine of its own outlives the call, and a failure to clean up is
// returned too.
func MinimalSaga(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, open Opener, opts SagaOptions) (res Result, err error) {
	if err := opts.setDefaults(); err != nil {
		return Result{}, err
	}
	r := newSagaRun(ctx, js, nc, opts)
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		err = errors.Join(err, r.close(cctx))
	}()
	if err := r.setUp(ctx, open); err != nil {
		return Result{}, err
	}
	res, err = r.drive()
	if err != nil {
		return res, err
	}
	res.OutboxLeft, res.Unacked, err = r.settle(r.waitUntil)
	if err != nil {
		return res, err
	}
	if res.Ops < res.Placed*9/10 {
		return res, fmt.Errorf("ceiling: minimal saga: only %d of %d sagas completed within %s", res.Ops, res.Placed, sagaWait)
	}
	return res, nil
}

// sagaRun is one run of MinimalSaga: its streams, services, workers and
// load generator.
type sagaRun struct {
	opts   SagaOptions
	token  string
	js     jetstream.JetStream
	nc     *nats.Conn
	ctx    context.Context // cancelled with a cause when the run fails or stops
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // workers, relays and the ack checker

	streams  []jetstream.Stream
	names    []string // of the streams created, to delete
	services []*service
	workers  []*worker

	sub     *nats.Subscription
	subDone chan struct{} // closed when sub's handler has returned for the last time

	mu      sync.Mutex
	started map[string]time.Time // placement time of the sagas in flight, by key
	done    chan completion

	waitUntil time.Time // the end of the wait for sagas in flight
}

type completion struct {
	latency time.Duration
	at      time.Time
}

// errStopped is the cause of the run context once the run is over.
var errStopped = errors.New("ceiling: run stopped")

func newSagaRun(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, opts SagaOptions) *sagaRun {
	if nc == nil {
		nc = js.Conn()
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	return &sagaRun{
		opts:    opts,
		token:   newToken(),
		js:      js,
		nc:      nc,
		ctx:     runCtx,
		cancel:  cancel,
		started: make(map[string]time.Time, opts.Inflight),
		done:    make(chan completion, opts.Inflight),
	}
}

// fail ends the run with err; the first failure wins.
func (r *sagaRun) fail(err error) { r.cancel(err) }

func (r *sagaRun) subject(s string) string { return "ceiling." + r.token + "." + s }

// setUp creates the streams, the services and their consumers, and starts
// the workers, the relays and the subscription that sees sagas complete.
// What it created is removed by close, also when setUp fails half-way.
func (r *sagaRun) setUp(ctx context.Context, open Opener) error {
	streamName := "CEILING_" + strings.ToUpper(r.token) + "_"
	for _, s := range []string{"cmd", "a", "b", "c", "d"} {
		name := streamName + strings.ToUpper(s)
		st, err := createStream(ctx, r.js, name, r.subject(s+".>"), r.opts.Replicas)
		if err != nil {
			return err
		}
		r.names = append(r.names, name)
		r.streams = append(r.streams, st)
	}
	svc := map[string]*service{}
	for _, name := range []string{"a", "b", "c", "d"} {
		s, err := openService(ctx, r, open, name)
		if err != nil {
			return err
		}
		svc[name] = s
		r.services = append(r.services, s)
	}

	ev := func(name string) event { return event{subject: r.subject(name + "."), name: name} }
	in := func(name string) string { return r.subject(name + ".") }
	type consumerSpec struct {
		svc    *service
		stream string
		routes []route
	}
	specs := []consumerSpec{
		{svc["a"], "cmd", []route{{prefix: in("cmd"), emit: []event{ev("a.placed"), ev("a.scheduled")}}}},
		{svc["a"], "b", []route{{prefix: in("b.reserved")}}},
		{svc["a"], "c", []route{{prefix: in("c.captured"), emit: []event{ev("a.confirmed")}}}},
		{svc["b"], "a", []route{
			{prefix: in("a.placed"), emit: []event{ev("b.reserved")}},
			{prefix: in("a.confirmed"), emit: []event{ev("b.committed")}},
		}},
		{svc["c"], "a", []route{{prefix: in("a.placed"), then: []event{ev("c.captured")}, thenAt: 2}}},
		{svc["c"], "b", []route{{prefix: in("b.reserved"), then: []event{ev("c.captured")}, thenAt: 2}}},
		{svc["d"], "a", []route{{prefix: in("a.confirmed"), then: []event{ev("d.sent")}}}},
	}
	for _, sp := range specs {
		filters := make([]string, len(sp.routes))
		for i, rt := range sp.routes {
			filters[i] = rt.prefix + "*"
		}
		durable := sp.svc.name + "_" + sp.stream
		cfg := jetstream.ConsumerConfig{
			Durable:       durable,
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			MaxAckPending: 1000, // as choreo's consumers
		}
		if len(filters) == 1 {
			cfg.FilterSubject = filters[0]
		} else {
			cfg.FilterSubjects = filters
		}
		cons, err := r.js.CreateConsumer(ctx, streamName+strings.ToUpper(sp.stream), cfg)
		if err != nil {
			return fmt.Errorf("ceiling: create consumer %s: %w", durable, err)
		}
		w := &worker{
			svc:     sp.svc,
			durable: durable,
			routes:  sp.routes,
			batch:   r.opts.Batch,
			cons:    cons,
			msgs:    make(chan jetstream.Msg, r.opts.Batch),
		}
		r.workers = append(r.workers, w)
		if err := w.start(r.ctx); err != nil {
			return err
		}
		r.wg.Go(func() { w.loop(r.ctx) })
	}
	for _, s := range r.services {
		r.wg.Go(func() { s.relay(r.ctx) })
	}

	confirmed := r.subject("a.confirmed.")
	r.subDone = make(chan struct{})
	sub, err := r.nc.Subscribe(confirmed+"*", func(m *nats.Msg) {
		at := time.Now()
		key := m.Subject[len(confirmed):]
		r.mu.Lock()
		t0, ok := r.started[key]
		delete(r.started, key)
		r.mu.Unlock()
		if !ok {
			return // a duplicate publish: the saga is counted already
		}
		select {
		case r.done <- completion{latency: at.Sub(t0), at: at}:
		case <-r.ctx.Done():
		}
	})
	if err != nil {
		close(r.subDone)
		return fmt.Errorf("ceiling: subscribe %s*: %w", confirmed, err)
	}
	sub.SetClosedHandler(func(string) { close(r.subDone) })
	r.sub = sub
	if err := r.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("ceiling: subscribe %s*: %w", confirmed, err)
	}
	return nil
}

// drive runs the closed-loop load: opts.Inflight sagas at once, each
// completion placing the next until opts.Duration is over, then a wait of
// at most sagaWait for the rest. The commands' acks are checked by a
// goroutine of their own, so that placing never waits on one.
func (r *sagaRun) drive() (Result, error) {
	acks := make(chan jetstream.PubAckFuture, r.opts.Inflight)
	defer close(acks)
	r.wg.Go(func() {
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for f := range acks {
			if err := awaitAck(r.ctx, f, timer); err != nil {
				if r.ctx.Err() == nil {
					r.fail(fmt.Errorf("ceiling: publish %s: %w", f.Msg().Subject, err))
				}
				return
			}
		}
	})
	cmd := r.subject("cmd.")
	placed := 0
	place := func() error {
		key := strconv.Itoa(placed)
		id := event{name: "cmd"}.eventID(r.token, key)
		msg := &nats.Msg{
			Subject: cmd + key,
			Data:    payload(sagaPayloadBytes, id, key),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{id}},
		}
		r.mu.Lock()
		r.started[key] = time.Now()
		r.mu.Unlock()
		f, err := r.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("ceiling: publish %s: %w", msg.Subject, err)
		}
		placed++
		select {
		case acks <- f:
			return nil
		case <-r.ctx.Done():
			return context.Cause(r.ctx)
		}
	}

	first := time.Now()
	r.waitUntil = first.Add(r.opts.Duration + sagaWait)
	for range r.opts.Inflight {
		if err := place(); err != nil {
			return Result{}, err
		}
	}
	var (
		latency = make([]time.Duration, 0, 1024)
		last    time.Time
		stopAt  = time.NewTimer(r.opts.Duration)
		placing = true
		waitEnd <-chan time.Time
	)
	defer stopAt.Stop()
wait:
	for placing || len(latency) < placed {
		select {
		case c := <-r.done:
			latency = append(latency, c.latency)
			last = c.at
			if placing && c.at.Sub(first) < r.opts.Duration {
				if err := place(); err != nil {
					return Result{}, err
				}
			}
		case <-stopAt.C:
			placing = false
			waitEnd = time.After(time.Until(r.waitUntil))
		case <-waitEnd:
			break wait
		case <-r.ctx.Done():
			return Result{}, context.Cause(r.ctx)
		}
	}
	res := result(NameMinimalSaga, len(latency), last.Sub(first))
	res.Latency = latency
	res.Batch = r.opts.Batch
	res.Placed = placed
	if len(latency) == 0 {
		return res, fmt.Errorf("ceiling: minimal saga: none of %d sagas completed within %s", placed, sagaWait)
	}
	return res, nil
}

// settle waits, at most until until, for the services to go idle: every
// message acked by its consumers and every outbox empty. It returns what
// was left when it stopped waiting.
//
// Both counts being zero once is not proof of idleness: a relay may publish
// a row between the two looks, and delete it before the second. So a check
// also reads the streams' last sequences before and after: unchanged, no
// message was published while it looked.
func (r *sagaRun) settle(until time.Time) (outboxLeft, unacked int, err error) {
	for {
		idle, ob, ua, err := r.idle(r.ctx)
		if err != nil {
			if r.ctx.Err() != nil {
				err = context.Cause(r.ctx)
			}
			return ob, ua, err
		}
		if idle || time.Now().After(until) {
			return ob, ua, nil
		}
		select {
		case <-r.ctx.Done():
			return ob, ua, context.Cause(r.ctx)
		case <-time.After(settlePoll):
		}
	}
}

func (r *sagaRun) idle(ctx context.Context) (idle bool, outboxLeft, unacked int, err error) {
	before, err := r.lastSeqs(ctx)
	if err != nil {
		return false, 0, 0, err
	}
	for _, w := range r.workers {
		info, err := w.cons.Info(ctx)
		if err != nil {
			return false, 0, 0, fmt.Errorf("ceiling: consumer %s: %w", w.durable, err)
		}
		unacked += int(info.NumPending) + info.NumAckPending
	}
	for _, s := range r.services {
		n, err := s.outboxLen(ctx)
		if err != nil {
			return false, 0, 0, err
		}
		outboxLeft += n
	}
	after, err := r.lastSeqs(ctx)
	if err != nil {
		return false, 0, 0, err
	}
	return unacked == 0 && outboxLeft == 0 && before == after, outboxLeft, unacked, nil
}

// lastSeqs returns the sum of the streams' last sequences, which grows
// with every message stored.
func (r *sagaRun) lastSeqs(ctx context.Context) (uint64, error) {
	var sum uint64
	for _, s := range r.streams {
		info, err := s.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("ceiling: stream %s: %w", s.CachedInfo().Config.Name, err)
		}
		sum += info.State.LastSeq
	}
	return sum, nil
}

// close stops everything the run started and removes everything it
// created, in an order that leaves nothing running against what is being
// removed: first the goroutines (workers, relays, the consumers'
// subscriptions, the completion subscription), then the streams, which
// takes their consumers, then the tables and the databases.
func (r *sagaRun) close(ctx context.Context) error {
	r.cancel(errStopped)
	for _, w := range r.workers {
		w.stop(ctx)
	}
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
		select {
		case <-r.subDone:
		case <-ctx.Done():
		}
	}
	r.wg.Wait()
	var errs []error
	for _, name := range r.names {
		errs = append(errs, deleteStream(ctx, r.js, name))
	}
	for _, s := range r.services {
		errs = append(errs, s.close(ctx))
	}
	return errors.Join(errs...)
}
