package kafkabus_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A group consumer waiting in Fetch when its only broker stops rides the
// outage out (fetchRetrying, with pipeline/backoff's waits) and returns the
// next message once the broker is back, with no error in between. The
// broker is the test's own.
func TestConsumerFetchRidesOutBrokerRestart(t *testing.T) {
	t.Parallel() // a broker of its own: overlaps the other tests that start their own
	broker := servicetest.Start(t, "kafka")
	brokers := []string{broker.Addr()}
	topic := kafkatest.NewTopic(t, brokers, 1)
	produce := func(v string) {
		t.Helper()
		p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := p.Produce(ctx, []bus.Message{{Key: []byte("k"), Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	produce("before")
	var logs lockedLog
	c, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: "g-" + topic, Topic: topic, MaxWait: 500 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m, err := c.Fetch(ctx)
	if err != nil || string(m.Value) != "before" {
		t.Fatalf("first fetch: %q, %v", m.Value, err)
	}
	if err := c.Commit(ctx, []bus.Message{m}); err != nil {
		t.Fatal(err)
	}
	type fetched struct {
		m   bus.Message
		err error
	}
	got := make(chan fetched, 1)
	go func() {
		m, err := c.Fetch(ctx)
		got <- fetched{m, err}
	}()
	broker.Run("down", "kafka")
	// Let the fetch meet the outage for a while.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "kafka fetch failed; retrying") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case f := <-got:
		t.Fatalf("Fetch returned while the broker was down: %q, %v", f.m.Value, f.err)
	default:
	}
	broker.Run("up", "kafka")
	produce("after")
	f := <-got
	if f.err != nil || string(f.m.Value) != "after" {
		t.Fatalf("fetch across the restart: %q, %v\nlog:\n%s", f.m.Value, f.err, logs.String())
	}
	t.Logf("consumer log:\n%s", logs.String())
}
