package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
)

// buildBinaries builds the choreo binary and the nats-server of the
// version go.mod pins (not whatever server the machine has), once per
// test run, without -race: they are the system under test, not the test.
func buildBinaries(t *testing.T) (choreo, natsServer string) {
	t.Helper()
	dir := t.TempDir()
	choreo, natsServer = filepath.Join(dir, "choreo"), filepath.Join(dir, "nats-server")
	for bin, pkg := range map[string]string{choreo: "github.com/choreo-dev/choreo/cmd/choreo", natsServer: "github.com/nats-io/nats-server/v2"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return choreo, natsServer
}

// freePort returns a port free at the moment: the NATS server must come
// back on the same port after a restart, so it cannot listen on port 0.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is one OS process of the system under test, started again after
// a kill with the same arguments. Its output goes to a log file in the
// test's directory, kept for a post-mortem.
type process struct {
	name string
	bin  string
	args []string
	env  []string // added to the test's environment
	logs string
	// ready waits until the process took its place, and returns the
	// address it announced ("" when it announces none).
	ready func(ctx context.Context, stdout *bufio.Scanner) (string, error)

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{}
	addr        string
	paused      bool
	incarnation int
	claimed     bool // a fault is under way on it
}

// claim makes the process the target of one fault, so that two faults
// never hit it at once (two restarts would start it twice); false when
// another fault holds it.
func (p *process) claim() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.claimed {
		return false
	}
	p.claimed = true
	return true
}

func (p *process) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claimed = false
}

// claimWhenFree waits until the process is free of other faults and
// claims it.
func (p *process) claimWhenFree(ctx context.Context) error {
	return until(ctx, "claim "+p.name, func() (bool, error) { return p.claim(), nil })
}

var httpLine = regexp.MustCompile(`^\s+HTTP\s+(http://\S+)`)

// announcedHTTP waits for choreo serve's "HTTP http://…" line.
func announcedHTTP(ctx context.Context, sc *bufio.Scanner) (string, error) {
	for sc.Scan() {
		if m := httpLine.FindStringSubmatch(sc.Text()); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("exited before it announced its HTTP address")
}

// start runs the process and waits until it is ready; a process that
// exits or does not announce itself within a minute is an error (the
// caller may try again: a service cannot start while NATS is down).
func (p *process) start(ctx context.Context) error {
	log, err := os.OpenFile(p.logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	type announcement struct {
		addr string
		err  error
	}
	done := make(chan struct{})
	announced := make(chan announcement, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		addr, err := p.ready(ctx, sc)
		announced <- announcement{addr, err}
		for sc.Scan() { // keep the pipe drained
		}
		_ = cmd.Wait()
		close(done)
	}()
	var a announcement
	select {
	case a = <-announced:
	case <-ctx.Done():
		a.err = ctx.Err()
	}
	if a.err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: %w (log %s)", p.name, a.err, p.logs)
	}
	addr := a.addr
	p.mu.Lock()
	p.cmd, p.done, p.addr, p.paused = cmd, done, addr, false
	p.incarnation++
	p.mu.Unlock()
	return nil
}

// startRetrying starts the process, trying again while the attempt fails
// (its dependencies may be restarting) until ctx ends.
func (p *process) startRetrying(ctx context.Context) error {
	for {
		err := p.start(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s would not start: %w", p.name, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL — no drain, no flush — and waits for the exit. A
// paused process dies too.
func (p *process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.addr = nil, ""
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// signal sends SIGSTOP or SIGCONT.
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	p.paused = sig == syscall.SIGSTOP
	return p.cmd.Process.Signal(sig)
}

// state returns the process's announced address and whether it is up and
// not paused.
func (p *process) state() (addr string, serving bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr, p.cmd != nil && !p.paused
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// natsReady waits until the NATS server takes connections with JetStream.
func natsReady(url string, opt nats.Option) func(ctx context.Context, _ *bufio.Scanner) (string, error) {
	return func(ctx context.Context, _ *bufio.Scanner) (string, error) {
		for {
			nc, err := nats.Connect(url, nats.Timeout(time.Second), opt)
			if err == nil {
				js, jerr := nc.JetStream()
				if jerr == nil {
					_, err = js.AccountInfo()
				} else {
					err = jerr
				}
				nc.Close()
				if err == nil {
					return url, nil
				}
			}
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("nats-server not ready at %s: %w", url, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

var providerLine = regexp.MustCompile(`on (http://\S+)`)

// announcedProvider waits for choreo provider's "… on http://…" line.
func announcedProvider(_ context.Context, sc *bufio.Scanner) (string, error) {
	for sc.Scan() {
		if m := providerLine.FindStringSubmatch(sc.Text()); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("exited before it announced its address")
}

// natsServerProcess is a standalone nats-server with JetStream, its store
// in dir, on a port that stays the same across restarts, with the users
// and permissions of `choreo nats-config`: each service connects as its
// own user, which may publish only its own events. It returns the server,
// its URL and the directory of the users' nkeys (<user>.nk).
func natsServerProcess(t *testing.T, choreo, natsServer, dir string) (p *process, url, keys string) {
	t.Helper()
	conf, keys := filepath.Join(dir, "nats"), filepath.Join(dir, "nats", "keys")
	if out, err := exec.Command(choreo, "nats-config", "--out", conf, "--keys", keys).CombinedOutput(); err != nil {
		t.Fatalf("choreo nats-config: %v\n%s", err, out)
	}
	env, err := os.ReadFile(filepath.Join(keys, "nkeys.env"))
	if err != nil {
		t.Fatal(err)
	}
	var publicKeys []string // the server's environment, as auth.conf wants it
	for _, line := range strings.Split(string(env), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			publicKeys = append(publicKeys, line)
		}
	}
	port := freePort(t)
	url = "nats://127.0.0.1:" + strconv.Itoa(port)
	server := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n}\ninclude ./auth.conf\n", port, filepath.Join(dir, "jetstream"))
	if err := os.WriteFile(filepath.Join(conf, "chaos.conf"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	operator, err := natsauth.CredentialsOption(natsauth.KeyFile(keys, catalog.RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	return &process{name: "nats-server", bin: natsServer, logs: filepath.Join(dir, "nats-server.log"),
		args: []string{"-c", filepath.Join(conf, "chaos.conf")}, env: publicKeys,
		ready: natsReady(url, operator)}, url, keys
}
