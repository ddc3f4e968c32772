package main

import (
	"context"
	"fmt"
	"io"
)

// runDlq is not built yet.
func runDlq(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return fmt.Errorf("%w: choreo dlq is not built yet", errUsage)
}
