package events

import "errors"

// Kind classifies a failure by what the caller should do about it. A
// consumer decides once, from the kind, whether to retry a message or move
// it to the dead-letter queue; the HTTP layer maps the same kinds to status
// codes.
type Kind int

const (
	// KindTransient is the default: the same input may succeed later
	// (database busy, broker down, provider timeout). Retry with back-off.
	KindTransient Kind = iota
	// KindPermanent means the input itself is wrong (undecodable, invalid,
	// unknown type) and no retry will change that. Dead-letter it.
	KindPermanent
	// KindConflict means the input is valid but not allowed in the current
	// state (for example cancelling a confirmed order).
	KindConflict
	// KindNotFound means the input names something that does not exist.
	KindNotFound
	// KindUnavailable means a dependency the input needs is down (a
	// payment provider outage, an open circuit breaker). The input is
	// fine: retry with back-off for as long as it takes, and never
	// dead-letter it for the number of attempts.
	KindUnavailable
	// KindEarly means the input arrived before a message it follows:
	// two events of one saga travel on different streams and may arrive
	// in either order, and a consumer that fell behind on one stream (a
	// process paused, a server restarted) sees the later one first. The
	// input is fine if its predecessor comes: retry it for as long as
	// that may take (the consumer's ReorderWait, counted from when the
	// stream stored it), however many deliveries that is, and only then
	// dead-letter it — one whose predecessor never comes is forged or
	// lost.
	KindEarly
)

func (k Kind) String() string {
	switch k {
	case KindPermanent:
		return "permanent"
	case KindConflict:
		return "conflict"
	case KindNotFound:
		return "not_found"
	case KindUnavailable:
		return "unavailable"
	case KindEarly:
		return "early"
	default:
		return "transient"
	}
}

type kindError struct {
	kind Kind
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func withKind(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: k, err: err}
}

// Transient marks err as worth retrying, overriding any kind further down
// its chain: a payment provider that answers "invalid request" during an
// outage must not send the message to the dead-letter queue.
func Transient(err error) error { return withKind(KindTransient, err) }

// Unavailable marks err as a dependency outage: retried without a bound on
// the number of attempts.
func Unavailable(err error) error { return withKind(KindUnavailable, err) }

// Early marks err as input that came before a message it follows (see
// KindEarly): retried for a time, not for a number of deliveries.
func Early(err error) error { return withKind(KindEarly, err) }

// Permanent marks err as a failure no retry can fix.
func Permanent(err error) error { return withKind(KindPermanent, err) }

// Conflict marks err as valid input refused in the current state.
func Conflict(err error) error { return withKind(KindConflict, err) }

// NotFound marks err as naming something that does not exist.
func NotFound(err error) error { return withKind(KindNotFound, err) }

// KindOf returns the kind of the outermost classified error in err's chain,
// or KindTransient when none is classified: an unknown failure is retried,
// never dropped.
func KindOf(err error) Kind {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return KindTransient
}

// IsPermanent reports whether err is classified as permanent, conflict or
// not found: the input will not succeed on a retry.
func IsPermanent(err error) bool {
	switch KindOf(err) {
	case KindPermanent, KindConflict, KindNotFound:
		return err != nil
	}
	return false
}

// Detail returns the message of err as it was when it was classified
// (without the context later layers wrapped around it), for showing to
// the client that caused it. Unclassified errors give "".
func Detail(err error) string {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.err.Error()
	}
	return ""
}
