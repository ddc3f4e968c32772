package provider_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// simulator not stopped, or a call still in flight.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
