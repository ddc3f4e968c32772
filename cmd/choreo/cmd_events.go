package main

import (
	"context"
	"fmt"
	"io"
)

// runEvents is not built yet.
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return fmt.Errorf("%w: choreo events is not built yet", errUsage)
}
