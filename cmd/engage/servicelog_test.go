package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log destination shared by the service's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// engage collect says when it stops how long it ran and what it took, in
// words and units an operator reads.
func TestCollectLogsItsStop(t *testing.T) {
	t.Setenv("ENGAGE_KAFKA_BROKERS", "")
	var logs lockedBuffer
	logOutput = &logs
	t.Cleanup(func() { logOutput = os.Stderr })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runCollect(ctx, []string{"-addr", "127.0.0.1:0", "-collector.inbox=false"}, nil) }()
	var addr string
	for deadline := time.Now().Add(time.Minute); addr == ""; time.Sleep(10 * time.Millisecond) {
		for _, l := range strings.Split(logs.String(), "\n") {
			var line struct{ Msg, Addr string }
			if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "collector listening" {
				addr = line.Addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not start:\n%s", logs.String())
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/tags",
		strings.NewReader(`[{"type":"event","deviceId":"d1","name":"article_read","extras":{"category":"sport"}},{"type":"nope"}]`))
	req.SetBasicAuth("demo-write-key", "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var stop map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "collect: stopped after ") {
			stop = m
		}
	}
	if stop == nil {
		t.Fatalf("no stop line:\n%s", logs.String())
	}
	ran, _ := stop["ran"].(string)
	if d, err := time.ParseDuration(ran); err != nil || d <= 0 || stop["records_accepted"] != 1.0 || stop["records_rejected"] != 1.0 || stop["level"] != "INFO" {
		t.Errorf("stop line %v: want ran as a duration, 1 record accepted, 1 rejected", stop)
	}
}
