package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestStaleReply(t *testing.T) {
	// The error nats.go hands the async error handler for a refused publish.
	refused := func(subject string) error {
		return fmt.Errorf("%w: Permissions Violation for Publish to %q", nats.ErrPermissionViolation, subject)
	}
	for _, tc := range []struct {
		name           string
		err            error
		sinceReconnect time.Duration
		want           bool
	}{
		{"reply just after a reconnect", refused("_INBOX.H7o4gHeGgVdVr7X7bLLHZ9.VinpgHeh"), time.Second, true},
		{"reply long after the reconnect", refused("_INBOX.abc.def"), staleReplyWindow + time.Second, false},
		{"never reconnected", refused("_INBOX.abc.def"), time.Since(time.Unix(0, 0)), false},
		{"an event subject", refused("orders.placed.1"), time.Second, false},
		{"another subject under _INBOX", refused("_INBOXES.x"), time.Second, false},
		{"subscribe refused", fmt.Errorf("%w: Permissions Violation for Subscription to %q", nats.ErrPermissionViolation, "_INBOX.x"), time.Second, false},
		{"another error", errors.New(`publish to "_INBOX.x"`), time.Second, false},
	} {
		if got := staleReply(tc.err, tc.sinceReconnect); got != tc.want {
			t.Errorf("%s: staleReply(%v, %v) = %v, want %v", tc.name, tc.err, tc.sinceReconnect, got, tc.want)
		}
	}
}
