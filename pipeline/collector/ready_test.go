package collector_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
)

// After a write Kafka did not acknowledge, /readyz answers 503 naming
// Kafka, and becomes 200 again by itself, with no request, once the probe
// answers: a load balancer that stopped sending traffic gets the
// collector back.
func TestReadyRecoversWithoutTrafficOnceKafkaAnswers(t *testing.T) {
	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	mem := bus.NewMemory("tags", 2)
	s, err := collector.New(collector.DefaultConfig(), apps, mem, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	var probes atomic.Int64
	s.SetProbe(func(ctx context.Context) error {
		probes.Add(1)
		if down.Load() {
			return errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
		}
		return nil
	})
	base := runServer(t, s)
	ready := func() (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := ready(); code != 200 {
		t.Fatalf("readyz %d %q before any failure", code, body)
	}

	down.Store(true)
	mem.SetDown(true)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/tags", bytes.NewReader([]byte(`[{"type":"session_start","deviceId":"d"}]`)))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("post while Kafka is down: %d", resp.StatusCode)
	}
	// Not ready, naming Kafka, and (once the probe ran) why it still fails.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := ready()
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "kafka: ") {
			t.Fatalf("readyz %d %q after a write Kafka did not acknowledge", code, body)
		}
		if strings.Contains(body, "connection refused") && !strings.Contains(strings.TrimSuffix(body, "\n"), "\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %q does not say why the probe fails after 30 s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Kafka is back; nobody posts.
	down.Store(false)
	mem.SetDown(false)
	deadline = time.Now().Add(30 * time.Second)
	for code, body := ready(); code != 200; code, body = ready() {
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %q 30 s after Kafka answers again, with no traffic", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if probes.Load() == 0 {
		t.Fatal("recovered without asking Kafka")
	}
	if n := len(mem.Messages("tags")); n != 0 {
		t.Fatalf("%d records stored: the recovery must not need a write", n)
	}
}

// With no traffic at all, /readyz follows the probe: 503 naming Kafka while
// it fails, 200 again once it answers.
func TestReadyFollowsTheProbeWithoutTraffic(t *testing.T) {
	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := collector.New(collector.DefaultConfig(), apps, bus.NewMemory("tags", 2), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	s.SetProbe(func(ctx context.Context) error {
		if down.Load() {
			return errors.New("brokers 127.0.0.1:1 do not answer: dial tcp 127.0.0.1:1: connect: connection refused")
		}
		return nil
	})
	base := runServer(t, s)
	wait := func(want int, prefix string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want && strings.HasPrefix(string(b), prefix) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz %d %q after 30 s, want %d %s…", resp.StatusCode, b, want, prefix)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait(200, "ready")
	down.Store(true)
	wait(http.StatusServiceUnavailable, "kafka: brokers 127.0.0.1:1 do not answer")
	down.Store(false)
	wait(200, "ready")
}

// runServer runs s on a loopback port until the test ends and returns its
// URL.
func runServer(t *testing.T, s *collector.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
