// Package bustest is the contract test that every bus.Producer passes: the
// in-memory log and the Kafka adapter alike.
package bustest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
)

// Log is the implementation under test: a producer on a fresh topic, and a
// way to read back everything that topic holds.
type Log struct {
	Producer bus.Producer
	Topic    string
	// ReadAll returns every message of the topic once at least want are
	// there (or what it has when ctx ends), in offset order per partition.
	ReadAll func(ctx context.Context, want int) ([]bus.Message, error)
}

// TestProducer runs the contract. newLog must give a fresh, empty topic.
func TestProducer(t *testing.T, newLog func(t *testing.T) Log) {
	t.Run("ExactlyWhatWasProduced", func(t *testing.T) {
		l := newLog(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		const devices, perDevice, writers = 20, 25, 4
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < perDevice; i++ {
					var batch []bus.Message
					for d := w; d < devices; d += writers {
						batch = append(batch, bus.Message{
							Topic: l.Topic,
							Key:   fmt.Appendf(nil, "app/dev-%d", d),
							Value: fmt.Appendf(nil, "dev-%d seq-%04d", d, i),
						})
					}
					if err := l.Producer.Produce(ctx, batch); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("produce: %v", err)
		}
		got, err := l.ReadAll(ctx, devices*perDevice)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if len(got) != devices*perDevice {
			t.Fatalf("read %d messages, produced %d", len(got), devices*perDevice)
		}
		partOf := map[string]int{}
		next := map[string]int{}
		for _, m := range got {
			k := string(m.Key)
			if p, ok := partOf[k]; ok && p != m.Partition {
				t.Fatalf("key %s on partitions %d and %d", k, p, m.Partition)
			}
			partOf[k] = m.Partition
			var d, seq int
			if _, err := fmt.Sscanf(string(m.Value), "dev-%d seq-%d", &d, &seq); err != nil {
				t.Fatalf("unexpected value %q", m.Value)
			}
			if fmt.Sprintf("app/dev-%d", d) != k {
				t.Fatalf("value %q under key %s", m.Value, k)
			}
			if seq != next[k] {
				t.Fatalf("key %s: got seq %d, want %d (order or loss)", k, seq, next[k])
			}
			next[k]++
		}
	})
	// The log's time is when the log took a message, never a time the
	// caller gave: retention compares it with the broker's clock, so an
	// event time weeks old would have the message deleted at once, and one
	// in the future would keep it past retention.
	t.Run("TimeIsTheLogs", func(t *testing.T) {
		l := newLog(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var batch []bus.Message
		for i, d := range []time.Duration{-42 * 24 * time.Hour, -time.Hour, 0, time.Hour, 20 * time.Hour, 400 * 24 * time.Hour} {
			batch = append(batch, bus.Message{Topic: l.Topic, Key: fmt.Appendf(nil, "app/dev-%d", i), Value: []byte("v"), Time: time.Now().Add(d)})
		}
		before := time.Now().Truncate(time.Millisecond) // Kafka keeps milliseconds
		if err := l.Producer.Produce(ctx, batch); err != nil {
			t.Fatalf("produce: %v", err)
		}
		after := time.Now()
		got, err := l.ReadAll(ctx, len(batch))
		if err != nil || len(got) != len(batch) {
			t.Fatalf("read back %d of %d: %v", len(got), len(batch), err)
		}
		for _, m := range got {
			if m.Time.Before(before) || m.Time.After(after) {
				t.Errorf("message %s: time %s, want the time it was produced (%s .. %s)", m.Key, m.Time.UTC(), before.UTC(), after.UTC())
			}
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		l := newLog(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Producer.Produce(ctx, []bus.Message{{Topic: l.Topic, Key: []byte("k"), Value: []byte("v")}}); err == nil {
			t.Fatal("Produce with a canceled context returned nil")
		}
	})
}
