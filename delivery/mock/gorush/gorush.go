// Package gorush runs an unmodified gorush binary
// (github.com/appleboy/gorush v1.22, built by deploy/gorush/build.sh)
// against the APNs mock, for tests and benchmarks: its configuration file,
// starting and stopping it, and its HTTP API (pushes, stats).
//
// gorush cannot be given an APNs host: it always talks to
// api.sandbox.push.apple.com (or api.push.apple.com). It is pointed at the
// mock through its own core.http_proxy setting, set to the mock's CONNECT
// port (mock.APNsConfig.Connect, APNs.ConnectURL), with SSL_CERT_FILE naming
// the mock's CA (APNs.CAPEM); everything else is gorush's default
// configuration, apart from token authentication (ios key, key id, team
// id), android disabled (on by default, it refuses to start without FCM
// credentials) and its API bound to 127.0.0.1. See deploy/gorush/README.md.
package gorush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BuildHint says how to get the binary.
const BuildHint = "build it with deploy/gorush/build.sh (it prints the binary's path; see deploy/gorush/README.md), or set ENGAGE_GORUSH_BIN to a gorush v1.22 binary"

// Binary is the path of the gorush binary: $ENGAGE_GORUSH_BIN, else
// bin/gorush-1.22 under $ENGAGE_CACHE_DIR, else under
// ${XDG_CACHE_HOME:-~/.cache}/openengage, where deploy/gorush/build.sh puts
// it. The error says when it is not an executable file there, and how to
// build it.
func Binary() (string, error) {
	path := os.Getenv("ENGAGE_GORUSH_BIN")
	if path == "" {
		cache := os.Getenv("ENGAGE_CACHE_DIR")
		if cache == "" {
			base := os.Getenv("XDG_CACHE_HOME")
			if base == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return "", fmt.Errorf("gorush binary: no home directory (%v); %s", err, BuildHint)
				}
				base = filepath.Join(home, ".cache")
			}
			cache = filepath.Join(base, "openengage")
		}
		path = filepath.Join(cache, "bin", "gorush-1.22")
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return path, fmt.Errorf("gorush binary %s: %v; %s", path, err, BuildHint)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return path, fmt.Errorf("gorush binary %s: not an executable file; %s", path, BuildHint)
	}
	return path, nil
}

// Config is what gorush needs to reach the mock and authenticate.
type Config struct {
	// Bin is the binary; "" is Binary().
	Bin string
	// Dir is where the configuration, key, CA file and log go, and gorush's
	// working directory (a test's TempDir).
	Dir string
	// Proxy is core.http_proxy: the mock's ConnectURL.
	Proxy string
	// CAPEM is written to the file SSL_CERT_FILE names: the mock's CAPEM.
	CAPEM []byte
	// KeyP8 is the team's signing key (.p8); KeyID and TeamID go with it.
	KeyP8         []byte
	KeyID, TeamID string
	// Production sets ios.production (default false: the sandbox host).
	Production bool
}

// Gorush is a running gorush process.
type Gorush struct {
	cmd     *exec.Cmd
	url     string
	logPath string
	conf    []byte
	client  *http.Client
	exited  chan struct{}
	waitErr error
}

// ConfigYAML is the configuration file Start writes: gorush's defaults but
// for these keys.
func ConfigYAML(port string, cfg Config, keyPath string) []byte {
	return fmt.Appendf(nil, `# gorush v1.22 for the APNs mock: defaults but for what reaches the mock and authenticates.
core:
  address: "127.0.0.1"   # default "": all interfaces; loopback only here
  port: %q
  http_proxy: %q
android:
  enabled: false         # on by default, and then gorush wants FCM credentials
ios:
  enabled: true
  key_path: %q
  key_id: %q
  team_id: %q
  production: %t
`, port, cfg.Proxy, keyPath, cfg.KeyID, cfg.TeamID, cfg.Production)
}

// Start writes the files, starts gorush and waits until its API answers
// /healthz (at most 30 s, or ctx).
func Start(ctx context.Context, cfg Config) (*Gorush, error) {
	if cfg.Bin == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		cfg.Bin = bin
	}
	if cfg.Dir == "" || cfg.Proxy == "" || len(cfg.CAPEM) == 0 || len(cfg.KeyP8) == 0 || cfg.KeyID == "" || cfg.TeamID == "" {
		return nil, errors.New("gorush: Dir, Proxy, CAPEM, KeyP8, KeyID and TeamID are all needed")
	}
	caPath := filepath.Join(cfg.Dir, "mock-ca.pem")
	keyPath := filepath.Join(cfg.Dir, "AuthKey_"+cfg.KeyID+".p8")
	if err := os.WriteFile(caPath, cfg.CAPEM, 0o600); err != nil {
		return nil, fmt.Errorf("gorush: %w", err)
	}
	if err := os.WriteFile(keyPath, cfg.KeyP8, 0o600); err != nil {
		return nil, fmt.Errorf("gorush: %w", err)
	}
	var lastErr error
	// The port is found free and then given to gorush: another process may
	// take it meanwhile, so a start that fails is tried again.
	for attempt := range 3 {
		g, err := start(ctx, cfg, caPath, keyPath, attempt)
		if err == nil {
			return g, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, cfg Config, caPath, keyPath string, attempt int) (*Gorush, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("gorush: free port: %w", err)
	}
	conf := ConfigYAML(port, cfg, keyPath)
	confPath := filepath.Join(cfg.Dir, "gorush.yml")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return nil, fmt.Errorf("gorush: %w", err)
	}
	logPath := filepath.Join(cfg.Dir, fmt.Sprintf("gorush-%d.log", attempt))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("gorush: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(cfg.Bin, "-c", confPath)
	cmd.Dir = cfg.Dir
	cmd.Env = append(environ(), "SSL_CERT_FILE="+caPath)
	cmd.Stdout, cmd.Stderr = logf, logf // its access log: a line per push
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("gorush: start %s: %w", cfg.Bin, err)
	}
	g := &Gorush{
		cmd: cmd, url: "http://127.0.0.1:" + port, logPath: logPath, conf: conf, exited: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
	}
	go func() {
		g.waitErr = cmd.Wait()
		close(g.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/healthz", nil)
		if res, err := g.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		select {
		case <-g.exited:
			return nil, fmt.Errorf("gorush exited at start (%v): %s", g.waitErr, g.LogTail(20))
		case <-ctx.Done():
			_ = g.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = g.Stop()
			return nil, fmt.Errorf("gorush: API not up after 30 s: %s", g.LogTail(20))
		}
	}
}

// environ is this process's environment without anything that would change
// gorush's configuration (GORUSH_*) or its TLS roots.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(k), "GORUSH_") || k == "SSL_CERT_FILE" || k == "SSL_CERT_DIR" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// URL is gorush's API (http://127.0.0.1:port).
func (g *Gorush) URL() string { return g.url }

// Config is the configuration file it runs with.
func (g *Gorush) Config() []byte { return g.conf }

// Pid is its process id.
func (g *Gorush) Pid() int { return g.cmd.Process.Pid }

// Stop ends gorush: SIGTERM, then SIGKILL if it has not exited after 10 s.
// It may be called more than once.
func (g *Gorush) Stop() error {
	select {
	case <-g.exited:
		return nil
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = g.cmd.Process.Kill()
	<-g.exited
	return fmt.Errorf("gorush did not exit within 10 s of SIGTERM; killed")
}

// CPUTime is the processor time gorush used (user and system), once it
// has exited (after Stop); 0 before.
func (g *Gorush) CPUTime() time.Duration {
	select {
	case <-g.exited:
	default:
		return 0
	}
	if g.cmd.ProcessState == nil {
		return 0
	}
	return g.cmd.ProcessState.UserTime() + g.cmd.ProcessState.SystemTime()
}

// LogTail is the end of its output (at most n lines), for error messages.
func (g *Gorush) LogTail(n int) string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Notification is one notification of gorush's /api/push, the fields used
// here (platform 1 is iOS).
type Notification struct {
	Platform int            `json:"platform"`
	Tokens   []string       `json:"tokens"`
	Topic    string         `json:"topic,omitempty"`
	Message  string         `json:"message,omitempty"`
	Title    string         `json:"title,omitempty"`
	Sound    string         `json:"sound,omitempty"`
	Data     map[string]any `json:"data,omitempty"`
}

// Push posts notifications (at most core.max_notification, 100) to
// /api/push; gorush answers once they are queued.
func (g *Gorush) Push(ctx context.Context, ns []Notification) error {
	body, err := json.Marshal(map[string]any{"notifications": ns})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/api/push", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("gorush /api/push: %w", err)
	}
	defer res.Body.Close()
	ans, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("gorush /api/push: %s: %s", res.Status, ans)
	}
	return nil
}

// AppStats is gorush's /api/stat/app: tasks are notifications, pushes are
// APNs requests (one per token).
type AppStats struct {
	Version        string `json:"version"`
	BusyWorkers    int64  `json:"busy_workers"`
	SuccessTasks   int64  `json:"success_tasks"`
	FailureTasks   int64  `json:"failure_tasks"`
	SubmittedTasks int64  `json:"submitted_tasks"`
	TotalCount     int64  `json:"total_count"`
	IOS            struct {
		PushSuccess int64 `json:"push_success"`
		PushError   int64 `json:"push_error"`
	} `json:"ios"`
}

// Stats reads /api/stat/app.
func (g *Gorush) Stats(ctx context.Context) (AppStats, error) {
	var s AppStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/api/stat/app", nil)
	if err != nil {
		return s, err
	}
	res, err := g.client.Do(req)
	if err != nil {
		return s, fmt.Errorf("gorush /api/stat/app: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return s, fmt.Errorf("gorush /api/stat/app: %s", res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("gorush /api/stat/app: %w", err)
	}
	return s, nil
}

// SendTokens pushes one alert to each token: notifications of perNotification
// tokens (gorush's best case is at least ios.max_concurrent_pushes /
// core.worker_num, 100 / cores), 100 notifications per request, keeping at
// most maxQueued notifications not yet done in gorush's queue (its capacity
// is 8192: past it v1.22.0 answers 500 and drops the rest of the request).
// It returns when the last request is queued, not when the pushes are done.
func (g *Gorush) SendTokens(ctx context.Context, tmpl Notification, tokens []string, perNotification, maxQueued int) error {
	const perRequest = 100 // core.max_notification
	if perNotification <= 0 || maxQueued < perRequest {
		return fmt.Errorf("gorush: %d tokens per notification, at most %d queued: want > 0 and >= %d", perNotification, maxQueued, perRequest)
	}
	base, err := g.Stats(ctx)
	if err != nil {
		return err
	}
	sent := int64(0) // notifications
	batch := make([]Notification, 0, perRequest)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		for {
			s, err := g.Stats(ctx)
			if err != nil {
				return err
			}
			done := s.SuccessTasks + s.FailureTasks - base.SuccessTasks - base.FailureTasks
			if sent-done+int64(len(batch)) <= int64(maxQueued) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err := g.Push(ctx, batch); err != nil {
			return err
		}
		sent += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	for i := 0; i < len(tokens); i += perNotification {
		n := tmpl
		n.Platform = 1
		n.Tokens = tokens[i:min(i+perNotification, len(tokens))]
		batch = append(batch, n)
		if len(batch) == perRequest {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
