package collector

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
)

// steppingClock advances by step at each reading: a request's processing
// takes as long as the collector looks at the clock.
type steppingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// A request whose processing runs past its deadline stops where it is,
// answers 503 with Retry-After, and hands nothing to Kafka: nothing of it
// is acknowledged. The loops of every endpoint look at the deadline.
func TestProcessingDeadlineStopsTheRequest(t *testing.T) {
	apps, err := NewApps(&App{ID: "news", WriteKeys: []string{"news-write-key-1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ProcessTimeout = 10 * time.Second
	mem := bus.NewMemory("tags", 1)
	s, err := New(cfg, apps, mem, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &steppingClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC), step: time.Second}
	s.now = clock.now
	rec := `{"type":"event","deviceId":"d","name":"level_up"}`
	msg := `{"type":"track","event":"level_up","userId":"u"}`
	for _, tc := range []struct{ path, contentType, body string }{
		{"/v1/tags", "application/json", "[" + strings.Repeat(rec+",", 4999) + rec + "]"},
		{"/v1/tags", "application/x-ndjson", strings.Repeat(rec+"\n", 5000)},
		{"/v1/batch", "application/json", `{"batch":[` + strings.Repeat(msg+",", 4999) + msg + "]}"},
	} {
		req := httptest.NewRequest(http.MethodPost, tc.path, bytes.NewReader([]byte(tc.body)))
		req.Header.Set("Content-Type", tc.contentType)
		req.SetBasicAuth("news-write-key-1", "")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"processing_timeout"`) {
			t.Fatalf("%s %s past its deadline: %d %s", tc.path, tc.contentType, w.Code, w.Body)
		}
	}
	if n := len(mem.Messages("tags")); n != 0 {
		t.Fatalf("%d records of requests out of time handed to Kafka", n)
	}
	// With a clock that does not run, the same request goes through.
	clock.step = 0
	req := httptest.NewRequest(http.MethodPost, "/v1/tags", strings.NewReader("["+rec+"]"))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("news-write-key-1", "")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req.WithContext(context.Background()))
	if w.Code != http.StatusOK {
		t.Fatalf("in time: %d %s", w.Code, w.Body)
	}
}
