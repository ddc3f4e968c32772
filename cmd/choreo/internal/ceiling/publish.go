package ceiling

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishOptions configures PublishRate. Zero values take the defaults.
type PublishOptions struct {
	// Duration is how long to publish (default 3s).
	Duration time.Duration
	// PayloadBytes is the size of each message (default 400).
	PayloadBytes int
	// Replicas is the stream's replica count (default 1).
	Replicas int
}

func (o *PublishOptions) setDefaults() error {
	if o.Duration < 0 || o.PayloadBytes < 0 || o.Replicas < 0 {
		return fmt.Errorf("%w: negative publish option %+v", ErrInvalidOption, *o)
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.PayloadBytes == 0 {
		o.PayloadBytes = 400
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	return nil
}

// publishInFlight bounds the publishes awaiting their ack: enough to keep
// the server busy, well under the client's default limit of 4000 pending
// asynchronous publishes, beyond which publishing stalls.
const publishInFlight = 1000

// PublishRate measures how many messages per second JetStream stores and
// acknowledges. It creates a temporary file-storage stream (named
// CEILING_PUB_<token>, capturing ceiling.<token>.>) and for opts.Duration
// publishes asynchronously, each message to a subject of its own and with a
// unique Nats-Msg-Id, as choreo's events are, keeping at most 1000
// publishes in flight; then it waits for every ack. The result counts the
// acked messages, from the first publish to the last ack.
//
// A failed publish, a negative ack, an ack that does not come within 10s or
// a cancelled ctx ends the probe with an error. The stream is deleted before
// PublishRate returns, on success and on error alike, with a fresh bounded
// context; a failure to delete it is returned too.
func PublishRate(ctx context.Context, js jetstream.JetStream, opts PublishOptions) (res Result, err error) {
	if err := opts.setDefaults(); err != nil {
		return Result{}, err
	}
	token := newToken()
	stream := "CEILING_PUB_" + strings.ToUpper(token)
	if _, err := createStream(ctx, js, stream, "ceiling."+token+".>", opts.Replicas); err != nil {
		return Result{}, err
	}
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		err = errors.Join(err, deleteStream(cctx, js, stream))
	}()

	data := payload(opts.PayloadBytes, token, "publish")
	// A subject per message, as choreo's subjects carry an order id: the
	// stream then tracks as many subjects as it does in choreo.
	prefix := "ceiling." + token + ".p."
	idPrefix := token + "-"
	var (
		ring        [publishInFlight]jetstream.PubAckFuture // the publishes in flight, oldest at head
		head        int
		n           int
		acked       int
		timer       = time.NewTimer(time.Hour)
		awaitOldest = func() error {
			f := ring[head]
			ring[head] = nil
			head = (head + 1) % publishInFlight
			n--
			if err := awaitAck(ctx, f, timer); err != nil {
				return fmt.Errorf("ceiling: publish %s: %w", f.Msg().Subject, err)
			}
			acked++
			return nil
		}
	)
	timer.Stop()
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for seq := 0; time.Now().Before(deadline); seq++ {
		if seq%64 == 0 && ctx.Err() != nil {
			return Result{}, fmt.Errorf("ceiling: publish: %w", ctx.Err())
		}
		if n == publishInFlight {
			if err := awaitOldest(); err != nil {
				return Result{}, err
			}
		}
		num := strconv.Itoa(seq)
		msg := &nats.Msg{
			Subject: prefix + num,
			Data:    data,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{idPrefix + num}},
		}
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			return Result{}, fmt.Errorf("ceiling: publish %s: %w", msg.Subject, err)
		}
		ring[(head+n)%publishInFlight] = f
		n++
	}
	for n > 0 {
		if err := awaitOldest(); err != nil {
			return Result{}, err
		}
	}
	return result(NamePublish, acked, time.Since(start)), nil
}
