package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc supervises one engage service across the faults of a run: each
// start runs the binary with the same arguments and the same HTTP address
// (so that the load finds the collector where it was), appending to one
// log file. A process that exits without having been signalled is
// counted: a service must not die on its own.
type Proc struct {
	Name    string
	Bin     string
	Env     []string
	Args    []string // the service's verb and flags, its address among them
	URL     string   // http://ADDR of the address in Args
	Health  string   // the path that answers 200 once the service is up
	LogPath string

	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	signalled  bool
	starts     int
	unexpected []string // exits nobody asked for: when, and how
	log        *os.File
}

// Start starts the service and waits until Health answers 200 (within
// timeout). It is an error to start a process that is running.
func (p *Proc) Start(timeout time.Duration) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	if p.log == nil {
		f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			p.mu.Unlock()
			return err
		}
		p.log = f
	}
	p.starts++
	fmt.Fprintf(p.log, "=== chaos: start %d of %s at %s\n", p.starts, p.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.Env, p.log, p.log
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.signalled = cmd, exited, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		if !p.signalled {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s: pid %d exited by itself at %s: %v", p.Name, cmd.Process.Pid, time.Now().UTC().Format(time.RFC3339), err))
		}
		fmt.Fprintf(p.log, "=== chaos: %s pid %d ended at %s: %v\n", p.Name, cmd.Process.Pid, time.Now().UTC().Format(time.RFC3339Nano), err)
		p.cmd = nil
		p.mu.Unlock()
		close(exited)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s exited while starting (log: %s)", p.Name, p.LogPath)
		default:
		}
		if resp, err := client.Get(p.URL + p.Health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 on %s within %s (log: %s)", p.Name, p.Health, timeout, p.LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Signal sends sig (SIGKILL or SIGTERM) and waits until the process has
// exited; after grace without an exit it is killed. It returns how long
// the process took to exit.
func (p *Proc) Signal(sig syscall.Signal, grace time.Duration) (time.Duration, error) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return 0, fmt.Errorf("%s: not running", p.Name)
	}
	p.signalled = true
	p.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("%s: %v: %w", p.Name, sig, err)
	}
	select {
	case <-exited:
		return time.Since(start), nil
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
		return time.Since(start), fmt.Errorf("%s: no exit within %s of %v: killed", p.Name, grace, sig)
	}
}

// Running says whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Unexpected returns the exits nobody asked for.
func (p *Proc) Unexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// Close stops the process (SIGTERM, SIGKILL after 20 s) and closes its log.
func (p *Proc) Close() {
	if p.Running() {
		_, _ = p.Signal(syscall.SIGTERM, 20*time.Second)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log != nil {
		p.log.Close()
		p.log = nil
	}
}
