package main

import (
	"context"
	"fmt"
	"io"
)

// runReplay is not built yet.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return fmt.Errorf("%w: choreo replay is not built yet", errUsage)
}
