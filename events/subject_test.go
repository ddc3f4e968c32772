package events_test

import (
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events"
)

func TestSubject(t *testing.T) {
	got, err := events.Subject("orders", "placed", "0193a5c2-7c1e-7000-8000-000000000001")
	if err != nil {
		t.Fatalf("Subject: got %v, want nil", err)
	}
	if want := "orders.placed.0193a5c2-7c1e-7000-8000-000000000001"; got != want {
		t.Errorf("Subject: got %q, want %q", got, want)
	}
	if got := events.SubjectKey(got); got != "0193a5c2-7c1e-7000-8000-000000000001" {
		t.Errorf("SubjectKey: got %q, want the order id", got)
	}

	bad := []struct {
		name                string
		service, event, key string
		wantToken           string
	}{
		{"EmptyService", "", "placed", "k", "service"},
		{"EmptyEvent", "orders", "", "k", "event"},
		{"EmptyKey", "orders", "placed", "", "key"},
		{"DotInKey", "orders", "placed", "a.b", "key"},
		{"StarInEvent", "orders", "*", "k", "event"},
		{"GtInService", ">", "placed", "k", "service"},
		{"SpaceInKey", "orders", "placed", "a b", "key"},
		{"TabInKey", "orders", "placed", "a\tb", "key"},
		{"NewlineInKey", "orders", "placed", "a\nb", "key"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s, err := events.Subject(tt.service, tt.event, tt.key)
			if err == nil {
				t.Fatalf("Subject(%q, %q, %q): got %q, want an error", tt.service, tt.event, tt.key, s)
			}
			if !events.IsPermanent(err) {
				t.Errorf("IsPermanent(%v): got false, want true", err)
			}
			if !strings.Contains(err.Error(), tt.wantToken) {
				t.Errorf("error: got %q, want it to name the %s token", err, tt.wantToken)
			}
		})
	}
}

func TestValidToken(t *testing.T) {
	for _, ok := range []string{"orders", "SKU-1", "0193a5c2-7c1e-7000-8000-000000000001", "a_b", "ünïcode"} {
		if err := events.ValidToken(ok); err != nil {
			t.Errorf("ValidToken(%q): got %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "a.b", "*", ">", "a b", "a\tb", "a\rb", "a\nb"} {
		if err := events.ValidToken(bad); err == nil {
			t.Errorf("ValidToken(%q): got nil, want an error", bad)
		}
	}
}

func TestSubjectKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"orders.placed.o-1", "o-1"},
		{"inventory.restocked.SKU-1", "SKU-1"},
		{"nodots", "nodots"},
		{"trailing.", ""},
	}
	for _, tt := range tests {
		if got := events.SubjectKey(tt.in); got != tt.want {
			t.Errorf("SubjectKey(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
