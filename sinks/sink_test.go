package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks"
	"github.com/openengage/engage/sinks/clickhouse"
)

// memSource serves messages from a slice and records commits.
type memSource struct {
	mu        sync.Mutex
	msgs      []bus.Message
	next      int
	committed map[int]int64 // partition → highest committed offset
	arrived   chan struct{}
}

func newSource(msgs []bus.Message) *memSource {
	return &memSource{msgs: msgs, committed: map[int]int64{}, arrived: make(chan struct{}, 1)}
}

func (s *memSource) Fetch(ctx context.Context) (bus.Message, error) {
	for {
		s.mu.Lock()
		if s.next < len(s.msgs) {
			m := s.msgs[s.next]
			s.next++
			s.mu.Unlock()
			return m, nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return bus.Message{}, ctx.Err()
		case <-s.arrived:
		}
	}
}

func (s *memSource) Commit(_ context.Context, msgs []bus.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if c, ok := s.committed[m.Partition]; !ok || m.Offset > c {
			s.committed[m.Partition] = m.Offset
		}
	}
	return nil
}

func (s *memSource) partitionsCommitted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.committed)
}

// commits is a copy of the committed offsets, for messages: the sink may be committing.
func (s *memSource) commits() map[int]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.committed)
}

func (s *memSource) committedOffset(p int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed[p]
}

// rowStore is a RowWriter that fails while down, and refuses rows whose
// device is "poison" as a store would refuse bad data.
type rowStore struct {
	mu      sync.Mutex
	rows    []clickhouse.Row
	down    bool
	batches []int
}

var errRefused = errors.New("refused: poison")

func (s *rowStore) Write(_ context.Context, rows []clickhouse.Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("store unavailable")
	}
	for _, r := range rows {
		if r.Rec.DeviceID == "poison" {
			return errRefused
		}
	}
	s.rows = append(s.rows, rows...)
	s.batches = append(s.batches, len(rows))
	return nil
}

func (s *rowStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rows)
}

func record(dev string, i int) bus.Message {
	r := tag.Record{Kind: tag.KindEvent, AppID: "a", DeviceID: dev, MessageID: fmt.Sprintf("m%d", i), Name: "e", Time: time.Unix(1764320000, 0).UTC()}
	return bus.Message{Topic: "tags", Key: r.Key(), Value: r.AppendBinary(nil), Partition: i % 2, Offset: int64(i / 2)}
}

func run(t *testing.T, cfg sinks.Config, src sinks.Source, w sinks.Writer, dead bus.Producer) (stop func()) {
	t.Helper()
	s, err := sinks.New(cfg, src, w, dead, "tags", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatchesByRowsAndInterval(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the integration tests leave kafka-go connection pools behind
	var msgs []bus.Message
	for i := 0; i < 25; i++ {
		msgs = append(msgs, record("d", i))
	}
	src, store := newSource(msgs), &rowStore{}
	cfg := sinks.DefaultConfig("dead")
	cfg.BatchRows, cfg.FlushInterval = 10, 50*time.Millisecond
	stop := run(t, cfg, src, sinks.TagWriter{Rows: store}, bus.NewMemory("dead", 1))
	waitFor(t, "25 rows", func() bool { return store.count() == 25 })
	stop()
	store.mu.Lock()
	defer store.mu.Unlock()
	sizes := slices.Sorted(slices.Values(store.batches)) // two writers: batches may land in either order
	if fmt.Sprint(sizes) != "[5 10 10]" {                // two full batches, then the interval flushes the rest
		t.Fatalf("batches %v", store.batches)
	}
	if src.committedOffset(0) != 12 || src.committedOffset(1) != 11 {
		t.Fatalf("committed %v", src.commits())
	}
}

func TestStoreDownRetriesAndCommitsOnlyAfterWrite(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the integration tests leave kafka-go connection pools behind
	src, store := newSource([]bus.Message{record("d", 0), record("d", 1)}), &rowStore{down: true}
	cfg := sinks.DefaultConfig("dead")
	cfg.BatchRows, cfg.FlushInterval, cfg.BackoffMin, cfg.BackoffMax = 10, 10*time.Millisecond, time.Millisecond, 5*time.Millisecond
	stop := run(t, cfg, src, sinks.TagWriter{Rows: store}, bus.NewMemory("dead", 1))
	defer stop()
	time.Sleep(100 * time.Millisecond) // several failed attempts
	if src.partitionsCommitted() != 0 || store.count() != 0 {
		t.Fatalf("committed %v with the store down", src.commits())
	}
	store.mu.Lock()
	store.down = false
	store.mu.Unlock()
	waitFor(t, "the retried batch", func() bool { return store.count() == 2 })
	waitFor(t, "the commit", func() bool {
		return src.committedOffset(0) == 0 && src.committedOffset(1) == 0 && src.partitionsCommitted() == 2
	})
}

func TestDeadLettersDoNotBlock(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the integration tests leave kafka-go connection pools behind
	msgs := []bus.Message{record("d", 0), {Topic: "tags", Key: []byte("a/x"), Value: []byte{9, 9, 9}, Partition: 1, Offset: 0}, record("poison", 2), record("d", 3)}
	src, store := newSource(msgs), &rowStore{}
	dead := bus.NewMemory("dead", 1)
	cfg := sinks.DefaultConfig("dead")
	cfg.BatchRows, cfg.FlushInterval = 4, 10*time.Millisecond
	stop := run(t, cfg, src, sinks.TagWriter{Rows: store, Permanent: func(err error) bool { return errors.Is(err, errRefused) }}, dead)
	defer stop()
	waitFor(t, "dead letters", func() bool { return len(dead.Messages("dead")) == 2 })
	waitFor(t, "the good rows", func() bool { return store.count() == 2 })
	got := dead.Messages("dead")
	reasons := map[string]string{}
	for _, m := range got {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		reasons[h["source_partition"]+"/"+h["source_offset"]] = h["reason"]
	}
	if !strings.Contains(reasons["1/0"], "unknown codec version 9") || !strings.Contains(reasons["0/1"], "refused by the store") {
		t.Fatalf("dead letters %v", reasons)
	}
	// The commit follows the write: wait for it rather than read it at once.
	waitFor(t, "partition 1 committed past its dead letter", func() bool { return src.committedOffset(1) == 1 })
}

// syncBuffer is a log destination the sink's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// The sink says every interval what it wrote and its lag, once that it is
// idle, and when it stops, how long it ran and what it wrote in all.
func TestLogsProgressAndStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var msgs []bus.Message
	for i := range 25 {
		msgs = append(msgs, record("d", i))
	}
	msgs = append(msgs, bus.Message{Topic: "tags", Key: []byte("a/x"), Value: []byte{9}, Partition: 1, Offset: 99})
	src, store := newSource(msgs), &rowStore{}
	cfg := sinks.DefaultConfig("dead")
	cfg.BatchRows, cfg.FlushInterval, cfg.LogInterval = 10, 5*time.Millisecond, 20*time.Millisecond
	var logs syncBuffer
	s, err := sinks.New(cfg, src, sinks.TagWriter{Rows: store}, bus.NewMemory("dead", 1), "tags", nil,
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.SetLag(func(context.Context) (int64, error) { return int64(len(msgs) - 1 - store.count()), nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the idle line", func() bool { return strings.Contains(logs.String(), `msg="sink: idle, nothing to write"`) })
	time.Sleep(3 * cfg.LogInterval) // idle: no more lines
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	rows, dead := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r, d int
		if strings.Contains(l, `msg="sink: written"`) {
			if _, err := fmt.Sscanf(l[strings.Index(l, " rows="):], " rows=%d dead_letters=%d", &r, &d); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			rows, dead = rows+r, dead+d
			if !strings.Contains(l, "stream=tags") || !strings.Contains(l, " lag=") || !strings.Contains(l, " interval=") {
				t.Errorf("a progress line without its stream, lag or interval: %q", l)
			}
		}
		if strings.Contains(l, "=-1") || strings.Contains(l, "<nil>") {
			t.Errorf("an internal sentinel in %q", l)
		}
	}
	if rows != 25 || dead != 1 {
		t.Errorf("progress lines add up to %d rows and %d dead letters, want 25 and 1:\n%s", rows, dead, out)
	}
	if n := strings.Count(out, "sink: idle"); n != 1 {
		t.Errorf("said %d times that it is idle:\n%s", n, out)
	}
	if !strings.Contains(out, `msg="sink: stream tags stopped after `) || !strings.Contains(out, ": 25 rows written, 1 dead letters") ||
		!strings.Contains(out, "rows=25 dead_letters=1") {
		t.Errorf("no stop line with the totals:\n%s", out)
	}
}
