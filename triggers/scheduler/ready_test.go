package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/triggers/scheduler"
)

// Ready (the scheduler's part of /readyz) is not nil before the campaigns
// are read, nor while an owned partition is being restored: a second run
// on the state a first one wrote becomes ready only once it has read the
// changelog.
func TestReadyOnlyOnceTheStateIsRestored(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	cfg := topics(t, brokers, 2)
	cfg.FlushInterval = 100 * time.Millisecond
	produce(t, brokers, cfg.Topic, stream(20000, 3000))

	run := func(stopWhenDone bool) float64 {
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.DeliveriesTopic), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		reg := prometheus.NewRegistry()
		svc, err := scheduler.New(cfg, scheduler.NewStore(), prod, scheduler.NewMetrics(reg), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Ready(); err == nil || !strings.Contains(err.Error(), "campaigns") {
			t.Fatalf("Ready before Run: %v, want reading the campaigns", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		deadline := time.Now().Add(3 * time.Minute)
		for err := svc.Ready(); err != nil; err = svc.Ready() {
			if time.Now().After(deadline) {
				t.Fatalf("not ready after 3 minutes: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		restored := counterValue(t, reg, "engage_schedule_restored_records_total")
		t.Logf("ready; restored records then: %g", restored)
		if stopWhenDone {
			waitDone(t, cfg, 3*time.Minute)
		}
		return restored
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
