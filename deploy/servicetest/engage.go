package servicetest

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Engage runs the engage binary, built once per test from this module,
// with an environment free of the caller's ENGAGE_* settings (so that a
// developer's shell cannot change what a test runs).
type Engage struct {
	t   testing.TB
	Bin string
	Env []string
}

// BuildEngage builds cmd/engage into the test's temporary folder.
func BuildEngage(t testing.TB) *Engage {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "engage")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/engage")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build engage: %v\n%s", err, out)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENGAGE_") {
			env = append(env, kv)
		}
	}
	return &Engage{t: t, Bin: bin, Env: env}
}

// Run runs a command of the binary to its end and returns its standard
// output; the test fails with the output when it fails.
func (e *Engage) Run(args ...string) string {
	e.t.Helper()
	cmd := exec.Command(e.Bin, args...)
	cmd.Env = e.Env
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("engage %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// Service is a running engage service.
type Service struct {
	URL     string // http://127.0.0.1:PORT of its -addr
	Log     string // its log file
	cmd     *exec.Cmd
	exited  chan error
	stopped bool
}

// Start starts service with its HTTP address on a free loopback port
// (addrFlag: "-addr", or the sink's "-metrics.addr") and waits until path
// answers 200 there. It gets SIGTERM when the test ends (SIGKILL after 20
// s); its log's last lines are shown when the test failed.
func (e *Engage) Start(service, addrFlag, path string, args ...string) *Service {
	e.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(e.t))
	s := &Service{URL: "http://" + addr, Log: filepath.Join(e.t.TempDir(), service+".log"), exited: make(chan error, 1)}
	out, err := os.Create(s.Log)
	if err != nil {
		e.t.Fatal(err)
	}
	s.cmd = exec.Command(e.Bin, append([]string{service, addrFlag, addr}, args...)...)
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = e.Env, out, out
	if err := s.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	e.t.Cleanup(func() {
		s.Stop()
		out.Close()
		if e.t.Failed() {
			data, _ := os.ReadFile(s.Log)
			e.t.Logf("engage %s log (last lines):\n%s", service, LastLines(data, 30))
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-s.exited:
			s.stopped = true // nothing left to stop: the cleanup must not wait for it
			data, _ := os.ReadFile(s.Log)
			e.t.Fatalf("engage %s exited: %v\n%s", service, err, LastLines(data, 30))
		default:
		}
		if resp, err := http.Get(s.URL + path); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("engage %s did not answer 200 on %s within 2 minutes", service, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the service (SIGTERM, then SIGKILL after 20 s) and waits.
func (s *Service) Stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// LastLines returns the last n lines of data.
func LastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
