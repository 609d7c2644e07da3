package collector_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
)

// Run serves until its context ends, lets the request in flight finish, and
// leaves no goroutine behind.
func TestRunShutsDownCleanly(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	mem := bus.NewMemory("tags", 2)
	gate := &gatedLog{Producer: mem, entered: make(chan struct{}), release: make(chan struct{})}
	s, err := collector.New(collector.DefaultConfig(), apps, gate, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/tags", bytes.NewReader([]byte(`[{"type":"session_start","deviceId":"d"}]`)))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(key, "")
		resp, err := client.Do(req)
		if err != nil {
			status <- -1
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	// The request is waiting for Kafka when the shutdown begins.
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the log")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before the request in flight finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate.release)
	if got := <-status; got != http.StatusOK {
		t.Fatalf("request in flight during shutdown: %d", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(mem.Messages("tags")); n != 1 {
		t.Fatalf("%d records stored", n)
	}
}

// gatedLog signals when a Produce starts and holds it until released.
type gatedLog struct {
	bus.Producer
	entered, release chan struct{}
}

func (g *gatedLog) Produce(ctx context.Context, m []bus.Message) error {
	close(g.entered)
	<-g.release
	return g.Producer.Produce(ctx, m)
}
