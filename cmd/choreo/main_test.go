package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// choreo up and serve they start must stop everything it started —
// consumers, relays, HTTP servers, NATS connections and database pools.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
