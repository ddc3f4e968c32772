package dlq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RefusedError is Retry refusing before it republished anything: entries
// the loop guard stops (retried MaxRetries times already), and entries
// with no original subject to send them to.
type RefusedError struct {
	Exhausted  []uint64
	NoSubject  []uint64
	MaxRetries int
}

func (e *RefusedError) Error() string {
	var parts []string
	if len(e.Exhausted) > 0 {
		parts = append(parts, fmt.Sprintf("entries %s were already retried %d times", joinIDs(e.Exhausted, ", "), e.MaxRetries))
	}
	if len(e.NoSubject) > 0 {
		parts = append(parts, fmt.Sprintf("entries %s have no %s header", joinIDs(e.NoSubject, ", "), HeaderOriginalSubject))
	}
	return "dlq: retry refused: " + strings.Join(parts, "; ")
}

func joinIDs(ids []uint64, sep string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, sep)
}

// RemoveError is a retry that republished the message but could not
// remove the entry: the entry is still listed, and retrying it again is
// harmless (the republish has the same message id) but discarding it is
// what is left to do.
type RemoveError struct {
	ID       uint64
	Stream   string // where the message was republished
	Sequence uint64
	Err      error
}

func (e *RemoveError) Error() string {
	return fmt.Sprintf("dlq: retry %d: republished as %s seq %d, but removing it failed: %v", e.ID, e.Stream, e.Sequence, e.Err)
}

func (e *RemoveError) Unwrap() error { return e.Err }

// Retried is what Retry did, or would do in a dry run, with one entry.
type Retried struct {
	Entry *Entry
	// Count is the retry count the republished message carries.
	Count int
	// SameAs is the id of the entry whose republish carried this one too
	// (the same message dead-lettered by several consumers), else 0.
	SameAs uint64
	DryRun bool
	// Where the message was republished (not in a dry run); Duplicate:
	// the server had it already, from an interrupted earlier retry.
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// Retry republishes each entry's original body to its original subject,
// with its original headers (not the Choreo-* and Nats-* ones), the retry
// count raised by one and a message id of its own; an entry is removed
// only once the server acknowledged the publish. report is called for
// each entry as it is done, in order.
//
// Every entry is checked first: if the loop guard or a missing original
// subject refuses any of them, nothing is republished and the error is a
// *RefusedError. Entries of one message that several consumers
// dead-lettered are republished once, together: the message reaches
// every consumer of its stream anyway, and consumers deduplicate by event
// id. A failed publish leaves its entry in the queue and stops Retry; a
// failed removal after the publish is a *RemoveError. Retrying an entry
// again after an interruption publishes the same message id, which the
// server drops as a duplicate within its window.
func (q *Queue) Retry(ctx context.Context, entries []*Entry, dryRun bool, report func(Retried)) error {
	refused := &RefusedError{MaxRetries: q.cfg.MaxRetries}
	for _, e := range entries {
		switch {
		case e.OriginalSubject == "":
			refused.NoSubject = append(refused.NoSubject, e.ID)
		case e.RetryCount >= q.cfg.MaxRetries:
			refused.Exhausted = append(refused.Exhausted, e.ID)
		}
	}
	if len(refused.Exhausted) > 0 || len(refused.NoSubject) > 0 {
		return refused
	}
	type group struct {
		first *Entry
		count int // the highest retry count in the group, plus one
		ack   *jetstream.PubAck
	}
	groups := map[string]*group{}
	keyOf := func(e *Entry) string {
		if e.OriginalStream == "" || e.OriginalSequence == 0 {
			return "id:" + strconv.FormatUint(e.ID, 10)
		}
		return fmt.Sprintf("%s:%d:%s", e.OriginalStream, e.OriginalSequence, e.OriginalSubject)
	}
	for _, e := range entries {
		g := groups[keyOf(e)]
		if g == nil {
			g = &group{first: e}
			groups[keyOf(e)] = g
		}
		g.count = max(g.count, e.RetryCount+1)
	}
	for _, e := range entries {
		g := groups[keyOf(e)]
		r := Retried{Entry: e, Count: g.count, DryRun: dryRun}
		if g.first != e {
			r.SameAs = g.first.ID
		}
		if dryRun {
			report(r)
			continue
		}
		if g.ack == nil {
			ack, err := q.republish(ctx, e, g.count)
			if err != nil {
				return fmt.Errorf("dlq: retry %d: %w; the entry stays in the queue", e.ID, err)
			}
			g.ack = ack
		}
		if err := q.remove(ctx, e.ID); err != nil {
			return &RemoveError{ID: e.ID, Stream: g.ack.Stream, Sequence: g.ack.Sequence, Err: err}
		}
		r.Stream, r.Sequence, r.Duplicate = g.ack.Stream, g.ack.Sequence, g.ack.Duplicate
		report(r)
	}
	return nil
}

// republish publishes e's message again with retry count count.
func (q *Queue) republish(ctx context.Context, e *Entry, count int) (*jetstream.PubAck, error) {
	m := nats.NewMsg(e.OriginalSubject)
	m.Data = e.Data
	for k, vs := range e.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "nats-") || strings.HasPrefix(lk, "choreo-") {
			continue
		}
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	m.Header.Set(HeaderRetryCount, strconv.Itoa(count))
	// Fresh, and the same if this very entry is retried again after an
	// interruption between publish and delete: the server then drops the
	// second copy as a duplicate.
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq-retry:%s:%d:%s:%d", q.cfg.Stream, e.ID, e.OriginalStream, e.OriginalSequence))
	var opts []jetstream.PublishOpt
	if e.OriginalStream != "" {
		opts = append(opts, jetstream.WithExpectStream(e.OriginalStream))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return q.js.PublishMsg(pctx, m, opts...)
}
