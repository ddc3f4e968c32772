package idempotency_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a relay,
// a consumer or a server that was not stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
