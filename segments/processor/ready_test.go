package processor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/segments/processor"
)

// Ready (the processor's part of /readyz) is not nil before the segments
// are read, nor while an owned partition is being restored: a second run
// on the state a first one wrote becomes ready only once it has read the
// changelog.
func TestReadyOnlyOnceTheStateIsRestored(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	cfg := topics(t, brokers, 2)
	cfg.FlushInterval = 100 * time.Millisecond
	defineSegments(t, cfg)
	produce(t, brokers, cfg.Topic, stream(20000, 4000))

	run := func(stopWhenDone bool) (restoredWhenReady float64) {
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.ChangesTopic), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		reg := prometheus.NewRegistry()
		proc, err := processor.New(cfg, processor.NewStore(), prod, processor.NewMetrics(reg), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := proc.Ready(); err == nil || !strings.Contains(err.Error(), "segment configuration") {
			t.Fatalf("Ready before Run: %v, want reading the segment configuration", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- proc.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		deadline := time.Now().Add(3 * time.Minute)
		var sawRestoring bool
		for {
			err := proc.Ready()
			if err == nil {
				break
			}
			sawRestoring = sawRestoring || strings.Contains(err.Error(), "restoring the state of")
			if time.Now().After(deadline) {
				t.Fatalf("not ready after 3 minutes: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		restoredWhenReady = counterValue(t, reg, "engage_process_restored_records_total")
		t.Logf("ready; restored records then: %g; seen restoring: %v", restoredWhenReady, sawRestoring)
		if stopWhenDone {
			waitDone(t, cfg, 3*time.Minute)
		}
		return restoredWhenReady
	}
	run(true) // writes the state
	if got := run(false); got == 0 {
		t.Fatal("the second run was ready before it had restored any of the state the first one wrote")
	}
}

// counterValue returns the value of the counter name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
