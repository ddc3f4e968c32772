// Package sender holds implementations of notifications.Sender, the way
// the notifications service reaches customers.
//
// Log is the default: it writes each notification as one structured log
// record. SMTP is the option: it emails each notification to the customer
// through a mail server (see NewSMTP and SMTPConfig).
package sender

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/choreo-dev/choreo/notifications"
)

// ChannelLog is the channel Log reports on notifications.sent.
const ChannelLog = "log"

// Log delivers notifications by logging them: one Info record per
// notification id, with the order, the customer, the status and the
// reason as attributes. It honours the idempotency key within one process,
// for the most recent RecentIDs ids: a repeated id is counted but not
// logged again. It remembers no more than that, so that its memory stays
// flat however long the process runs. It is safe for concurrent use.
type Log struct {
	log *slog.Logger

	mu    sync.Mutex
	calls map[string]int
	order []string // ids in calls, oldest first
	sent  int
}

// RecentIDs is how many notification ids Log remembers.
const RecentIDs = 10_000

var _ notifications.Sender = (*Log)(nil)

// NewLog returns a Log sink writing to log. A nil log writes to
// slog.Default(): for this sink the log is the delivery, so discarding it
// would lose every notification.
func NewLog(log *slog.Logger) *Log {
	if log == nil {
		log = slog.Default()
	}
	return &Log{log: log, calls: map[string]int{}}
}

// Send implements notifications.Sender.
func (l *Log) Send(ctx context.Context, n notifications.Notification) (notifications.SendResult, error) {
	if err := ctx.Err(); err != nil {
		return notifications.SendResult{}, fmt.Errorf("sender: log %s: %w", n.ID, err)
	}
	l.mu.Lock()
	l.calls[n.ID]++
	first := l.calls[n.ID] == 1
	if first {
		l.sent++
		l.order = append(l.order, n.ID)
		for len(l.order) > RecentIDs {
			delete(l.calls, l.order[0])
			l.order[0] = ""
			l.order = l.order[1:]
		}
	}
	l.mu.Unlock()
	if first {
		l.log.LogAttrs(ctx, slog.LevelInfo, "customer notified",
			slog.String("notification_id", n.ID),
			slog.String("order_id", n.OrderID),
			slog.String("customer_id", n.CustomerID),
			slog.String("status", n.Status),
			slog.String("reason", n.Reason),
			slog.Int64("total_amount", n.Total.Amount),
			slog.String("currency", n.Total.Currency),
			slog.String("channel", ChannelLog))
	}
	return notifications.SendResult{Channel: ChannelLog}, nil
}

// Calls returns how many times Send was called with the notification id,
// for one of the most recent RecentIDs ids (0 for an older one).
func (l *Log) Calls(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[id]
}

// Sent returns how many distinct notifications were delivered.
func (l *Log) Sent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}
