package notifications

import "context"

// Sender delivers notifications to customers. The service depends on this
// interface, not on an implementation: package sender holds them (a log
// sink by default, SMTP as the option that emails customers).
type Sender interface {
	// Send delivers n. n.ID is the idempotency key: a sender able to
	// remember keys delivers a repeated id once.
	//
	// Every error is retried: the service marks it events.Transient, the
	// event is redelivered after a back-off and Send is called again with
	// the same notification.
	Send(ctx context.Context, n Notification) (SendResult, error)
}

// SendResult is a successful delivery.
type SendResult struct {
	// Channel names the medium ("log", "email"); it is published on
	// notifications.sent.
	Channel string
}
