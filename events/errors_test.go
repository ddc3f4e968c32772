package events_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/choreo-dev/choreo/events"
)

var errCause = errors.New("cause")

func TestKindOf(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		want          events.Kind
		wantPermanent bool
	}{
		{"Nil", nil, events.KindTransient, false},
		{"Unclassified", errCause, events.KindTransient, false},
		{"Permanent", events.Permanent(errCause), events.KindPermanent, true},
		{"Conflict", events.Conflict(errCause), events.KindConflict, true},
		{"NotFound", events.NotFound(errCause), events.KindNotFound, true},
		{"WrappedPermanent", fmt.Errorf("orders: apply: %w", events.Permanent(errCause)), events.KindPermanent, true},
		{"OutermostWins", events.Conflict(fmt.Errorf("ctx: %w", events.Permanent(errCause))), events.KindConflict, true},
		{"JoinedFindsClassified", errors.Join(errCause, events.NotFound(errCause)), events.KindNotFound, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := events.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf(%v): got %s, want %s", tt.err, got, tt.want)
			}
			if got := events.IsPermanent(tt.err); got != tt.wantPermanent {
				t.Errorf("IsPermanent(%v): got %v, want %v", tt.err, got, tt.wantPermanent)
			}
		})
	}
}

func TestKindKeepsTheChain(t *testing.T) {
	err := fmt.Errorf("handler: %w", events.Permanent(errCause))
	if !errors.Is(err, errCause) {
		t.Errorf("errors.Is(%v, cause): got false, want true", err)
	}
	if got, want := err.Error(), "handler: cause"; got != want {
		t.Errorf("message: got %q, want %q (classifying adds no text)", got, want)
	}
}

func TestKindOfNilWrapsNothing(t *testing.T) {
	for name, f := range map[string]func(error) error{
		"Permanent": events.Permanent, "Conflict": events.Conflict, "NotFound": events.NotFound,
	} {
		if err := f(nil); err != nil {
			t.Errorf("%s(nil): got %v, want nil", name, err)
		}
	}
}

func TestKindString(t *testing.T) {
	tests := map[events.Kind]string{
		events.KindTransient: "transient",
		events.KindPermanent: "permanent",
		events.KindConflict:  "conflict",
		events.KindNotFound:  "not_found",
	}
	for k, want := range tests {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String(): got %q, want %q", int(k), got, want)
		}
	}
}

func TestUnavailableIsRetriedNotPermanent(t *testing.T) {
	err := fmt.Errorf("payments: capture: %w", events.Unavailable(errors.New("breaker open")))
	if got := events.KindOf(err); got != events.KindUnavailable {
		t.Errorf("KindOf: got %v, want %v", got, events.KindUnavailable)
	}
	if events.IsPermanent(err) {
		t.Error("IsPermanent(unavailable): got true, want false — an outage must never dead-letter")
	}
	if got := events.KindUnavailable.String(); got != "unavailable" {
		t.Errorf("String: got %q", got)
	}
}
