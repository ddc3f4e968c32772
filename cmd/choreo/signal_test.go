//go:build unix

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Ctrl-C or a SIGTERM (what Kubernetes sends) is how choreo up is meant to
// stop: after draining it exits 0, so neither a shell nor the task runner
// reports a failure.
func TestUpExitsZeroOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := buildChoreo(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			proc, _ := startProcess(t, bin, "--nats-listen", "127.0.0.1:0", "--data", t.TempDir())
			if err := proc.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := proc.Wait(); err != nil {
				t.Errorf("choreo up after %s: got %v, want exit status 0", sig, err)
			}
		})
	}
}

// The README's first command, stopped as a terminal's Ctrl-C stops it: a
// SIGINT to the whole process group (go tool, task, choreo). It used to
// end with `task: Failed to run task "up": exit status 1` because the task
// ran choreo through go run, which exits 1 whenever it is interrupted.
func TestTaskUpExitsZeroOnCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the task runner and choreo; skipped with -short")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "tool", "task", "up", "BIN="+filepath.Join(dir, "choreo"), "--",
		"--nats-listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--provider-listen", "127.0.0.1:0", "--data", dir, "--log-level", "warn")
	cmd.Dir = filepath.Join("..", "..")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	var printed strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "choreo is up") {
			break
		}
	}
	if !strings.Contains(printed.String(), "choreo is up") {
		t.Fatalf("go tool task up never said it was up:\n%s", printed.String())
	}
	go func() {
		for sc.Scan() { // keep the pipe drained while choreo stops
		}
	}()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("go tool task up after Ctrl-C: got %v, want exit status 0", err)
	}
}
