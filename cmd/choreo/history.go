package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamHistory is how far back a stream reaches, and the limits that
// decide it: what a tool that reads history can see.
type streamHistory struct {
	Stream    string
	Msgs      uint64
	FirstSeq  uint64
	FirstTime time.Time
	MaxAge    time.Duration
	MaxMsgs   int64
}

func readHistory(ctx context.Context, js jetstream.JetStream, name string) (streamHistory, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return streamHistory{}, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return streamHistory{}, fmt.Errorf("stream %s: %w", name, err)
	}
	return historyOf(info), nil
}

func historyOf(info *jetstream.StreamInfo) streamHistory {
	return streamHistory{
		Stream: info.Config.Name, Msgs: info.State.Msgs, FirstSeq: info.State.FirstSeq, FirstTime: info.State.FirstTime,
		MaxAge: info.Config.MaxAge, MaxMsgs: info.Config.MaxMsgs,
	}
}

// limits says what the stream keeps, e.g. "at most 200,000 messages and
// 24h".
func (h streamHistory) limits() string {
	var parts []string
	if h.MaxMsgs > 0 {
		parts = append(parts, thousands(float64(h.MaxMsgs))+" messages")
	}
	if h.MaxAge > 0 {
		parts = append(parts, h.MaxAge.String())
	}
	if len(parts) == 0 {
		return "everything (no limits)"
	}
	return "at most " + strings.Join(parts, " and ")
}

// String is one line for a person: "ORDERS holds 12,345 messages from
// sequence 1,002 (2026-12-01T12:00:00Z); it keeps at most 200,000
// messages and 24h0m0s".
func (h streamHistory) String() string {
	if h.Msgs == 0 {
		return fmt.Sprintf("%s is empty; it keeps %s", h.Stream, h.limits())
	}
	return fmt.Sprintf("%s holds %s messages from sequence %s (%s); it keeps %s", h.Stream, thousands(float64(h.Msgs)),
		thousands(float64(h.FirstSeq)), h.FirstTime.UTC().Format(time.RFC3339), h.limits())
}

// dropped reports whether messages from seq or from t on may be gone.
func (h streamHistory) dropped(fromSeq uint64, since time.Time) bool {
	switch {
	case fromSeq > 0:
		return fromSeq < h.FirstSeq
	case !since.IsZero():
		return h.Msgs > 0 && since.Before(h.FirstTime) && h.FirstSeq > 1
	}
	return false
}
