package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/bus/bustest"
)

func TestMemoryContract(t *testing.T) {
	bustest.TestProducer(t, func(t *testing.T) bustest.Log {
		m := bus.NewMemory("tags", 4)
		return bustest.Log{Producer: m, Topic: "tags", ReadAll: func(context.Context, int) ([]bus.Message, error) {
			return m.Messages("tags"), nil
		}}
	})
}

func TestMemoryDown(t *testing.T) {
	m := bus.NewMemory("tags", 2)
	m.SetDown(true)
	err := m.Produce(context.Background(), []bus.Message{{Key: []byte("k")}})
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("down log: %v, want ErrUnavailable", err)
	}
	m.SetDown(false)
	if err := m.Produce(context.Background(), []bus.Message{{Key: []byte("k")}}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Messages("tags")); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

// ProduceRetrying waits out an unavailable log, and gives up at once on
// any other error and when its context ends.
func TestProduceRetrying(t *testing.T) {
	m := bus.NewMemory("t", 2)
	m.SetDown(true)
	var tries atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- bus.ProduceRetrying(context.Background(), m, []bus.Message{{Key: []byte("k"), Value: []byte("v")}}, func(err error, _ time.Duration) {
			if !errors.Is(err, bus.ErrUnavailable) {
				t.Errorf("retry on %v", err)
			}
			if tries.Add(1) == 3 {
				m.SetDown(false)
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil || tries.Load() != 3 || len(m.Messages("t")) != 1 {
			t.Errorf("err %v after %d retries, %d messages", err, tries.Load(), len(m.Messages("t")))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still retrying after the log came back")
	}
	boom := errors.New("message too large")
	if err := bus.ProduceRetrying(context.Background(), producerFunc(func(context.Context, []bus.Message) error { return boom }), []bus.Message{{}}, nil); err != boom {
		t.Errorf("a permanent error: %v", err)
	}
	m.SetDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := bus.ProduceRetrying(ctx, m, []bus.Message{{}}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the context ended: %v", err)
	}
}

type producerFunc func(context.Context, []bus.Message) error

func (f producerFunc) Produce(ctx context.Context, msgs []bus.Message) error { return f(ctx, msgs) }
func (f producerFunc) Close() error                                          { return nil }
