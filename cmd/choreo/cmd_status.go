package main

import (
	"context"
	"fmt"
	"io"
)

// runStatus is not built yet.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return fmt.Errorf("%w: choreo status is not built yet", errUsage)
}
