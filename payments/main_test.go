package payments_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// keep-alive not stopped after its provider call, or a handler still
// running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
