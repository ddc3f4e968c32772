package ceiling_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a probe leaves a goroutine behind: a
// worker, a relay or a subscription that was not stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
