package main

import (
	"context"
	"fmt"
	"io"
)

// runTrace is not built yet.
func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return fmt.Errorf("%w: choreo trace is not built yet", errUsage)
}
