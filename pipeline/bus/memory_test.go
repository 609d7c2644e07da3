package bus_test

import (
	"context"
	"errors"
	"testing"

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
