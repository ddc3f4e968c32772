package history

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Reach is how far back a stream reaches and the limits that decide it:
// what a reader of its history can see.
type Reach struct {
	Stream    string
	Msgs      uint64
	Bytes     uint64
	FirstSeq  uint64
	FirstTime time.Time
	LastSeq   uint64
	Consumers int
	MaxAge    time.Duration
	MaxMsgs   int64
	MaxBytes  int64
}

// StreamReach reads the stream's reach from the server. A stream that does
// not exist is an error wrapping jetstream.ErrStreamNotFound.
func StreamReach(ctx context.Context, js jetstream.JetStream, stream string) (Reach, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return Reach{}, fmt.Errorf("history: stream %s: %w", stream, err)
	}
	return ReachOf(s.CachedInfo()), nil
}

// ReachOf is the reach a stream info describes.
func ReachOf(info *jetstream.StreamInfo) Reach {
	return Reach{
		Stream: info.Config.Name, Msgs: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSeq: info.State.FirstSeq, FirstTime: info.State.FirstTime.UTC(), LastSeq: info.State.LastSeq,
		Consumers: info.State.Consumers,
		MaxAge:    info.Config.MaxAge, MaxMsgs: info.Config.MaxMsgs, MaxBytes: info.Config.MaxBytes,
	}
}

// Dropped reports whether messages from sequence fromSeq, or stored from
// since on, may be gone: the stream's limits removed its oldest messages
// and the start is before what it holds now. With neither it is false.
func (r Reach) Dropped(fromSeq uint64, since time.Time) bool {
	switch {
	case fromSeq > 0:
		return fromSeq < r.FirstSeq
	case !since.IsZero():
		return r.Msgs > 0 && since.Before(r.FirstTime) && r.FirstSeq > 1
	}
	return false
}

// Limits says what the stream keeps, e.g. "at most 200,000 messages and
// 24h0m0s".
func (r Reach) Limits() string {
	var parts []string
	if r.MaxMsgs > 0 {
		parts = append(parts, thousands(uint64(r.MaxMsgs))+" messages")
	}
	if r.MaxBytes > 0 {
		parts = append(parts, thousands(uint64(r.MaxBytes))+" bytes")
	}
	if r.MaxAge > 0 {
		parts = append(parts, r.MaxAge.String())
	}
	if len(parts) == 0 {
		return "everything (no limits)"
	}
	return "at most " + strings.Join(parts, " and ")
}

// String is one line for a person: "ORDERS holds 12,345 messages from
// sequence 1,002 (2026-12-01T12:00:00Z); it keeps at most 200,000
// messages and 24h0m0s".
func (r Reach) String() string {
	if r.Msgs == 0 {
		return fmt.Sprintf("%s is empty; it keeps %s", r.Stream, r.Limits())
	}
	return fmt.Sprintf("%s holds %s messages from sequence %s (%s); it keeps %s", r.Stream, thousands(r.Msgs),
		thousands(r.FirstSeq), r.FirstTime.Format(time.RFC3339), r.Limits())
}

// thousands writes n with comma separators: 1,234,567.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
