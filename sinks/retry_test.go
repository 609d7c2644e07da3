package sinks_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/sinks"
)

// failingWriter fails its first fails writes with err, then writes; it
// records when each write began.
type failingWriter struct {
	mu    sync.Mutex
	err   error
	fails int
	at    []time.Time
}

func (w *failingWriter) Write(_ context.Context, msgs []bus.Message) ([]sinks.Dead, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.at = append(w.at, time.Now())
	if len(w.at) <= w.fails {
		return nil, w.err
	}
	return nil, nil
}

func (w *failingWriter) calls() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.at...)
}

var errSetup = errors.New("code: 516, message: default: Authentication failed")

// A write error that Config.Transient says will not go away by itself
// (wrong credentials) is still retried, the rows waiting for the fix, but
// only every BackoffMax and logged as an error; a transient one is logged
// as a warning and retried from BackoffMin.
func TestWriteRetryTellsSetupErrors(t *testing.T) {
	for _, transient := range []bool{false, true} {
		w := &failingWriter{err: errSetup, fails: 2}
		src := newSource([]bus.Message{record("d", 0)})
		var logs syncBuffer
		cfg := sinks.DefaultConfig("dead")
		cfg.BatchRows, cfg.FlushInterval, cfg.BackoffMin, cfg.BackoffMax = 1, 10*time.Millisecond, time.Millisecond, 300*time.Millisecond
		cfg.Transient = func(err error) bool { return transient || !errors.Is(err, errSetup) }
		s, err := sinks.New(cfg, src, w, bus.NewMemory("dead", 1), "tags", nil, slog.New(slog.NewJSONHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		waitFor(t, "the batch written after two failures", func() bool { return src.partitionsCommitted() == 1 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		at := w.calls()
		if len(at) != 3 {
			t.Fatalf("transient %v: %d writes, want 3", transient, len(at))
		}
		out := logs.String()
		if !transient {
			for i := 1; i < 3; i++ {
				if gap := at[i].Sub(at[i-1]); gap < cfg.BackoffMax {
					t.Errorf("a setup error retried after %s, before BackoffMax %s", gap, cfg.BackoffMax)
				}
			}
			if !strings.Contains(out, `"level":"ERROR","msg":"sink: write failed on an error that will not go away by itself`) ||
				!strings.Contains(out, `"err":"code: 516`) {
				t.Errorf("no error line naming the setup error:\n%s", out)
			}
		} else if strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, `"level":"WARN","msg":"sink: write failed; retrying"`) {
			t.Errorf("a transient error not logged as a warning:\n%s", out)
		}
	}
}

// concurrentWriter records the most writes it had at once; each write
// takes a while so that the sink's writers overlap.
type concurrentWriter struct {
	mu        sync.Mutex
	now, most int
	rows      int
}

func (w *concurrentWriter) Write(_ context.Context, msgs []bus.Message) ([]sinks.Dead, error) {
	w.mu.Lock()
	w.now++
	w.most = max(w.most, w.now)
	w.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	w.mu.Lock()
	w.now--
	w.rows += len(msgs)
	w.mu.Unlock()
	return nil, nil
}

// Config.Writers bounds the batches being written at once, exactly: with
// 2, never a third while the oldest waits for its commit.
func TestWritersBoundConcurrentWrites(t *testing.T) {
	var msgs []bus.Message
	for i := range 60 {
		msgs = append(msgs, record("d", i))
	}
	src, w := newSource(msgs), &concurrentWriter{}
	cfg := sinks.DefaultConfig("dead")
	cfg.BatchRows, cfg.FlushInterval, cfg.Writers = 1, time.Millisecond, 2
	stop := run(t, cfg, src, w, bus.NewMemory("dead", 1))
	waitFor(t, "every batch written", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.rows == 60 })
	stop()
	if w.most != 2 {
		t.Errorf("at most %d writes at once with Writers 2", w.most)
	}
}
