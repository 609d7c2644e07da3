package sinks_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/sinks"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// slowRows is a RowWriter whose first write takes hold seconds before it
// reaches ClickHouse (a slow insert): it says when that write has begun,
// and gives up, as a real insert does, if its ctx ends meanwhile. It
// records every message id it was handed.
type slowRows struct {
	inner   clickhouse.RowWriter
	hold    time.Duration
	begun   chan struct{}
	once    sync.Once
	mu      sync.Mutex
	ids     []string
	slowErr error // what the slow write returned
}

func (w *slowRows) Write(ctx context.Context, rows []clickhouse.Row) error {
	w.mu.Lock()
	for _, r := range rows {
		w.ids = append(w.ids, r.Rec.MessageID)
	}
	w.mu.Unlock()
	slow := false
	w.once.Do(func() { slow = true })
	if slow && w.hold > 0 {
		close(w.begun)
		t := time.NewTimer(w.hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			w.mu.Lock()
			w.slowErr = ctx.Err()
			w.mu.Unlock()
			return ctx.Err()
		}
	}
	return w.inner.Write(ctx, rows)
}

func (w *slowRows) handed() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ids...)
}

// On SIGTERM (Run's ctx cancelled) while an insert is in flight, the sink
// finishes that insert and commits its offsets before Run returns: its rows
// are in ClickHouse, the group has no lag, and a second sink of the same
// group writes only what arrives afterwards, nothing twice.
func TestSinkDrainsInFlightInsertOnStop(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	conn, cfg, _ := chtest.Database(t)
	topic := kafkatest.NewTopic(t, brokers, 2)
	group := "g-" + cfg.Database
	ctx := context.Background()
	const n = 3000
	want := produce(t, brokers, topic, n, 0, 1)

	scfg := sinks.DefaultConfig("dead")
	// One batch of everything, written slowly (3 s) and drained within a
	// generous bound.
	scfg.BatchRows, scfg.FlushInterval, scfg.Writers, scfg.DrainTimeout = n, 2*time.Second, 1, 2*time.Minute
	runSink := func(rows *slowRows) (stop func() error) {
		c, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: group, Topic: topic}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sinks.New(scfg, c, sinks.TagWriter{Rows: rows, Permanent: clickhouse.IsPermanent}, bus.NewMemory("dead", 1), "tags", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(sctx) }()
		return func() error {
			cancel()
			defer c.Close()
			select {
			case err := <-done:
				return err
			case <-time.After(3 * time.Minute):
				t.Fatal("Run did not return within 3 minutes of its ctx ending")
				return nil
			}
		}
	}

	first := &slowRows{inner: clickhouse.NewWriter(conn, cfg.Database), hold: 3 * time.Second, begun: make(chan struct{})}
	stop := runSink(first)
	select {
	case <-first.begun:
	case <-time.After(2 * time.Minute):
		stop()
		t.Fatal("the sink began no insert within 2 minutes")
	}
	stopAt := time.Now()
	if err := stop(); err != nil { // SIGTERM while the insert is in flight
		t.Fatalf("Run: %v", err)
	}
	t.Logf("Run returned %s after its ctx ended, the insert in flight (held %s) written and committed", time.Since(stopAt).Round(time.Millisecond), first.hold)
	if first.slowErr != nil {
		t.Errorf("the insert in flight was cut short: %v", first.slowErr)
	}
	if d, raw := countDistinct(t, conn, cfg.Database); d != uint64(want) || raw != uint64(want) {
		t.Fatalf("after the stop: %d distinct records, %d rows in ClickHouse; want %d of each", d, raw, want)
	}
	if lag, err := kafkabus.GroupLag(ctx, brokers, group, topic); err != nil || lag != 0 {
		t.Fatalf("after the stop the group's lag is %d (%v): the written batch was not committed", lag, err)
	}

	// A second sink of the same group: it gets only the records produced
	// after the stop.
	const more = 500
	second := &slowRows{inner: clickhouse.NewWriter(conn, cfg.Database), begun: make(chan struct{})}
	stop = runSink(second)
	want += produce(t, brokers, topic, more, 0, 2)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if d, _ := countDistinct(t, conn, cfg.Database); d == uint64(want) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("the second sink did not write the %d new records", more)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	ids := second.handed()
	for _, id := range ids {
		if !strings.HasPrefix(id, "2-") {
			t.Fatalf("the second sink wrote %s again, of the first sink's records", id)
		}
	}
	if len(ids) != more {
		t.Fatalf("the second sink was handed %d rows, want %d", len(ids), more)
	}
	if _, raw := countDistinct(t, conn, cfg.Database); raw != uint64(want) {
		t.Fatalf("%d rows in ClickHouse, want %d", raw, want)
	}
}

// blockedRows is a store that never answers: a write waits until its ctx
// ends.
type blockedRows struct{ begun chan struct{} }

func (w blockedRows) Write(ctx context.Context, _ []clickhouse.Row) error {
	select {
	case w.begun <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// The drain is bounded: an insert that does not finish is abandoned once
// the drain timeout has passed after the stop, uncommitted (its records are
// read again after a restart), and Run returns.
func TestSinkDrainTimeoutAbandonsStuckInsert(t *testing.T) {
	src := newSource([]bus.Message{record("d", 0), record("d", 1), record("d", 2)})
	rows := blockedRows{begun: make(chan struct{}, 1)}
	cfg := sinks.DefaultConfig("dead")
	cfg.BatchRows, cfg.FlushInterval, cfg.DrainTimeout = 3, 10*time.Millisecond, 300*time.Millisecond
	s, err := sinks.New(cfg, src, sinks.TagWriter{Rows: rows}, bus.NewMemory("dead", 1), "tags", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-rows.begun:
	case <-time.After(time.Minute):
		t.Fatal("no write began")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute): // the drain timeout is 300 ms
		t.Fatal("Run still draining a minute after its ctx ended")
	}
	if n := src.partitionsCommitted(); n != 0 {
		t.Fatalf("committed %v with nothing written", src.commits())
	}
	cfg.DrainTimeout = -time.Second
	if _, err := sinks.New(cfg, src, sinks.TagWriter{Rows: rows}, bus.NewMemory("dead", 1), "tags", nil, nil); err == nil || !strings.Contains(err.Error(), "drain timeout") {
		t.Errorf("a negative drain timeout: %v", err)
	}
}
