package collector_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
)

// keepingLog fails its first Produce as a write cut short would, keeping
// the messages it was handed as they are (not a copy), and hands the
// others to the memory log.
type keepingLog struct {
	*bus.Memory
	kept []bus.Message
}

func (l *keepingLog) Produce(ctx context.Context, m []bus.Message) error {
	if l.kept == nil {
		l.kept = m
		return errors.New("write cut short")
	}
	return l.Memory.Produce(ctx, m)
}

// The records of a request are encoded in an arena that later requests
// reuse once Kafka has acknowledged them, never after a failed Produce:
// the producer may still be writing them.
func TestArenaNotReusedAfterFailedProduce(t *testing.T) {
	apps, err := collector.NewApps(&collector.App{ID: "a", WriteKeys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	log := &keepingLog{Memory: bus.NewMemory("tags", 1)}
	s, err := collector.New(collector.DefaultConfig(), apps, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	post := func(device string) int {
		rec := `{"type":"event","deviceId":"` + device + `","name":"level_up"}` + "\n"
		req := httptest.NewRequest(http.MethodPost, "/v1/tags", strings.NewReader(strings.Repeat(rec, 50)))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("X-Write-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if code := post("first"); code != http.StatusServiceUnavailable {
		t.Fatalf("failed produce: status %d, want 503", code)
	}
	if len(log.kept) != 50 {
		t.Fatalf("the failed produce was handed %d messages, want 50", len(log.kept))
	}
	// Served one after the other in this goroutine, the next requests
	// would get the first one's arena back if it had been released.
	for range 3 {
		if code := post("other"); code != http.StatusOK {
			t.Fatalf("status %d, want 200", code)
		}
	}
	for i, m := range log.kept {
		if !bytes.Equal(m.Key, []byte("a/first")) {
			t.Fatalf("message %d of the failed produce overwritten by a later request: key %q, want a/first", i, m.Key)
		}
	}
}

// Requests served one after the other reuse the buffers of the one
// before: each hands Kafka its own records, however many the one before
// had.
func TestPooledBuffersReused(t *testing.T) {
	apps, err := collector.NewApps(&collector.App{ID: "a", WriteKeys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	log := bus.NewMemory("tags", 1)
	s, err := collector.New(collector.DefaultConfig(), apps, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	total := 0
	for i, n := range []int{50, 10, 30, 1} {
		device := fmt.Sprintf("dev%d", i)
		rec := `{"type":"event","deviceId":"` + device + `","name":"level_up"}` + "\n"
		req := httptest.NewRequest(http.MethodPost, "/v1/tags", strings.NewReader(strings.Repeat(rec, n)))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("X-Write-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, w.Code)
		}
		msgs := log.Messages("tags")
		if len(msgs) != total+n {
			t.Fatalf("request %d of %d records: %d messages in the log, want %d", i, n, len(msgs)-total, n)
		}
		for _, m := range msgs[total:] {
			if string(m.Key) != "a/"+device {
				t.Fatalf("request %d: a message keyed %q, want a/%s", i, m.Key, device)
			}
		}
		total += n
	}
}
